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
    not coerced to 1 (strict mode; an int is still accepted where a float is expected)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# A folder or file named in YAML arrives as a string; strict mode would refuse it for a Path.
PathFromYaml = Annotated[Path, Field(strict=False)]
