"""Figures drawn only from a compression result file: PNG + PDF, titled with the paper figure they reproduce,
device and profile in a footer, stages shaded, readable without the paper. Per-step traces come from the
result's records, everything over seeds from its tidy frame (harness/report/frame.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.config.vocabulary import STAGES  # noqa: E402
from harness.report.colors import color, method  # noqa: E402
from harness.report.frame import pick, summary, value  # noqa: E402
from harness.results import CompressionResult, CurvesResult, PublicResult  # noqa: E402

STAGE_COLORS = {s.name: s.color for s in STAGES}
STAGE_NAMES = {s.name: s.figure_label for s in STAGES}


def save_figure(fig, out_dir: Path, stem: str, footer: str) -> list[Path]:
    fig.text(0.01, 0.01, footer, fontsize=7, color="0.4", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    paths = [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]
    for p in paths:
        # fixed metadata, so that re-rendering the same result gives the same bytes
        fig.savefig(p, dpi=150, metadata={"CreationDate": None} if p.suffix == ".pdf" else {"Software": None})
    plt.close(fig)
    return paths


def _shade_stages(ax, stages: list[str], x_of) -> None:
    start = 0
    for i in range(1, len(stages) + 1):
        if i == len(stages) or stages[i] != stages[start]:
            stage = stages[start]
            ax.axvspan(
                x_of(start) - 0.5, x_of(i - 1) + 0.5, color=STAGE_COLORS.get(stage, "0.8"), alpha=0.08, lw=0
            )
            ax.text(
                (x_of(start) + x_of(i - 1)) / 2,
                1.0,
                STAGE_NAMES.get(stage, stage),
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color=STAGE_COLORS.get(stage, "0.3"),
            )
            start = i


def footer(res: CompressionResult | CurvesResult | PublicResult, what: str) -> str:
    return (
        f"profile '{res.profile.name}', {what}; device: {res.device.name}; "
        f"git {str(res.provenance.git.commit)[:8]}"
    )


def trace_figures(res: CompressionResult, frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Figures 6 (accuracy after each pruning and each distillation step), 10 (size vs step) and 11 (log2 size
    vs accuracy) for the first seed of the first run of a compression result; other seeds as thin lines."""
    sns.set_theme(style="whitegrid", context="paper")
    s = res.runs[0].seeds[0]
    others = res.runs[0].seeds[1:]
    trace = s.trace
    stages = [t.stage for t in trace]
    p0 = s.p_teacher_validation.overall
    thin = " (other seeds: thin lines)" if others else ""
    paths = []

    # Figure 6: the saw-tooth
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    xs, ys = [0.0], [p0]
    for k, step in enumerate(trace, start=1):
        xs += [k - 0.5, k]
        ys += [step.acc_pruned, step.acc_distilled]
    ax.plot(xs, ys, color="0.35", lw=1, label="after pruning (dip) / after distillation")
    ax.plot(
        [0] + [t.step for t in trace],
        [p0] + [t.acc_distilled for t in trace],
        color="#C44E52",
        lw=1.8,
        marker="o",
        ms=3.5,
        label="pruning + distillation as one step",
    )
    for i, o in enumerate(others):
        ax.plot(
            [0] + [t.step for t in o.trace],
            [o.p_teacher_validation.overall] + [t.acc_distilled for t in o.trace],
            color="#C44E52",
            lw=0.7,
            alpha=0.45,
            label="other seeds" if i == 0 else None,
        )
    ax.scatter(
        [k - 0.5 for k in range(1, len(trace) + 1)],
        [t.acc_pruned for t in trace],
        marker="v",
        color="0.35",
        s=18,
        zorder=3,
    )
    _shade_stages(ax, stages, lambda i: i + 1)
    ax.margins(y=0.1)
    ax.set(xlabel="pruning step", ylabel="accuracy (validation)", xticks=range(0, len(trace) + 1))
    ax.set_title(
        "Reproduces Figure 6: accuracy after every pruning and every distillation step", fontsize=10, pad=16
    )
    # below the axes: inside, it hid the deepest dips
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    paths += save_figure(
        fig, out_dir, "figure_6_sawtooth", footer(res, f"seed {s.seed}{thin}, validation split")
    )

    # Figure 10: size vs step
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    steps = [0] + [t.step for t in trace]
    total = [res.teacher.parameters.total / 1e6] + [t.params_total / 1e6 for t in trace]
    lm = [res.teacher.parameters.language_model / 1e6] + [t.params_lm / 1e6 for t in trace]
    ax.plot(steps, total, marker="o", ms=3.5, label="whole model")
    ax.plot(steps, lm, marker="s", ms=3.5, label="language model")
    _shade_stages(ax, stages, lambda i: i + 1)
    ax.set(xlabel="pruning step", ylabel="parameters (millions)", xticks=steps, ylim=(0, None))
    ax.set_title("Reproduces Figure 10: model size after each pruning step", fontsize=10, pad=16)
    ax.legend(fontsize=8)
    paths += save_figure(fig, out_dir, "figure_10_size", footer(res, f"seed {s.seed}"))

    # Figure 11: size (on a log2 axis, labelled in parameters) vs accuracy
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(total, [p0] + [t.acc_distilled for t in trace], color="0.6", lw=1)
    ax.scatter(total[0], p0, color="black", marker="*", s=80, label="teacher", zorder=3)
    for stage in STAGE_COLORS:
        pts = [(t.params_total / 1e6, t.acc_distilled) for t in trace if t.stage == stage]
        if pts:
            ax.scatter(
                *zip(*pts, strict=True), color=STAGE_COLORS[stage], s=25, label=STAGE_NAMES[stage], zorder=3
            )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=2, subs=(1.0, 1.5)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}M"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.invert_xaxis()
    ax.set(xlabel="parameters, whole model (log2 scale)", ylabel="accuracy after distillation (validation)")
    ax.set_title("Reproduces Figure 11: size vs performance", fontsize=10)
    ax.legend(fontsize=8)
    note = footer(res, f"seed {s.seed}, validation split")
    paths += save_figure(fig, out_dir, "figure_11_log2size", note)
    return paths


def _accuracy_over_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run, in order: its label, test accuracies over seeds and their mean and std."""
    return summary(pick(frame, role="run"), "overall")


def bars_figure(res: CompressionResult, frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy of every run: seeds as dots, their mean as a bar-less tick with its value, the paper's value
    as a diamond, the teacher as a dashed line (Figure 8, distillation ablations). Points, not bars from 0, so
    that a zoomed axis cannot exaggerate a bar's length."""
    sns.set_theme(style="whitegrid", context="paper")
    runs = _accuracy_over_seeds(frame)
    labels, accs = list(runs["label"]), list(runs["values"])
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(labels), 3.8))
    palette = [color(method(r.spec)) for r in res.runs]
    for i, (a, mean) in enumerate(zip(accs, runs["mean"], strict=True)):
        ax.scatter(
            [i] * len(a), a, color=palette[i], s=22, zorder=3, label="ours, one seed" if i == 0 else None
        )
        ax.hlines(
            mean,
            i - 0.25,
            i + 0.25,
            color=palette[i],
            lw=2.5,
            label="ours, mean over seeds" if i == 0 else None,
        )
        ax.annotate(f"{mean:.3f}", (i + 0.28, mean), va="center", fontsize=8)
    paper = [
        (i, r.spec.paper.overall)
        for i, r in enumerate(res.runs)
        if r.spec.paper and r.spec.paper.overall is not None
    ]
    if paper:
        ax.scatter(
            *zip(*paper, strict=True),
            marker="D",
            s=36,
            facecolor="none",
            edgecolor="#C44E52",
            lw=1.5,
            zorder=4,
            label="paper (AntGMM on MAAD)",
        )
    ax.axhline(res.teacher.accuracy.overall, color="0.3", ls="--", lw=1, label="teacher (ours)")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.2)
    ax.margins(y=0.15)
    ax.set(ylabel="overall accuracy (test)")
    ax.set_title(f"Reproduces {res.experiment.reproduces}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return save_figure(
        fig, out_dir, "figure_8_distillation", footer(res, f"{len(accs[0])} seed(s), test split")
    )


def sample_size_figure(res: CompressionResult, frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Figure 7: final accuracy against the size of the distillation/pruning set, seeds as dots."""
    sns.set_theme(style="whitegrid", context="paper")
    runs = _accuracy_over_seeds(frame)
    runs["d_d"] = [int(v[0]) for v in summary(pick(frame, role="run"), "d_d_samples")["values"]]
    runs = runs.sort_values("d_d", kind="stable")
    xs, accs, means = list(runs["d_d"]), list(runs["values"]), list(runs["mean"])
    fractions = [res.runs[i].spec.data_fraction for i in runs["position"]]
    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    ax.plot(xs, means, marker="o", color="#4C72B0", label="ours: compressed model (mean over seeds)")
    for i, (x, a) in enumerate(zip(xs, accs, strict=True)):
        ax.scatter([x] * len(a), a, color="black", s=10, zorder=3, label="one seed" if i == 0 else None)
    ax.axhline(res.teacher.accuracy.overall, color="0.3", ls="--", lw=1, label="teacher (ours)")
    ax.set_xticks(xs, [f"{x}\n({f:g} of train)" for x, f in zip(xs, fractions, strict=True)], fontsize=8)
    ax.set(xlabel="samples in D_d (= D_p pool)", ylabel="overall accuracy (test)")
    ax.set_title("Reproduces Figure 7: sample size vs performance after compression", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return save_figure(
        fig, out_dir, "figure_7_sample_size", footer(res, f"{len(accs[0])} seed(s), test split")
    )


def tradeoff_figure(res: CompressionResult, frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every method at its final size, as dots by method: accuracy (mean ± std over seeds) and batch-1
    throughput (first seed), the teacher as a dashed line, each method's true size in its label. Why dots
    and not a size axis: the baselines end at (nearly) one structure, so their sizes tie."""
    sns.set_theme(style="whitegrid", context="paper")
    k = len(res.runs)
    fig, (ax_acc, ax_speed) = plt.subplots(1, 2, figsize=(10, 1.2 + 0.42 * k), sharey=True)
    teacher, runs = pick(frame, role="teacher"), pick(frame, role="run")
    accs = _accuracy_over_seeds(frame)
    params = summary(runs.assign(value=runs["value"] / 1e6), "params_total")
    y = list(range(k))[::-1]  # the experiment's order, top down
    for i, run in enumerate(res.runs):
        c = color(method(run.spec))
        ax_acc.errorbar(accs["mean"][i], y[i], xerr=accs["std"][i] or 0, fmt="o", color=c, capsize=3)
        if (s1 := value(pick(runs, position=i), "samples_per_s", 1)) is not None:
            ax_speed.scatter(s1, y[i], color=c, s=30)
    ax_acc.set_yticks(
        y, [f"{label} ({p:.2f}M)" for label, p in zip(accs["label"], params["mean"], strict=True)]
    )
    t_params = value(teacher, "params_total") / 1e6
    ax_acc.axvline(value(teacher, "overall"), color="0.3", ls="--", lw=1, label=f"teacher ({t_params:.2f}M)")
    if (t1 := value(teacher, "samples_per_s", 1)) is not None:
        ax_speed.axvline(t1, color="0.3", ls="--", lw=1, label=f"teacher ({t_params:.2f}M)")
        ax_speed.legend(fontsize=7, loc="lower right")
    ax_acc.set(xlabel="overall accuracy (test)", ylim=(-0.7, k - 0.3))
    ax_speed.set(xlabel="samples/s at batch 1 (first seed)")
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{res.experiment.reproduces}: accuracy and speed of each method (size in brackets)", fontsize=10
    )
    n = len(res.runs[0].seeds)
    what = f"{n} seed(s), test split, accuracy as mean ± std over the seeds"
    return save_figure(fig, out_dir, "figure_baselines_tradeoff", footer(res, what))


def public_figure(res: PublicResult, frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every model of a public-LMM comparison as dots: overall test accuracy, and batch-1 speed-up over the
    first row (measured interleaved), each model's size in its label."""
    sns.set_theme(style="whitegrid", context="paper")
    k = len(res.rows)
    fig, (ax_acc, ax_speed) = plt.subplots(1, 2, figsize=(9, 1.4 + 0.45 * k), sharey=True)
    y = list(range(k))[::-1]
    base = value(pick(frame, position=0), "samples_per_s", 1)
    labels = []
    for i, r in enumerate(res.rows):
        ours = pick(frame, position=i)
        ax_acc.scatter(value(ours, "overall"), y[i], color="#4C72B0", s=30)
        if base and (s1 := value(ours, "samples_per_s", 1)) is not None:
            ax_speed.scatter(s1 / base, y[i], color="#4C72B0", s=30)
        labels.append(f"{r.row} ({value(ours, 'params_total') / 1e6:,.2f}M)")
    ax_acc.set_yticks(y, labels)
    ax_acc.set(xlabel="overall accuracy (test)", ylim=(-0.7, k - 0.3))
    ax_speed.axvline(1.0, color="0.3", ls="--", lw=1)
    ax_speed.set(xlabel="speed-up at batch 1 over the first model")
    fig.suptitle(
        f"{res.experiment.reproduces}: accuracy and speed of each model (size in brackets)", fontsize=10
    )
    note = "test split; speed measured interleaved" if res.measured else "test split; speed not measured"
    return save_figure(fig, out_dir, "figure_public_lmms", footer(res, note))
