"""The paper's vocabulary, defined once: Algorithm 1's four pruning stages, MAAD's five tasks, and the names
of the importance criteria and distillation losses.

Why one table: the schema, Algorithm 1, the CLI, the tables and the figures all name stages. Each reads its
field here (step and maximum fields, Table 2's row, colour, surgery), so adding or renaming a stage is one
edit. Nothing here imports torch: reports read it offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator

from harness.registry import CRITERIA

TASKS = ("color", "manifestation", "content", "logo", "style")


@dataclass(frozen=True)
class Stage:
    name: str  # as written in a run's `stages:` and in the trace
    step_field: str  # the step size's field in a profile's compression section (paper §4.2)
    max_field: str  # the stage's maximum reduction, same section
    table2_row: str  # the paper's Table 2 row at the end of this stage (FFN and attention share one there)
    figure_label: str  # what the figures call it
    color: str
    surgery: str  # the function of harness.prune.surgery that removes one step of it


STAGES = (
    Stage("block", "n_b", "N_blocks", "After Block Pruning", "block", "#4C72B0", "prune_blocks"),
    Stage("ffn", "n_h_ffn", "N_ffn", "After FFN Pruning", "FFN channels", "#55A868", "prune_ffn"),
    Stage(
        "attention",
        "n_h_att",
        "N_att",
        "After Inter-Module Pruning",
        "attention heads",
        "#C44E52",
        "prune_attention",
    ),
    Stage("hidden", "n_d", "N_input", "After Input/Output Pruning", "hidden dims", "#8172B2", "prune_hidden"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}
StageName = Literal[STAGE_NAMES]  # type: ignore[valid-type]  (the pydantic field type of a stage name)


def known_criterion(name: str) -> str:
    """An importance criterion registered in harness/registry.py (read when a file is validated, so a
    criterion registered later, a test's for one, is accepted too)."""
    if name not in CRITERIA:
        raise ValueError(f"unknown importance criterion '{name}'; allowed: {', '.join(CRITERIA)}")
    return name


# importance criteria (harness/registry.py names each, harness/prune/criteria.py scores it)
Criterion = Annotated[str, AfterValidator(known_criterion)]


def gradient_criteria() -> tuple[str, ...]:
    """The criteria that need Eq. 1's gradient over D_p; the others read the weights alone."""
    return tuple(n for n, c in CRITERIA.items() if c.needs_gradient)


# distillation losses (harness/distill/losses.py): Eq. 5 and its ablations
Variant = Literal["eq5", "kl_only", "hard_label", "released_pairwise"]
# the loss whose gradient Eq. 1 uses in `python -m harness prune` (Algorithm 1 uses cross-entropy)
ImportanceLoss = Literal["cross_entropy", "teacher_kl"]
