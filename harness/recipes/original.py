"""Recipe of Table 2's row 'Original': the trained teacher's size, throughput and per-task accuracy."""

from __future__ import annotations

from pathlib import Path

from harness.config.experiment import Experiment
from harness.config.profile import Profile
from harness.evaluate import accuracy_record, max_answer_tokens, oracle_ceiling
from harness.evaluations import teacher_test_accuracy
from harness.measure import checkpoint_bytes, throughput
from harness.models.blip2 import parameter_counts
from harness.recipes.common import result_header
from harness.recipes.teacher import get_teacher
from harness.results import Result, parse_result
from harness.store import get_dataset


def run_original(exp: Experiment, profile: Profile, cache_dir: Path, progress: bool = True) -> Result:
    data = get_dataset(profile, cache_dir, progress)
    model, processor, tdir, log = get_teacher(profile, cache_dir, data, progress)
    # cached beside the teacher with its sample log, the same evaluation every compression result shows
    acc = teacher_test_accuracy(profile, tdir, model, processor, data["test"])
    counts = parameter_counts(model)
    new_tokens = max_answer_tokens(processor, data["test"]["answer"])
    speed = throughput(
        {"original": model},
        processor,
        data["test"],
        profile.measurement.batch_sizes,
        new_tokens,
        profile.measurement,
    )["original"]
    rows = [
        {
            "row": "Original (stand-in teacher)",
            "parameters": counts,
            "checkpoint_bytes": checkpoint_bytes(tdir),
            "accuracy": accuracy_record(acc),
            "throughput": list(speed.values()),
            "generated_tokens_per_sample": new_tokens,
        }
    ]
    if profile.data.source == "synth_ads":
        ceiling = oracle_ceiling(data["test"])
        rows.append(
            {
                "row": "Oracle ceiling (SynthAd labels)",
                "accuracy": {**ceiling["per_task"], "overall": ceiling["overall"]},
            }
        )
    return parse_result(
        {
            **result_header(exp, profile, data["test"]),
            "teacher_training": log,
            "rows": rows,
            "paper": [r.model_dump() for r in exp.paper],
        }
    )
