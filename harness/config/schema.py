"""The base of every schema the harness reads from YAML (profiles, experiments, claims, curves).

Why strict: a typo or a wrong type in a hand-written YAML must fail with the allowed keys listed, not be
ignored or coerced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Unknown keys are errors, and so are values of the wrong type: `n_b: true` or `n_b: "1"` is refused,
    not coerced to 1 (strict mode; an int is still accepted where a float is expected). No number of a
    schema may be infinite or NaN: `gamma: .inf` or `min_duration_s: .inf` would run forever or poison a
    loss, never mean anything."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


SEED_MAX = 2**32 - 1  # seeds feed numpy, torch and `seed * 1000 + step` (harness/pipeline.py) unharmed
SIZE_MAX = 10**8  # samples of a split: far beyond what one machine generates or holds


# A folder or file named in YAML arrives as a string; strict mode would refuse it for a Path.
PathFromYaml = Annotated[Path, Field(strict=False)]
