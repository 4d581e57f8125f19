"""Data parallelism under `accelerate launch`: distillation and Eq. 1 share their micro-batches out between
the processes and sum the gradients; everything else runs whole in every process.

Why this split: the two phases are where a compression run spends its compute, and both already take the
gradient of one loss over a set of weighted micro-batches (harness/train.py, harness/prune/importance.py), so
summing each process's share of that gradient gives the single process's gradient exactly, up to the order
of float additions. accelerate starts the processes (`accelerate launch --multi_gpu --num_processes N`, its
torchrun launcher, also on a machine without GPUs: its `--cpu` launcher needs MPI for more than one process)
and sets up torch.distributed (gloo on the CPU, NCCL between GPUs, one GPU per process); without it (one
process) every function here does nothing. Only the main process writes to the cache
and results, and the processes pass every cache entry's lock together (harness/cache.py), so they take the
same decisions and a collective run never has two writers.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: `python -m harness report` runs without it
    import torch


@functools.cache
def _state():
    """accelerate's PartialState when this process is one of several, else None (nothing imported)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    from harness.device import current

    # gloo between CPU processes, NCCL between GPUs: the placement the profile chose (harness/device.py),
    # set before anything here runs (harness/cli.py run_experiment)
    return PartialState(cpu=current().device.type == "cpu")


def world() -> int:
    s = _state()
    return 1 if s is None else s.num_processes


def rank() -> int:
    s = _state()
    return 0 if s is None else s.process_index


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        _state().wait_for_everyone()


def share(items: list) -> list:
    """This process's share of `items` (every world()-th, from its rank): a step's micro-batches, D_p."""
    return items[rank() :: world()]


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its sum over the processes. A parameter without a gradient in some process
    (no micro-batch there) takes zeros; one without a gradient in every process keeps none, as in a single
    process."""
    if world() == 1:
        return
    import torch
    import torch.distributed as dist

    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=_device())
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    for p, any_grad in zip(params, has.tolist(), strict=True):
        if not any_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def from_main(obj):
    """The main process's `obj` in every process (a picklable value): decisions that must be the same in all
    of them are taken from one process's numbers, which another process could round otherwise."""
    if world() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def sum_value(value: float) -> float:
    """`value` summed over the processes (a step's loss, for the log)."""
    if world() == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return float(t.item())


def _device() -> torch.device:
    """Where collectives' own tensors go: NCCL reduces GPU tensors only."""
    from harness.device import current

    return current().device
