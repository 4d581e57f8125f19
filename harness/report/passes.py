"""Sample passes of a compression run, counted from its result record: the cost side of premise P3.

Why counted here, from the record: the ratio must count every pass the run makes, not only distillation,
and must be checkable offline. A gradient pass (forward and backward of one sample) is what the teacher's
training is counted in (harness/recipes/teacher.py `sample_passes`), so the ratio compares like with like:
distillation (epochs used × D_d) plus Eq. 1's gradient over D_p at every step that scores with it
(harness/pipeline.py `_importance`: not block steps, which drop the last blocks or score Block Influence
without a gradient; not Torch-Pruning's FFN and hidden steps, which read weights). Forward-only passes
(validation after each pruning step and after each distillation, the teacher's validation at the start,
the teacher's outputs over D_d, Block Influence over D_p) need no backward and are reported beside the
ratio, not in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.vocabulary import gradient_criteria
from harness.results import CompressionResult, RunRecord, SeedRecord


@dataclass(frozen=True)
class Passes:
    """One seed's sample passes, by kind."""

    distillation: float
    importance: int
    forward_only: int

    @property
    def gradient(self) -> float:
        return self.distillation + self.importance


def _levels(stage: str) -> list[str]:
    return stage.split("+")  # one-shot steps prune several levels at once


def _scores_with_gradient(run: RunRecord, level: str) -> bool:
    if level == "block" or run.spec.criterion not in gradient_criteria():
        return False
    return not (run.spec.pruner == "torch_pruning" and level in ("ffn", "hidden"))


def sample_passes(res: CompressionResult, run: RunRecord, seed: SeedRecord) -> Passes:
    """Every sample pass of one seed of `run`: distillation and Eq. 1 (gradient), and forward-only."""
    steps = [row for row in seed.trace if row.stage != "scratch"]
    importance = sum(
        seed.d_p_samples for row in steps for level in _levels(row.stage) if _scores_with_gradient(run, level)
    )
    influence = sum(
        seed.d_p_samples
        for row in steps
        for level in _levels(row.stage)
        if level == "block" and run.spec.block_criterion == "block_influence"
    )
    validation = int(res.profile.data["sizes"]["validation"]) * (1 + 2 * len(steps)) if steps else 0
    teacher_outputs = seed.d_d_samples if steps else 0
    distilled = seed.distillation_sample_passes or seed.epochs_used * seed.d_d_samples
    return Passes(distilled, importance, validation + teacher_outputs + influence)
