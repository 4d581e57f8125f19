"""Pruning curves without recovery, drawn and tabulated from their result file alone.

Why a figure per level: a criterion is judged by how slowly accuracy falls as more of a level is removed;
one panel per level, one line per criterion, the band the spread over seeds, the teacher as a dotted line.
The table gives each curve's area (mean test accuracy over its steps) and where it ends.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from harness.config.vocabulary import BY_NAME
from harness.registry import CRITERIA
from harness.report.colors import color
from harness.report.figures import footer, save_figure
from harness.report.frame import mean_std, pick, result_frame, summary, value
from harness.report.tables import make_table
from harness.results import CurvesResult, load_result

BLOCK_NAMES = {"last": "last blocks (Algorithm 1)", "block_influence": "Block Influence"}


def criterion_name(criterion: str) -> str:
    """How tables and figures name a criterion: its registered label, or a block criterion's."""
    return CRITERIA[criterion].label if criterion in CRITERIA else BLOCK_NAMES.get(criterion, criterion)


def curves_figure(res: CurvesResult, out_dir: Path) -> list[Path]:
    """Test accuracy against the share of each level removed, no distillation, one panel per level."""
    sns.set_theme(style="whitegrid", context="paper")
    frame = pick(result_frame(res), role="curve")
    levels = list(dict.fromkeys(c.level for c in res.curves))
    fig, axes = plt.subplots(1, len(levels), figsize=(3.4 * len(levels), 3.4), sharey=True, squeeze=False)
    teacher = value(pick(result_frame(res), role="teacher"), "overall")
    for ax, level in zip(axes[0], levels, strict=True):
        at = pick(frame, stage=level)
        for criterion in dict.fromkeys(at["label"]):
            acc = summary(pick(at, label=criterion), "overall", by=("position",))
            share = summary(pick(at, label=criterion), "share", by=("position",))["mean"]
            c = color(criterion)
            ax.plot(share, acc["mean"], marker="o", ms=3, color=c, label=criterion_name(criterion))
            if acc["std"].notna().any():  # the seeds' range: a band that stays within what accuracy can be
                low, high = ([f(v) for v in acc["values"]] for f in (min, max))
                ax.fill_between(share, low, high, color=c, alpha=0.15)
        ax.axhline(teacher, color="0.3", ls=":", lw=1, label="teacher")
        what = "blocks" if level == "block" else f"{BY_NAME[level].figure_label} width"
        ax.set(title=BY_NAME[level].figure_label, xlabel=f"share of the {what} removed")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy (test), no recovery")
    fig.suptitle(
        "Importance criteria on their own: the teacher pruned step by step, no distillation", fontsize=10
    )
    seeds = len(res.seeds)
    spread = f"random: mean of {seeds} seeds, band from the lowest to the highest, other criteria: one curve"
    spread = spread if seeds > 1 else "1 seed"
    return save_figure(fig, out_dir, "figure_pruning_curves", footer(res, f"{spread}, test split"))


def seed_note(res: CurvesResult) -> str:
    """What the seeds of a curves result vary: only criteria that draw random numbers differ between seeds
    (D_p and the teacher are the same for every seed), so the others are one curve, shown once."""
    seeds = len(res.seeds)
    if seeds < 2:
        return "1 seed"
    return (
        f"random: mean ± std over {seeds} seeds; every other criterion draws no random number and is one "
        "curve, the same for every seed (its interval covers test samples only, for the one D_p)"
    )


def render_curves(out_dir: Path) -> str:
    """The curves' table (area and end point per level and criterion) and their figure."""
    out_dir = Path(out_dir)
    res = load_result(out_dir / "result.json")
    assert isinstance(res, CurvesResult)
    frame = pick(result_frame(res), role="curve")
    headers = [
        "Level",
        "Criterion",
        "Steps",
        "Removed at the end",
        "Area (mean accuracy)",
        "Accuracy at the end",
    ]
    headers += ["Knowledge at the end"]
    rows = []
    for level in dict.fromkeys(c.level for c in res.curves):
        at = pick(frame, stage=level)
        for criterion in dict.fromkeys(at["label"]):
            mine = pick(at, label=criterion)
            last = int(mine["position"].max())
            steps = pick(mine[mine["position"] > 0], metric="overall")
            area = steps.groupby("seed")["value"].mean().tolist()
            end = pick(mine, position=last)
            rows.append(
                [
                    BY_NAME[level].figure_label,
                    criterion_name(criterion),
                    last,
                    f"{value(end, 'share'):.0%}",
                    mean_std(area, exact=True),
                    mean_std(pick(end, metric="overall")["value"].tolist(), exact=True),
                    mean_std(pick(end, metric="knowledge")["value"].tolist(), exact=True),
                ]
            )
    curves_figure(res, out_dir)
    caption = (
        f"{res.experiment.reproduces}. Profile '{res.profile.name}', test split; {seed_note(res)}; no "
        "distillation after any step. Area: mean test accuracy over the curve's steps (the teacher itself "
        "left out)."
    )
    return make_table(headers, rows, caption, out_dir)
