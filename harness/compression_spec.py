"""The `compression` section of a profile: Algorithm 1's hyperparameters (§4.2) and the memory set-up of a
real-scale run, with the checks that need only the section itself.

Why apart from harness/profile.py: the section is also what a public checkpoint's entry changes
(harness/recipes/public_lmms.py) and what every compression run's key holds (harness/store.py).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from harness.schema import Strict
from harness.stages import STAGES

STEP_FIELDS = {s.name: (s.step_field, s.max_field) for s in STAGES}


class Compression(Strict):
    """Algorithm 1's hyperparameters (paper §4.2 names). Widths count channels / inner width / dims."""

    alpha: float = Field(
        0.15, gt=0, le=1, description="tolerance α: a stage stops once accuracy fell by α (p_start − p ≥ α)"
    )
    epochs: float = Field(
        4,
        ge=0,
        description="E: distillation epochs over D_d after each pruning step; a fraction takes that share of "
        "an epoch's optimizer steps (harness/distill/loop.py)",
    )
    lr: float = Field(3e-5, gt=0, lt=1)
    batch_size: int = Field(ge=1)
    gamma: float = Field(1.0, ge=0, description="γ of the pairwise term in Eq. 5")
    n_b: int = Field(ge=1)
    N_blocks: int = Field(ge=0)
    n_h_ffn: int = Field(ge=1)
    N_ffn: int = Field(ge=0)
    n_h_att: int = Field(ge=1)
    N_att: int = Field(ge=0)
    n_d: int = Field(ge=1)
    N_input: int = Field(ge=0)
    pruning_samples: int | None = Field(
        None, ge=1, description="size of D_p (the first samples of D_d); None: all of D_d, as in the paper"
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="samples per forward and backward pass; distillation accumulates the gradients of "
        "batch_size / micro_batch_size of them per optimizer step, so batch_size (the paper's 1024) is the "
        "logical batch, and Eq. 1 is summed over D_p in batches of this size. None: batch_size",
    )

    teacher_logits: Literal["auto", "full", "top_k"] = Field(
        "auto",
        description="how D_d's and D_p's teacher outputs are kept: the whole vocabulary at every answer "
        "position, or its teacher_top_k largest logits and their log-sum-exp (harness/objectives.py TopK: "
        "the KL becomes a lower bound, short by the teacher's mass outside them). auto: full while that "
        "cache stays within 2 GiB (harness/objectives.py FULL_LOGITS_LIMIT)",
    )
    teacher_top_k: int = Field(64, ge=1, description="k of teacher_logits: top_k")
    activation_checkpointing: bool = Field(
        False,
        description="recompute each language-model block's activations in the backward pass instead of "
        "keeping them (distillation: transformers' gradient checkpointing; Eq. 1, in eval mode: torch's "
        "checkpoint around each block, harness/prune/importance.py): activation memory falls to about one "
        "block's, for about a third more compute, with the same scores and steps",
    )

    optimizer: Literal["adamw", "adafactor", "adamw_8bit"] = Field(
        "adamw",
        description="distillation's optimizer: adamw (torch; two states of the weights' dtype per trainable "
        "parameter), adafactor (torch; factored second moment, no first: a few bytes per row and column) or "
        "adamw_8bit (bitsandbytes' AdamW8bit: two 8-bit states, about 2 bytes per parameter)",
    )
    weights_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="the student's trained weights (projection and language model) during compression; "
        "bfloat16 halves them and their gradients, and the optimizer updates them directly (no float32 "
        "master copy), trading update precision for memory. Needs dtype: bfloat16",
    )
    offload_teacher: bool = Field(
        False,
        description="keep the teacher's language model in CPU memory while the student is compressed: its "
        "outputs are cached before compression starts, and evaluation uses only its vision side",
    )

    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="the engine of Eq. 1 and distillation under `accelerate launch` with several processes "
        "(harness/parallel.py): ddp (accelerate's DistributedDataParallel; every process holds whole models) "
        "or fsdp (torch's fully_shard: language models wait in CPU memory and each phase splits them across "
        "the devices; `python -m harness plan --gpus N --parallel fsdp`). No effect in one process",
    )

    @model_validator(mode="after")
    def _micro_divides_batch(self) -> Compression:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size: micro_batch_size ({self.micro_batch_size}) must divide batch_size "
                f"({self.batch_size}), e.g. {math.gcd(self.batch_size, self.micro_batch_size)}"
            )
        return self

    @property
    def micro(self) -> int:
        """Samples per forward and backward pass."""
        return self.micro_batch_size or self.batch_size

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step."""
        return self.batch_size // self.micro


def whole_step_problems(c: Compression) -> list[str]:
    """A maximum must be a whole number of steps: the iterative run stops at ⌊N/n⌋·n, and one-shot prunes to
    exactly what the iterative run reaches, so a remainder would be a size that no run has."""
    return [
        f"compression.{big}: {big} ({getattr(c, big)}) must be a whole number of steps of {step} "
        f"({getattr(c, step)}), e.g. {getattr(c, big) // getattr(c, step) * getattr(c, step)}"
        for step, big in STEP_FIELDS.values()
        if getattr(c, step) <= getattr(c, big) and getattr(c, big) % getattr(c, step)
    ]
