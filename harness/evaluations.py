"""Test evaluations of stored models, each computed once and cached beside its model with its sample log:
a compression run's step models (every experiment that shares the run reads the same record) and the
teacher (every experiment shows it).

Why apart from the store: the store keys and keeps entries (harness/store.py); running a model is
evaluation's (harness/evaluate.py). This module asks the store where a record lives and whether it is
current, and evaluates only when it is not.
"""

from __future__ import annotations

from pathlib import Path

from harness.config.profile import Profile
from harness.evaluate import accuracy_record, evaluate
from harness.store import (
    cached_evaluation,
    step_evaluation,
    step_model,
    teacher_evaluation,
    write_evaluation,
)


def test_accuracy(out: Path, step: int, processor, test, batch_size: int, vision_of=None) -> dict:
    """The result's accuracy record of the run's model after `step` (harness/results.py `Accuracy`).
    `vision_of`: the teacher, whose vision side a compressed model keeps (harness/evaluate.py)."""
    path, model_hash = step_evaluation(out, step)
    if (cached := cached_evaluation(path, model_hash)) is not None:
        return cached
    acc = evaluate(step_model(out, step), processor, test, batch_size, vision_of=vision_of)
    record = accuracy_record(acc)
    write_evaluation(path, model_hash, record, acc["samples"])
    return record


def teacher_test_accuracy(profile: Profile, tdir: Path, teacher, processor, test) -> dict:
    """The teacher's evaluation (harness/evaluate.py `evaluate`'s form, its sample log in its own file)."""
    path, model_hash = teacher_evaluation(profile, tdir)
    if (cached := cached_evaluation(path, model_hash)) is not None:
        return cached
    acc = evaluate(teacher, processor, test, profile.evaluation_batch_size, vision_of=teacher)
    write_evaluation(path, model_hash, {k: v for k, v in acc.items() if k != "samples"}, acc["samples"])
    return acc
