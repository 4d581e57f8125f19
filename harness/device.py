"""Where the work runs and in what precision: the profile's `device` and `dtype` (--device / --dtype).

Why held by the run (harness/recipes/common.py `running`, a `with` block around each command's work, which
`placed` here opens): every model of a recipe and every forward pass follow the one placement the run starts
with, so a step model reloaded from disk cannot end up on another device, and when the run ends the placement
before it is back (nothing leaks into the next experiment or test). Inputs follow the model (`on`; cached
teacher outputs stay in CPU memory until a batch is used, harness/objectives.py), and every forward pass runs
under `autocast`: on the CPU in float32 both are no-ops, so that path computes exactly what it computed before
these options existed.

Precision is mixed, not cast: weights and optimizer state stay float32, matrix products run in bfloat16 or
float16 under torch.autocast, and float16 training scales the loss (`loss_scale`). Measurement alone casts a
copy of each model's weights to the dtype (harness/measure.py `as_deployed`), because that is what a deployed
model runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from harness.errors import DeviceError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype

    @property
    def default(self) -> bool:
        """CPU in float32: what every committed result was computed with (cache keys leave it out)."""
        return self.device.type == "cpu" and self.dtype == torch.float32

    def record(self) -> dict:
        """What a cache key or a spec hash carries of a placement other than the default."""
        return {"device": self.device.type, "dtype": str(self.dtype).removeprefix("torch.")}


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when present, else the CPU), 'cpu', 'cuda' or 'cuda:N'; a CUDA device this machine does
    not have is refused with the reason."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process under accelerate launch
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device: '{name}' is not a device; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device: '{name}' is not supported; allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device: '{name}' asked for, but this machine has no CUDA device torch can use "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device: '{name}' asked for, but this machine has {torch.cuda.device_count()} CUDA "
                f"device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
    return device


def placement_of(device: str, dtype: str) -> Placement:
    """The placement a profile's `device` and `dtype` fields name, checked against this machine."""
    if dtype not in DTYPES:
        raise DeviceError(f"dtype: '{dtype}' is not a dtype; allowed: {', '.join(DTYPES)}")
    return Placement(resolve_device(device), DTYPES[dtype])


CPU_FLOAT32 = Placement(torch.device("cpu"), torch.float32)
_PLACEMENT: ContextVar[Placement | None] = ContextVar("placement", default=None)


@contextlib.contextmanager
def placed(placement: Placement) -> Iterator[Placement]:
    """Work on `placement` inside the block (a run, harness/recipes/common.py `running`); the placement before
    it afterwards. Outside every run: the CPU in float32."""
    token = _PLACEMENT.set(placement)
    try:
        yield placement
    finally:
        _PLACEMENT.reset(token)


def current() -> Placement:
    """The placement of the run this code is part of."""
    return _PLACEMENT.get() or CPU_FLOAT32


def on(batch: dict, device: torch.device | None = None) -> dict:
    """The batch's tensors on `device` (default: the current placement's); other values as they are."""
    device = device or current().device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def autocast() -> contextlib.AbstractContextManager:
    """Mixed precision for the forward passes of the current placement (a no-op in float32)."""
    p = current()
    if p.dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(p.device.type, dtype=p.dtype)


def loss_scale() -> float:
    """Float16 gradients underflow unscaled: the loss is multiplied by this before backward and the
    gradients divided by it after (torch.amp.GradScaler in the training loop; a fixed scale for Eq. 1's
    one accumulated gradient). 1 in float32 and bfloat16."""
    return 2.0**12 if current().dtype == torch.float16 else 1.0
