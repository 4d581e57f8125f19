"""Several processes under `accelerate launch`: Eq. 1 and distillation share their micro-batches out between
the processes, on accelerate's DDP (`parallel: ddp`) or with every language model sharded by torch's FSDP
(`parallel: fsdp`); everything else runs whole in every process.

Why these two phases: they are where a compression run spends its compute, and both take the gradient of
one loss over a set of weighted micro-batches (harness/train.py, harness/prune/importance.py), so the
processes' gradients, summed by the engine, are the single process's gradient up to the order of float
additions. Each process takes every world()-th micro-batch of a step; a process left short repeats one with
weight 0, since both engines need every process to run as many forward and backward passes.

- ddp: `Accelerator.prepare` wraps the trained parts in DistributedDataParallel (bucketed all-reduce,
  overlapped with the backward pass; gradients as bucket views, so no second copy), and `Accelerator.no_sync`
  holds the all-reduce back until a process's last micro-batch of the step. Every process holds the whole
  teacher and student: faster, never smaller.
- fsdp: torch's `fully_shard` (FSDP2) on every language-model block. A language model lives whole in CPU
  memory between phases (`place`); for each phase with a language model's forward pass (Eq. 1 and its
  scores, distillation, teacher outputs, evaluation, Block Influence) `sharded` builds a copy whose weights
  are split across the processes' devices, gathers one block at a time as the forward and backward passes
  reach it, and writes the gathered weights back at the end. Surgery and saving see the whole model, as in
  one process. `python -m harness plan --gpus N --parallel fsdp` gives the memory per device.

accelerate starts the processes (`accelerate launch --multi_gpu --num_processes N`, its torchrun launcher,
also on a machine without GPUs: its `--cpu` launcher needs MPI for more than one process) and sets up
torch.distributed (gloo on the CPU, NCCL between GPUs, one GPU per process). In one process every function
here does nothing. Only the main process writes to the cache and results, and the processes pass every cache
entry's lock together (harness/cache.py), so they take the same decisions and never have two writers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: `python -m harness report` runs without it
    import torch

MODES = ("ddp", "fsdp")
_MODE: ContextVar[str] = ContextVar("parallel_mode", default="ddp")


@contextlib.contextmanager
def using(mode: str) -> Iterator[str]:
    """The engine of the run's multi-process phases (the profile's `compression.parallel`) inside the block
    (harness/recipes/common.py `running`); ddp outside every run."""
    if mode not in MODES:
        raise ValueError(f"compression.parallel: '{mode}' is not an engine; allowed: {', '.join(MODES)}")
    token = _MODE.set(mode)
    try:
        yield mode
    finally:
        _MODE.reset(token)


def sharding() -> bool:
    """Whether language models are sharded across the processes now (fsdp with several processes)."""
    return _MODE.get() == "fsdp" and world() > 1


@functools.cache
def _accelerator():
    """accelerate's Accelerator when this process is one of several, else None (nothing imported). Its mixed
    precision stays off: harness/device.py's autocast is the one precision policy."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from harness.device import current

    # gloo between CPU processes, NCCL between GPUs: the placement the profile chose (harness/device.py),
    # set before anything here runs (harness/commands/run.py run_experiment). Unused parameters are found, not
    # refused: a tied or skipped weight gets a zero gradient, as summing would give it.
    ddp = DistributedDataParallelKwargs(
        gradient_as_bucket_view=True, broadcast_buffers=False, find_unused_parameters=True
    )
    return Accelerator(cpu=current().device.type == "cpu", mixed_precision="no", kwargs_handlers=[ddp])


def world() -> int:
    a = _accelerator()
    return 1 if a is None else a.num_processes


def rank() -> int:
    a = _accelerator()
    return 0 if a is None else a.process_index


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        _accelerator().wait_for_everyone()


def share(items: list) -> list[tuple[object, bool]]:
    """This process's share of `items` (every world()-th, from its rank), each with whether it counts: a
    process left with fewer than the others repeats its last (or the first) item, not counting, so that every
    process runs as many passes."""
    mine = [(item, True) for item in items[rank() :: world()]]
    each = -(-len(items) // world())
    while items and len(mine) < each:
        mine.append(((mine[-1][0] if mine else items[0]), False))
    return mine


def from_main(obj):
    """The main process's `obj` in every process (a picklable value): decisions that must be the same in all
    of them are taken from one process's numbers, which another process could round otherwise."""
    if world() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def stop_if_any(bad: float | None, where: str) -> None:
    """Raise FloatingPointError in every process if a loss was not finite (`bad`) in any: a process that
    raised alone would leave the others waiting in a collective."""
    if sum_value(0.0 if bad is None else 1.0) > 0:
        why = f"loss is {bad}" if bad is not None else "a loss in another process is not finite"
        raise FloatingPointError(f"{where}: {why}")


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


@dataclass
class Engine:
    """How a phase's passes run: `forward(batch)` gives the loss through the engine's wrapper, `syncing(last)`
    holds the gradient exchange back until a process's last micro-batch of a step, and the loss is multiplied
    by `scale` before backward (both engines average the processes' gradients; the harness sums them)."""

    forward: Callable
    syncing: Callable[[bool], contextlib.AbstractContextManager]
    scale: int = 1


TRAINED = ("language_projection", "language_model")


@contextlib.contextmanager
def engine(model, loss: Callable) -> Iterator[Engine | None]:
    """The engine for a gradient phase of `model`'s trained parts (distillation, Eq. 1), or None in one
    process. Under fsdp, `model`'s projection and language model are the sharded copies for the duration:
    take the parameters to optimise inside this block."""
    if world() == 1:
        yield None
        return
    if sharding():
        # every micro-batch's gradient is reduce-scattered at once and the shards accumulate: holding the
        # exchange back would keep every whole gradient alive until the step's last micro-batch
        with sharded(model, TRAINED, loss) as root:
            yield Engine(root, lambda last: contextlib.nullcontext(), world())
        return
    acc = _accelerator()
    wrapped = acc.prepare_model(_objective()({n: getattr(model, n) for n in TRAINED}, loss))
    try:
        yield Engine(
            wrapped, lambda last: contextlib.nullcontext() if last else acc.no_sync(wrapped), world()
        )
    finally:
        acc.free_memory()  # the wrapper and its buckets go; the model's parameters stay


@functools.cache
def _objective() -> type:
    import torch

    class Objective(torch.nn.Module):
        """The parts a phase trains, as one module whose forward is the phase's loss: the module an engine
        wraps, so that its hooks see every pass."""

        def __init__(self, parts: dict, loss: Callable | None):
            super().__init__()
            self.parts = torch.nn.ModuleDict(parts)
            self.loss = loss

        def forward(self, batch):
            # a gradient phase's loss of one batch, or (forward-only, no loss) a whole phase as a callable
            return batch() if self.loss is None else self.loss(batch)

    return Objective


def sharded_call(model, fn: Callable):
    """`fn()` with `model`'s language model sharded (fsdp, several processes; else as it is), run inside the
    sharded root's forward: a forward-only phase (teacher outputs, evaluation, Block Influence)."""
    with sharded(model) as root:
        return fn() if root is None else root(fn)


@contextlib.contextmanager
def sharded(model, names: tuple[str, ...] = ("language_model",), loss: Callable | None = None):
    """`model`'s parts `names` replaced, for the duration, by copies sharded across the processes (torch's
    fully_shard on every language-model block and on the whole); yields the root (an Objective whose
    forward is `loss`), or None where nothing is sharded (fsdp off, or one process). The parts' whole weights
    are freed meanwhile and written back, gathered, at the end: gradients are not kept. Every pass must run
    inside the root's forward (a gradient phase's loss; `sharded_call` for a forward-only phase), so that
    each block gathers its weights for its own forward alone and the root's (embeddings, final norm, head)
    stay gathered for the whole pass (harness/models/blip2.py lm_inputs_embeds reads them)."""
    if not sharding() or model is None:
        yield None
        return
    import torch
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from harness.device import current

    device = current().device
    originals = {n: getattr(model, n) for n in names}
    copies = {}
    for n, orig in originals.items():
        memo = {
            id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in orig.parameters()
        }
        work = copy.deepcopy(orig, memo)  # the module tree, every weight on the meta device
        for block in _blocks(work):
            fully_shard(block)
        copies[n] = work
    root = _objective()(copies, loss)
    fully_shard(root)
    root.to_empty(device=device)
    homes = {}
    with torch.no_grad():
        for n, orig in originals.items():
            for (name, p), (wname, w) in zip(
                orig.named_parameters(), copies[n].named_parameters(), strict=True
            ):
                assert name == wname, (name, wname)
                w.to_local().copy_(_my_chunk(p.data, w.to_local().shape))
                homes[(n, name)] = (p, p.device)
                p.data = torch.empty(0, dtype=p.dtype, device=p.device)  # the whole weight waits, freed
            for (_, b), (_, wb) in zip(orig.named_buffers(), copies[n].named_buffers(), strict=True):
                wb.copy_(b)
    for n, work in copies.items():
        setattr(model, n, work)
    try:
        yield root
    finally:
        for n, orig in originals.items():
            setattr(model, n, orig)
        for module in root.modules():  # every unit back to its shards, so each weight gathers alike
            if isinstance(module, FSDPModule):
                module.reshard()
        with torch.no_grad():
            for n in originals:
                for name, w in copies[n].named_parameters():
                    p, home = homes[(n, name)]
                    p.data = w.full_tensor().to(home)  # one weight gathered at a time
        del root, copies


def _blocks(module) -> list:
    """The repeated blocks of a transformers model: the items of its outermost ModuleLists (decoder layers;
    a T5's encoder and decoder blocks, not the sub-layers inside them)."""
    import torch

    found: list = []
    for path, m in module.named_modules():
        if isinstance(m, torch.nn.ModuleList) and not any(path.startswith(f"{p}.") for p, _ in found):
            found += [(f"{path}.{i}", block) for i, block in enumerate(m)]
    return [block for _, block in found]


def _my_chunk(full: torch.Tensor, shape) -> torch.Tensor:
    """This process's rows of `full` as fully_shard splits them (torch.chunk along dim 0)."""
    import torch

    chunks = torch.chunk(full, world(), dim=0)
    mine = chunks[rank()] if rank() < len(chunks) else full[:0]
    if tuple(mine.shape) != tuple(shape):
        raise RuntimeError(f"fsdp: a shard of {tuple(full.shape)} is {tuple(shape)}, not {tuple(mine.shape)}")
    return mine


def place(model, device: torch.device):
    """`model` on `device`; while language models are sharded (fsdp, several processes), its language model
    stays in CPU memory, and only its shards reach the device (`sharded`)."""
    if not sharding():
        return model.to(device)
    for name, child in model.named_children():
        if name != "language_model":
            child.to(device)
    for p in model.parameters(recurse=False):  # BLIP-2's query tokens
        p.data = p.data.to(device)
    model.language_model.to("cpu")
    return model
