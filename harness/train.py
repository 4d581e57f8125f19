"""The one training loop: AdamW (or a leaner optimizer), linear warm-up then cosine decay, gradients
clipped at norm 1.

Why one loop: the teacher's two stages (harness/recipes/teacher.py), distillation (harness/distill/loop.py)
and the importance benchmark's epoch differ only in what they train, on which batches in which order, and
what they log after an epoch. Cached runs are keyed by their inputs, not by this code, so the order of
operations below is part of every cached result: zero_grad, forward, backward, clip, optimiser step,
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

from harness import parallel
from harness.device import autocast, current, loss_scale

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
    after_epoch: Callable[[int], bool | None] | None = None,
    after_step: Callable[[int, float], None] | None = None,
    accumulate: bool = False,
    optimizer: str = "adamw",
    engine: parallel.Engine | None = None,
) -> list[float]:
    """Train `params` on `epochs[i]`, the batches of epoch i in the order they are used; returns the mean loss
    of each epoch. `after_epoch(n)` runs after epoch n (from 1), e.g. for a learning curve; it may leave
    `model` in eval mode, as every epoch starts in train mode; when it returns True, training stops there
    (early stopping). `after_step(k, loss)` runs after optimizer step k (from 1), e.g. for a per-step
    learning curve; the model is back in train mode after it. A non-finite loss stops the run, naming `desc`
    and the epoch. Leaves `model` in eval mode. `params` may be AdamW parameter groups, each with its own lr
    (the schedule scales every group alike). Forward and loss run under the current placement's autocast
    (harness/device.py); in float16 a GradScaler scales the loss. With `accumulate`, each element of an
    epoch is one optimizer step's list of (micro-batch, weight): the step's loss is Σ weight × loss, its
    gradient accumulated over the micro-batches, one backward each, so that only one micro-batch's
    activations are alive at a time. `optimizer`: see make_optimizer. `engine`: under `accelerate launch`
    (harness/parallel.py `engine`), each process takes its share of every step's micro-batches through the
    engine, which sums the gradients; the step is then the single process's."""
    opt = make_optimizer(optimizer, params, lr, weight_decay)
    clipped = [p for g in opt.param_groups for p in g["params"]]
    steps = sum(len(batches) for batches in epochs)
    sched = get_cosine_schedule_with_warmup(opt, warmup_steps, steps)
    scaler = torch.amp.GradScaler(current().device.type) if loss_scale() != 1.0 else None
    losses, done = [], 0
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for epoch, batches in enumerate(epochs, 1):
        model.train()
        total = 0.0
        for batch in batches:
            # one batch, or the micro-batches of one step with their weights (gradient accumulation)
            parts = batch if accumulate else [(batch, None)]
            step_loss = 0.0
            opt.zero_grad()
            if engine is None:
                for part, weight in parts:
                    with autocast():
                        loss = loss_fn(part)
                    if not math.isfinite(loss.item()):
                        raise FloatingPointError(f"{desc}, epoch {epoch}: loss is {loss.item()}")
                    if weight is not None:
                        loss = loss * weight
                    (loss if scaler is None else scaler.scale(loss)).backward()
                    step_loss += loss.item()
            else:
                step_loss = _engine_step(engine, parts, scaler, f"{desc}, epoch {epoch}")
            if scaler is None:
                torch.nn.utils.clip_grad_norm_(clipped, 1.0)
                opt.step()
            else:  # float16: scaled loss, gradients unscaled before clipping, steps skipped on overflow
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(clipped, 1.0)
                scaler.step(opt)
                scaler.update()
            sched.step()
            total += step_loss
            bar.update()
            bar.set_postfix(loss=f"{step_loss:.3f}")
            done += 1
            if after_step is not None:
                after_step(done, step_loss)
                model.train()
        losses.append(total / len(batches))
        if after_epoch is not None and after_epoch(epoch):
            break
    bar.close()
    model.eval()
    return losses


def _engine_step(engine: parallel.Engine, parts: list, scaler, where: str) -> float:
    """One optimizer step's passes of this process through `engine`: its share of the micro-batches, the
    gradient exchange held back until its last; returns the step's loss summed over the processes."""
    share = parallel.share(parts)
    total, bad = 0.0, None
    for i, ((part, weight), counts) in enumerate(share):
        with engine.syncing(i == len(share) - 1):  # around the forward and the backward pass (DDP)
            with autocast():
                loss = engine.forward(part)
            if not math.isfinite(loss.item()):
                bad = bad or loss.item()  # every process finishes its passes first: its peers wait in them
            if weight is not None:
                loss = loss * weight
            scaled = loss * (engine.scale if counts else 0.0)
            (scaled if scaler is None else scaler.scale(scaled)).backward()
        total += loss.item() if counts else 0.0
    parallel.stop_if_any(bad, where)
    return parallel.sum_value(total)


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """adamw: torch's AdamW, whose two states take the parameters' dtype; adafactor: torch's Adafactor
    (factored second moment, no momentum); adamw_8bit: bitsandbytes' AdamW8bit (two 8-bit states per
    parameter; tensors under 4096 elements keep 32-bit ones). Why a choice: AdamW's state is twice the
    weights, more than a 2.7B language model leaves room for on one 24 GB GPU (`python -m harness plan`)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise ImportError(
                "compression.optimizer: adamw_8bit needs bitsandbytes (pip install bitsandbytes, or the "
                "project's [gpu] extra)"
            ) from e
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'; allowed: adamw, adafactor, adamw_8bit")
