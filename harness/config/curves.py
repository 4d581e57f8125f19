"""The schema of a pruning-curves experiment: which importance criteria are followed at which level.

Why a curve: an importance criterion is judged on its own by pruning the teacher step by step with no
recovery and scoring every step; the recovered runs of Algorithm 1 can hide a poor criterion when
distillation repairs the damage (issue #15). harness/recipes/pruning_curves.py computes them.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from harness.config.schema import Strict
from harness.config.vocabulary import StageName
from harness.registry import CRITERIA

# which blocks to drop: Algorithm 1's, ShortGPT's, chance; the widths take every importance criterion
BLOCK_CRITERIA = ("last", "block_influence", "random")


class Curve(Strict):
    """One level pruned step by step (its step size, up to its maximum in the profile), once per criterion."""

    level: StageName
    criteria: list[str] = Field(
        min_length=1,
        description="block: last, block_influence or random; widths: harness/registry.py CRITERIA",
    )

    @model_validator(mode="after")
    def _criteria_of_the_level(self) -> Curve:
        allowed = BLOCK_CRITERIA if self.level == "block" else tuple(CRITERIA)
        wrong = [c for c in self.criteria if c not in allowed]
        if wrong:
            raise ValueError(
                f"criteria: {wrong} do not apply to level '{self.level}'; allowed: {list(allowed)}"
            )
        if len(set(self.criteria)) != len(self.criteria):
            raise ValueError(f"criteria: each at most once, got {self.criteria}")
        return self
