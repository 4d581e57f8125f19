"""What every recipe shares: the header of a result file, the thread setting, and D_p from D_d."""

from __future__ import annotations

import math

import torch

from harness.measure import device_info
from harness.profile import Profile
from harness.provenance import provenance
from harness.results import spec_record
from harness.spec import Experiment
from harness.store import input_hashes


def result_header(exp: Experiment, profile: Profile) -> dict:
    """What every result file starts with: the resolved spec and its hash, provenance, device, shared runs."""
    inputs = input_hashes(profile)
    return {
        **spec_record(exp, profile, inputs),
        "seeds": list(profile.seeds),
        "provenance": provenance(),
        "device": device_info(),
        "runs": inputs,
    }


def set_threads(profile: Profile) -> None:
    if profile.measurement.num_threads:
        torch.set_num_threads(profile.measurement.num_threads)


def pruning_set(d_d: list, pruning_samples: int | None, batch_size: int) -> list:
    """D_p: the first `pruning_samples` of D_d (all of D_d when unset, as in the paper)."""
    return d_d if pruning_samples is None else d_d[: math.ceil(pruning_samples / batch_size)]
