"""The distillation-budget map: final accuracy against distillation steps per pruning step, and each claim's
verdict at each budget.

Why: whether iterative pruning beats one-shot, or pruning + distillation beats training from scratch, may
depend on how much distillation follows each pruning step; the paper shows one budget (about 47 optimizer
steps per step). Runs of a `table: budgets` experiment differ only in E (`CompressionRun.epochs`) and mode.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.ticker import ScalarFormatter

from harness.report.colors import color
from harness.report.figures import footer, save_figure
from harness.report.frame import mean_std, pick, summary
from harness.report.vectors import compare, stats
from harness.results import CompressionResult, RunRecord

COLOR_KEYS = {  # harness/report/colors.py: the same colour as these methods in every other figure
    ("iterative", "iterative_total"): "first_order",
    ("one_shot", "per_step"): "one_shot",
    ("one_shot", "iterative_total"): "one_shot_fair",
    ("scratch", "iterative_total"): "scratch",
}
SERIES = {
    ("iterative", "iterative_total"): "iterative (Algorithm 1)",
    ("one_shot", "per_step"): "one-shot, E once (Algorithm 1 as written)",
    ("one_shot", "iterative_total"): "one-shot, the iterative run's total epochs",
    ("scratch", "iterative_total"): "trained from scratch (≥ the same compute)",
}
PAPER_STEPS = 47  # the paper's budget: 4 epochs × 12k samples at batch 1024 per pruning step (§4.2)
# (claim, better series, worse series) shown at every budget
COMPARISONS = [
    ("C4, one-shot as written", ("iterative", "iterative_total"), ("one_shot", "per_step")),
    ("C4, compute-fair one-shot", ("iterative", "iterative_total"), ("one_shot", "iterative_total")),
    ("B5, vs from scratch", ("iterative", "iterative_total"), ("scratch", "iterative_total")),
]


def steps_per_pruning_step(res: CompressionResult, run: RunRecord) -> int:
    """E in optimizer steps: E × the batches of D_d (harness/distill/loop.py `distillation_steps`)."""
    batches = math.ceil(run.seeds[0].d_d_samples / res.profile.compression.batch_size)
    return round(run.spec.epochs_under(res.profile.compression) * batches)


def budgets(res: CompressionResult) -> dict[int, dict[tuple[str, str], RunRecord]]:
    """Runs by budget (optimizer steps per pruning step), then by series (mode, one-shot budget)."""
    out: dict[int, dict[tuple[str, str], RunRecord]] = {}
    for run in res.runs:
        key = (run.spec.mode, run.spec.one_shot_budget)
        out.setdefault(steps_per_pruning_step(res, run), {})[key] = run
    return dict(sorted(out.items()))


def budget_figure(res: CompressionResult, frame, out_dir: Path) -> list[Path]:
    """Final test accuracy against the budget (log x), one line per series, spread over seeds as bars."""
    sns.set_theme(style="whitegrid", context="paper")
    runs = pick(frame, role="run")
    acc = summary(runs, "overall", by=("label",)).set_index("label")
    teacher = pick(frame, role="teacher", metric="overall")["value"].iloc[0]
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    by_budget = budgets(res)
    for key, name in SERIES.items():
        pts = [(b, runs_[key].label) for b, runs_ in by_budget.items() if key in runs_]
        if not pts:
            continue
        xs = [b for b, _ in pts]
        ys = [acc.loc[label, "mean"] for _, label in pts]
        sd = [float(acc.loc[label, "std"] or 0) for _, label in pts]
        ax.errorbar(xs, ys, yerr=sd, marker="o", ms=4, capsize=3, label=name, color=color(COLOR_KEYS[key]))
    paper = PAPER_STEPS
    ax.axvline(paper, color="0.5", ls="--", lw=1)
    ax.text(paper, 1.0, " paper", transform=ax.get_xaxis_transform(), fontsize=8, color="0.4", va="bottom")
    ax.axhline(teacher, color="0.3", ls=":", lw=1, label="teacher")
    # a budget of 0 steps (no distillation at all, tiny profiles) has no place on a log axis: symlog
    low, high = min(by_budget), max(*by_budget, paper) * 1.6
    if low == 0:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(-0.2, high)
    else:
        ax.set_xscale("log")
        ax.set_xlim(low / 1.6, high)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    # each budget's structure under its tick: the rows of a budget compare at the structure its iterative
    # run reached, which can change from one budget to the next (`final_lm`)
    ticks = {b: final_lm(series, short=True) for b, series in by_budget.items()}
    ax.set_xticks(list(ticks), [f"{b}\n{lm}" if lm else str(b) for b, lm in ticks.items()], fontsize=8)
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set(
        xlabel="distillation optimizer steps per pruning step (log); under each, the final LM's blocks",
        ylabel="final accuracy (test)",
    )
    ax.set_title("Distillation-budget map: final accuracy against the budget", fontsize=10, pad=14)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    seeds = len(res.seeds)
    note = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    return save_figure(fig, out_dir, "figure_budget_map", footer(res, f"{note}, test split"))


def budget_table(res: CompressionResult, frame) -> tuple[list[str], list[list]]:
    """One row per budget: each series' final accuracy, then each comparison's paired Δ and verdict."""
    headers = [
        "Steps per pruning step",
        "E (epochs of D_d)",
        "Final LM",
        *SERIES.values(),
        *(c for c, _, _ in COMPARISONS),
    ]
    runs = pick(frame, role="run")
    acc = summary(runs, "overall", by=("label",)).set_index("label")["values"]
    rows = []
    for steps, series in budgets(res).items():
        any_run = next(iter(series.values()))
        row = [steps, any_run.spec.epochs_under(res.profile.compression), final_lm(series)]
        row += [mean_std(acc[series[k].label]) if k in series else None for k in SERIES]
        for _, better, worse in COMPARISONS:
            p = (
                compare(res, series[better].label, series[worse].label)
                if {better, worse} <= set(series)
                else None
            )
            row.append(f"{p.verdict()} ({stats(p)})" if p else None)
        rows.append(row)
    return headers, rows


# the table caption's word on the "Final LM" column (harness/report/render.py appends it for table: budgets)
FINAL_LM_NOTE = (
    " Final LM: the structure the budget's iterative run reached; that budget's one-shot rows are pruned "
    "to it and its from-scratch row is built at it, and α (the tolerated drop) stops the block stage "
    "earlier where each step distils less, so the structure can differ from one budget to the next."
)


def final_lm(series: dict[tuple[str, str], RunRecord], short: bool = False) -> str | None:
    """The structure the budget's iterative run reached (its blocks and LM parameters, per seed where they
    differ): α may let a run that distils longer after each step remove more blocks, and every one-shot and
    from-scratch row of that budget is pruned to (or built at) the same structure, so a row's accuracy moves
    with it."""
    iterative = series.get(("iterative", "iterative_total"))
    if iterative is None:
        return None
    shapes = {(s.structure["num_hidden_layers"], s.parameters.language_model) for s in iterative.seeds}
    shapes = sorted(shapes, reverse=True)
    if short:
        return "/".join(f"{blocks}" for blocks, _ in shapes) + " blocks"
    return "; ".join(f"{blocks} blocks, {params / 1e6:.3f}M" for blocks, params in shapes)


def budget_note(results: dict) -> str:
    """For claims.md: at which budgets each comparison of a budget map holds, computed from its runs."""
    blocks = []
    for res in results.values():
        if not isinstance(res, CompressionResult) or res.experiment.table != "budgets":
            continue
        lines = []
        for claim, better, worse in COMPARISONS:
            verdicts: dict[str, list[str]] = {}
            for steps, series in budgets(res).items():
                p = (
                    compare(res, series[better].label, series[worse].label)
                    if {better, worse} <= set(series)
                    else None
                )
                if p is not None:
                    verdicts.setdefault(p.verdict(), []).append(str(steps))
            if verdicts:
                lines.append(
                    f"- {claim}: " + "; ".join(f"{v} at {', '.join(b)}" for v, b in verdicts.items())
                )
        if lines:
            head = (
                f"Across distillation budgets (`{res.experiment.name}`; optimizer steps per pruning step, "
                f"the paper's is about {PAPER_STEPS}; each comparison on its own, not adjusted for "
                "multiplicity):"
            )
            blocks.append("\n".join([head, *lines]))
    return "\n\n".join(blocks)
