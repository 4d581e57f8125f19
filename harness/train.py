"""The one training loop: AdamW, linear warm-up then cosine decay, gradient norm clipped at 1.

Why one loop: the teacher's two stages (harness/recipes/teacher.py), distillation (harness/distill/loop.py)
and the importance benchmark's epoch differ only in what they train, on which batches in which order, and
what they log after an epoch. Cached runs are keyed by their inputs, not by this code, so the order of
operations below is part of every cached result: forward, zero_grad, backward, clip, optimiser step,
schedule step. The loop draws no random numbers itself: callers draw the batch order from their own
`torch.Generator`, and the default generator (dropout) advances only in forward passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

B = TypeVar("B")


def train(
    model: torch.nn.Module,
    params: list[torch.nn.Parameter] | list[dict],
    epochs: Sequence[Sequence[B]],
    loss_fn: Callable[[B], torch.Tensor],
    *,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    desc: str,
    progress: bool = False,
    after_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Train `params` on `epochs[i]`, the batches of epoch i in the order they are used; returns the mean loss
    of each epoch. `after_epoch(n)` runs after epoch n (from 1), e.g. for a learning curve; it may leave
    `model` in eval mode, as every epoch starts in train mode. A non-finite loss stops the run, naming `desc`
    and the epoch. Leaves `model` in eval mode. `params` may be AdamW parameter groups, each with its own lr
    (the schedule scales every group alike)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    clipped = [p for g in opt.param_groups for p in g["params"]]
    steps = sum(len(batches) for batches in epochs)
    sched = get_cosine_schedule_with_warmup(opt, warmup_steps, steps)
    losses = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for epoch, batches in enumerate(epochs, 1):
        model.train()
        total = 0.0
        for batch in batches:
            loss = loss_fn(batch)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"{desc}, epoch {epoch}: loss is {loss.item()}")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clipped, 1.0)
            opt.step()
            sched.step()
            total += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        losses.append(total / len(batches))
        if after_epoch is not None:
            after_epoch(epoch)
    bar.close()
    model.eval()
    return losses
