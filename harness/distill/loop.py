"""Distillation: the student's projection and language model trained against cached teacher outputs.

Why cached: the vision tower and Q-Former stay frozen during compression, so their query outputs are
computed once per image, and the teacher never changes, so its answer-position logits are computed once per
distillation set (harness/objectives.py, `teacher_batches`), never per epoch. Each call is seeded
explicitly, so a resumed run repeats it exactly.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from harness.distill.losses import distillation_loss
from harness.models.blip2 import lm_logits
from harness.objectives import Batch, answer_positions


def distill(
    student,
    batches: list[Batch],
    epochs: int,
    lr: float,
    variant: str,
    gamma: float,
    seed: int,
    progress: bool = False,
    desc: str = "distill",
) -> list[float]:
    """Train the student's projection and language model for `epochs` over `batches`; returns the mean loss
    of each epoch. A non-finite loss stops the run, naming `desc` and the epoch."""
    if epochs == 0:
        return []
    params = [*student.language_projection.parameters(), *student.language_model.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * len(batches)
    sched = get_cosine_schedule_with_warmup(opt, 0, steps)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    student.train()
    losses = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for epoch in range(epochs):
        total = 0.0
        for k in torch.randperm(len(batches), generator=generator).tolist():
            b = batches[k]
            logits = lm_logits(student, b["query_output"], b["input_ids"], b["attention_mask"])
            student_logits, _ = answer_positions(logits, b["labels"])
            loss = distillation_loss(student_logits, b["teacher_logits"], b["answer_tokens"], variant, gamma)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"{desc}, epoch {epoch + 1}: distillation loss is {loss.item()}")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item()
            bar.update()
        losses.append(total / len(batches))
    bar.close()
    student.eval()
    return losses
