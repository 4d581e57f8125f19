"""The schema of a pruning-curves experiment: which importance criteria are followed at which level.

Why a curve: an importance criterion is judged on its own by pruning the teacher step by step with no
recovery and scoring every step; the recovered runs of Algorithm 1 can hide a poor criterion when
distillation repairs the damage (issue #15). harness/recipes/pruning_curves.py computes them.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from harness.schema import Strict
from harness.stages import StageName

CurveCriterion = Literal["first_order", "first_order_joint", "l1", "l2", "random", "last", "block_influence"]
BLOCK_CRITERIA = (
    "last",
    "block_influence",
    "random",
)  # which blocks to drop: Algorithm 1's, ShortGPT's, chance
WIDTH_CRITERIA = tuple(c for c in get_args(CurveCriterion) if c not in ("last", "block_influence"))


class Curve(Strict):
    """One level pruned step by step (its step size, up to its maximum in the profile), once per criterion."""

    level: StageName
    criteria: list[CurveCriterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _criteria_of_the_level(self) -> Curve:
        allowed = BLOCK_CRITERIA if self.level == "block" else WIDTH_CRITERIA
        wrong = [c for c in self.criteria if c not in allowed]
        if wrong:
            raise ValueError(
                f"criteria: {wrong} do not apply to level '{self.level}'; allowed: {list(allowed)}"
            )
        if len(set(self.criteria)) != len(self.criteria):
            raise ValueError(f"criteria: each at most once, got {self.criteria}")
        return self
