"""Distillation: the student's projection and language model trained against cached teacher outputs.

Why cached: the vision tower and Q-Former stay frozen during compression, so their query outputs are
computed once per image, and the teacher never changes, so its answer-position logits are computed once per
distillation set (harness/objectives.py, `teacher_batches`), never per epoch. Each call is seeded
explicitly, so a resumed run repeats it exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness import parallel
from harness.distill.losses import distillation_loss
from harness.models.blip2 import lm_logits, trained_parameters
from harness.objectives import Batch, answer_positions, teacher_of
from harness.train import train


def distillation_steps(epochs: float, n_batches: int) -> int:
    """Optimizer steps of a distillation budget of `epochs` over `n_batches` batches."""
    return round(epochs * n_batches)


def distill(
    student,
    batches: list[Batch],
    epochs: float,
    lr: float,
    variant: str,
    gamma: float,
    seed: int,
    progress: bool = False,
    desc: str = "distill",
    accumulate: int = 1,
    checkpointing: bool = False,
    optimizer: str = "adamw",
    after_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train the student's projection and language model for `epochs` over `batches` (reshuffled every
    epoch; cosine decay without warm-up); returns the mean loss of each epoch. A fractional budget takes
    round(epochs × len(batches)) optimizer steps, the last epoch cut short: the paper's budget is 0.3 of an
    epoch of the stand-in's D_d (experiments/profiles/cpu.yaml). A non-finite loss stops the run, naming
    `desc` and the epoch. `accumulate`: micro-batches per optimizer step (consecutive `batches`, so the
    logical batches are those of batching at `accumulate` × their size), each weighted by its share of the
    step's answer positions: the step's loss is the mean over the logical batch, as without accumulation.
    `checkpointing`: the language model's blocks recompute their activations in the backward pass.
    `optimizer`: harness/train.py make_optimizer. `after_step`: harness/train.py `train`."""
    if accumulate > 1:
        groups = [batches[i : i + accumulate] for i in range(0, len(batches), accumulate)]
        batches = [[(b, _positions(b) / sum(map(_positions, g))) for b in g] for g in groups]
    steps = distillation_steps(epochs, len(batches))
    if steps == 0:
        return []
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    order = [
        torch.randperm(len(batches), generator=generator).tolist() for _ in range(-(-steps // len(batches)))
    ]
    order[-1] = order[-1][: steps - len(batches) * (len(order) - 1)]

    def loss(b: Batch) -> torch.Tensor:
        logits = lm_logits(student, b["query_output"], b["input_ids"], b["attention_mask"], b["labels"])
        student_logits, _ = answer_positions(logits, b["labels"])
        teacher = None if variant == "label_ce" else teacher_of(b)  # fine-tuning reads the labels alone
        return distillation_loss(student_logits, teacher, b["answer_tokens"], variant, gamma)

    # under accelerate launch the engine (harness/parallel.py) shares out the micro-batches and sums the
    # gradients; under fsdp the student's trained parts are its sharded copies inside this block
    with parallel.engine(student, loss) as engine:
        params = trained_parameters(student)
        if checkpointing:
            student.language_model.gradient_checkpointing_enable({"use_reentrant": False})
        try:
            return train(
                student,
                params,
                [[batches[k] for k in epoch] for epoch in order],
                loss,
                lr=lr,
                weight_decay=0.0,
                warmup_steps=0,
                desc=desc,
                progress=progress,
                accumulate=accumulate > 1,
                optimizer=optimizer,
                engine=engine,
                after_step=after_step,
            )
        finally:
            if checkpointing:
                student.language_model.gradient_checkpointing_disable()


def _positions(batch: Batch) -> int:
    return len(batch["answer_tokens"])
