"""Figures drawn only from a compression result file: PNG + PDF, titled with the paper figure they reproduce,
device and profile in a footer, stages shaded, readable without the paper."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

STAGE_COLORS = {"block": "#4C72B0", "ffn": "#55A868", "attention": "#C44E52", "hidden": "#8172B2"}
STAGE_NAMES = {
    "block": "block",
    "ffn": "FFN channels",
    "attention": "attention heads",
    "hidden": "hidden dims",
}


def _save(fig, out_dir: Path, stem: str, footer: str) -> list[Path]:
    fig.text(0.01, 0.01, footer, fontsize=7, color="0.4", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    paths = [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]
    for p in paths:
        # fixed metadata, so that re-rendering the same result gives the same bytes
        fig.savefig(p, dpi=150, metadata={"CreationDate": None} if p.suffix == ".pdf" else {"Software": None})
    plt.close(fig)
    return paths


def _shade_stages(ax, trace: list[dict], x_of) -> None:
    start = 0
    for i, s in enumerate(trace + [{"stage": None}]):
        if i == len(trace) or s["stage"] != trace[start]["stage"]:
            stage = trace[start]["stage"]
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


def trace_figures(res: dict, out_dir: Path, seed_index: int = 0) -> list[Path]:
    """Figures 6 (accuracy after each pruning and each distillation step), 10 (size vs step) and 11 (log2 size
    vs accuracy) for one seed of a compression result."""
    sns.set_theme(style="whitegrid", context="paper")
    s = res["seeds"][seed_index]
    trace = s["trace"]
    p0 = s["p_teacher_validation"]["overall"]
    footer = (
        f"profile '{res['profile']['name']}', seed {s['seed']}, validation split; device: "
        f"{res['device']['name']}; git {str(res['provenance']['git']['commit'])[:8]}"
    )
    paths = []

    # Figure 6: the saw-tooth
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    xs, ys = [0.0], [p0]
    for k, step in enumerate(trace, start=1):
        xs += [k - 0.5, k]
        ys += [step["acc_pruned"], step["acc_distilled"]]
    ax.plot(xs, ys, color="0.35", lw=1, label="after pruning (dip) / after distillation")
    ax.plot(
        [0] + [t["step"] for t in trace],
        [p0] + [t["acc_distilled"] for t in trace],
        color="#C44E52",
        lw=1.8,
        marker="o",
        ms=3.5,
        label="pruning + distillation as one step",
    )
    ax.scatter(
        [k - 0.5 for k in range(1, len(trace) + 1)],
        [t["acc_pruned"] for t in trace],
        marker="v",
        color="0.35",
        s=18,
        zorder=3,
    )
    _shade_stages(ax, trace, lambda i: i + 1)
    ax.set(xlabel="pruning step", ylabel="accuracy (validation)", xticks=range(0, len(trace) + 1))
    ax.set_title(
        "Reproduces Figure 6: accuracy after every pruning and every distillation step", fontsize=10, pad=16
    )
    ax.legend(loc="lower left", fontsize=8)
    paths += _save(fig, out_dir, "figure_6_sawtooth", footer)

    # Figure 10: size vs step
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    steps = [0] + [t["step"] for t in trace]
    total = [res["teacher"]["parameters"]["total"] / 1e6] + [t["params_total"] / 1e6 for t in trace]
    lm = [res["teacher"]["parameters"]["language_model"] / 1e6] + [t["params_lm"] / 1e6 for t in trace]
    ax.plot(steps, total, marker="o", ms=3.5, label="whole model")
    ax.plot(steps, lm, marker="s", ms=3.5, label="language model")
    _shade_stages(ax, trace, lambda i: i + 1)
    ax.set(xlabel="pruning step", ylabel="parameters (millions)", xticks=steps, ylim=(0, None))
    ax.set_title("Reproduces Figure 10: model size after each pruning step", fontsize=10, pad=16)
    ax.legend(fontsize=8)
    paths += _save(fig, out_dir, "figure_10_size", footer)

    # Figure 11: log2 size vs accuracy
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(
        [math.log2(x * 1e6) for x in total], [p0] + [t["acc_distilled"] for t in trace], color="0.6", lw=1
    )
    ax.scatter(math.log2(total[0] * 1e6), p0, color="black", marker="*", s=80, label="teacher", zorder=3)
    for stage in STAGE_COLORS:
        pts = [(math.log2(t["params_total"]), t["acc_distilled"]) for t in trace if t["stage"] == stage]
        if pts:
            ax.scatter(
                *zip(*pts, strict=True), color=STAGE_COLORS[stage], s=25, label=STAGE_NAMES[stage], zorder=3
            )
    ax.invert_xaxis()
    ax.set(xlabel="log2(parameters), whole model", ylabel="accuracy after distillation (validation)")
    ax.set_title("Reproduces Figure 11: size vs performance", fontsize=10)
    ax.legend(fontsize=8)
    paths += _save(fig, out_dir, "figure_11_log2size", footer)
    return paths
