"""What every recipe shares: the header of a result file, the process set-up, and D_p from D_d."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from harness import parallel
from harness.cache import content_hash
from harness.config.experiment import Experiment
from harness.config.profile import Profile
from harness.config.vocabulary import TASKS
from harness.data.collate import length_order
from harness.device import placed, placement_of
from harness.evaluate import accuracy_record, oracle_ceiling
from harness.measure import device_info
from harness.models.blip2 import parameter_counts
from harness.objectives import teacher_batches
from harness.pipeline import structure
from harness.provenance import provenance
from harness.results import spec_record
from harness.store import input_hashes

KNOWLEDGE_CODES = {"seen": "s", "unseen": "u", "": "-"}


def test_split_record(test) -> dict:
    """What per-sample records are aligned with (harness/results.py TestSplit)."""
    groups = test["knowledge_group"] if "knowledge_group" in test.column_names else [""] * len(test)
    record = {
        "n": len(test),
        "ids_hash": content_hash(list(test["id"])),
        "tasks": "".join(str(TASKS.index(t)) for t in test["task"]),
        "knowledge": "".join(KNOWLEDGE_CODES[g] for g in groups),
    }
    if "clean_answer" in test.column_names:  # SynthAd knows each image's true attributes
        record["ceiling"] = round(oracle_ceiling(test)["overall"], 6)
    return record


def result_header(exp: Experiment, profile: Profile, test) -> dict:
    """What every result file starts with: the resolved spec and its hash, provenance, device, shared runs,
    and the test split that per-sample records follow."""
    inputs = input_hashes(profile)
    return {
        **spec_record(exp, profile, inputs),
        "seeds": list(profile.seeds),
        "provenance": provenance(),
        "device": device_info(),
        "runs": inputs,
        "test_split": test_split_record(test),
    }


@contextlib.contextmanager
def running(profile: Profile) -> Iterator[None]:
    """The run context of a command's work (harness/commands/run.py run_checked, once per experiment; prune,
    evaluate): torch's threads, the placement (device, dtype) and the multi-process engine the profile names,
    held for the block and put back after it."""
    threads = torch.get_num_threads()
    if profile.measurement.num_threads:
        torch.set_num_threads(profile.measurement.num_threads)
    try:
        placement = placement_of(profile.device, profile.dtype)
        with placed(placement), parallel.using(profile.compression.parallel):
            yield
    finally:
        torch.set_num_threads(threads)


def pruning_set(
    teacher,
    processor,
    d_d,
    pruning_samples: int | None,
    batch_size: int,
    progress: bool,
    micro_batch_size: int | None = None,
    top_k: int | None = None,
) -> list:
    """D_p: the first `pruning_samples` of the split D_d (rounded up to whole batches; all of D_d when unset,
    as in the paper) with the teacher's outputs (its top `top_k` logits only, when given), batched by length
    in batches of `micro_batch_size` (default `batch_size`). Why by length: Eq. 1 sums the gradient over
    D_p, which batching leaves as it is, and batches of similar length carry no padding
    (harness/data/collate.py `length_order`)."""
    n = (
        len(d_d)
        if pruning_samples is None
        else min(len(d_d), math.ceil(pruning_samples / batch_size) * batch_size)
    )
    rows = d_d.select(range(n))
    rows = rows.select(length_order(processor, rows["question"], rows["answer"]))
    return teacher_batches(teacher, processor, rows, micro_batch_size or batch_size, progress, top_k=top_k)


def teacher_record(teacher, accuracy: dict, log: dict | None) -> dict:
    """The teacher's record in a result (harness/results.py TeacherRecord): its shape, size, test accuracy and
    the sample passes it trained on (None for a user's checkpoint, which has no training log)."""
    return {
        "structure": structure(teacher),
        "parameters": parameter_counts(teacher),
        "accuracy": accuracy_record(accuracy),
        "training_sample_passes": (log or {}).get("sample_passes", {}).get("total"),
    }
