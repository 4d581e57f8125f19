"""Pruning curves without recovery: each importance criterion judged on its own.

Why: after every step of Algorithm 1 distillation repairs the damage, so recovered runs can end level even
when one criterion removed far more than another. Here the teacher is pruned one step size at a time up to
the level's maximum, with no distillation at all, and every step is scored on the validation split and,
per sample, on the test split (harness/report/claims.py pairs criteria over the whole curve). Only the
importance pass and the evaluations cost anything, so a curve takes a fraction of a compression run.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.cache import entry_lock, write_sealed_json
from harness.config.compression import STEP_FIELDS
from harness.config.experiment import Experiment
from harness.config.profile import Profile
from harness.evaluate import accuracy_record, evaluate
from harness.evaluations import teacher_test_accuracy
from harness.models.blip2 import blocks, parameter_counts
from harness.prune.importance import block_influence, importance
from harness.prune.step import level_width, prune_step
from harness.recipes.common import result_header, teacher_record
from harness.recipes.compression import pruning_batches
from harness.recipes.teacher import get_teacher
from harness.results import Result, parse_result
from harness.store import cached_curve, curve_path, get_dataset


def _scores(model, level: str, criterion: str, d_p: list, seed: int) -> torch.Tensor | None:
    """What `prune_step` removes by: None for the last blocks (Algorithm 1), else one score per structure."""
    if level == "block":
        if criterion == "last":
            return None
        if criterion == "block_influence":
            return block_influence(model, d_p)
        return torch.rand(len(blocks(model, "language_model")), generator=torch.Generator().manual_seed(seed))
    return importance(model, level, criterion, d_p, seed)


def _point(model, step: int, removed: int, width: int, processor, data, batch_size: int, teacher) -> dict:
    val = evaluate(model, processor, data["validation"], batch_size, vision_of=teacher)
    test = evaluate(model, processor, data["test"], batch_size, vision_of=teacher)
    return {
        "step": step,
        "removed": removed,
        "share": removed / width,
        "params_lm": parameter_counts(model)["language_model"],
        "validation": val["overall"],
        "accuracy": accuracy_record(test),
    }


def pruning_curve(
    teacher,
    processor,
    data,
    d_p: list,
    level: str,
    criterion: str,
    seed: int,
    profile: Profile,
    start: dict,
    progress: bool,
) -> dict:
    """The teacher pruned at `level` by `criterion`, one step size at a time up to the profile's maximum
    (or as far as the level allows), scored after each step; `start` is the unpruned teacher's point,
    the same for every curve (`teacher_point`)."""
    step_field, max_field = STEP_FIELDS[level]
    amount, maximum = getattr(profile.compression, step_field), getattr(profile.compression, max_field)
    width = level_width(teacher, level)
    steps = min(maximum, width - 1) // amount
    bs = profile.evaluation_batch_size
    model, t0 = copy.deepcopy(teacher).eval(), time.perf_counter()
    points = [start]
    desc = f"curve {level}/{criterion} seed {seed}"
    for k in tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=False):
        prune_step(model, level, amount, _scores(model, level, criterion, d_p, seed * 1000 + k))
        points.append(_point(model, k, k * amount, width, processor, data, bs, teacher))
    return {
        "level": level,
        "criterion": criterion,
        "seed": seed,
        "points": points,
        "seconds": time.perf_counter() - t0,
    }


def teacher_point(teacher, processor, data, test_accuracy: dict, batch_size: int) -> dict:
    """Step 0 of every curve: the teacher itself, its test accuracy the cached one (harness/store.py)."""
    val = evaluate(teacher, processor, data["validation"], batch_size, vision_of=teacher)
    return {
        "step": 0,
        "removed": 0,
        "share": 0.0,
        "params_lm": parameter_counts(teacher)["language_model"],
        "validation": val["overall"],
        "accuracy": accuracy_record(test_accuracy),
    }


def run_pruning_curves(exp: Experiment, profile: Profile, cache_dir: Path, progress: bool = True) -> Result:
    data = get_dataset(profile, cache_dir, progress)
    teacher, processor, tdir, log = get_teacher(profile, cache_dir, data, progress)
    teacher_acc = teacher_test_accuracy(profile, tdir, teacher, processor, data["test"])
    d_p = pruning_batches(profile, teacher, processor, data["train"], progress)
    bs = profile.evaluation_batch_size
    curves, start = [], None
    for curve in exp.curves:
        for criterion in curve.criteria:
            for seed in profile.seeds:
                path = curve_path(profile, curve.level, criterion, seed, cache_dir)
                with entry_lock(path):
                    found = cached_curve(path)
                    if found is None:
                        if start is None:
                            start = teacher_point(teacher, processor, data, teacher_acc, bs)
                        found = pruning_curve(
                            teacher,
                            processor,
                            data,
                            d_p,
                            curve.level,
                            criterion,
                            seed,
                            profile,
                            start,
                            progress,
                        )
                        write_sealed_json(path, found)
                # a criterion that draws no random numbers gives one curve, shared by every seed
                curves.append({k: v for k, v in found.items() if k != "sha256"} | {"seed": seed})
    teacher_rec = teacher_record(teacher, teacher_acc, log)
    header = result_header(exp, profile, data["test"])
    return parse_result({**header, "teacher": teacher_rec, "curves": curves})
