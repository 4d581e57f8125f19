"""One colour per importance criterion or compression method, the same in every panel and every figure.

Why fixed: seaborn's palette hands colours out in drawing order, so the same colour meant random in one panel
and L2 in the next. A method is named by what it does (harness/config/experiment.py CompressionRun), not by
its label.
"""

from __future__ import annotations

from harness.registry import CRITERIA

# seaborn's "deep" palette, each colour given once; the importance criteria's own in harness/registry.py
COLORS = {
    "last": CRITERIA["first_order"].color,  # Algorithm 1's last blocks: the paper's own method, as Eq. 1
    "block_influence": "#937860",
    "scratch": "#DA8BC3",
    "torch_pruning": "#8C8C8C",
    # Algorithm 1's own variants in the budget map: one-shot as written and compute-fair
    "one_shot": "#CCB974",
    "one_shot_fair": "#64B5CD",
    # the distillation losses beside Eq. 5 (Table 4, Figure 8); Eq. 5 itself is the method's own blue
    "hard_label": "#1B9E77",
    "kl_only": "#E7298A",
    "released_pairwise": "#7570B3",
}
OTHER = "#4D4D4D"


def method(run) -> str:
    """The key of a compression run's method in COLORS: trained from scratch, Torch-Pruning, Block Influence
    at the block level, a distillation loss other than Eq. 5, or its importance criterion."""
    if run.variant != "eq5":
        return run.variant
    if run.mode == "scratch":
        return "scratch"
    if run.pruner == "torch_pruning":
        return "torch_pruning"
    if run.block_criterion == "block_influence":
        return "block_influence"
    return run.criterion


def color(key: str) -> str:
    """A criterion's registered colour, a method's, or grey."""
    return CRITERIA[key].color if key in CRITERIA else COLORS.get(key, OTHER)
