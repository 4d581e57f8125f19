"""Recipe of a compression experiment (Tables 2–4, Figures 6–8, 10, 11, baselines): every run of the
experiment once per seed from the stored teacher, test accuracy of each final model (and of each stage end
for Table 2), then the rows' throughput, measured interleaved with the teacher's.

A run named by several experiments (the full multi-stage run is in RQ1–RQ6) is computed once: the store keys
it by what determines it, and this recipe only asks for it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from harness.cache import content_hash, entry_lock
from harness.config.experiment import CompressionRun, Experiment
from harness.config.profile import Profile
from harness.evaluate import max_answer_tokens
from harness.evaluations import teacher_test_accuracy, test_accuracy
from harness.measure import throughput, vision_side_latency
from harness.models.blip2 import parameter_counts
from harness.objectives import cached_top_k, teacher_batches
from harness.pipeline import follow, plan_run, run_compression, structure
from harness.recipes.common import pruning_set, result_header, teacher_record
from harness.recipes.from_scratch import compression_compute, train_from_scratch
from harness.recipes.teacher import get_teacher
from harness.results import Result, parse_result
from harness.store import (
    get_dataset,
    run_dir,
    step_model,
    teacher_key,
    teacher_outputs,
)


def compress(profile, run, seed, teacher, processor, data, sets, cache_dir, progress) -> tuple[dict, Path]:
    """One run for one seed (computed, resumed or found in the store): Algorithm 1 or a variant on
    (D_d, D_p) = `sets`. One-shot first runs the matching iterative run and follows its trace; mode 'scratch'
    trains the matching iterative run's final structure from scratch with at least its compute."""
    out = run_dir(profile, run, seed, cache_dir)
    with entry_lock(out):  # a second process waits, then finds the run done
        return _compress_locked(profile, run, seed, teacher, processor, data, sets, cache_dir, progress, out)


def _compress_locked(profile, run, seed, teacher, processor, data, sets, cache_dir, progress, out):
    d_d, d_p = sets
    if run.mode != "scratch":
        plan = plan_run(teacher, profile.compression, run, seed, profile.evaluation_batch_size)
        if run.mode == "one_shot":
            ref = run.model_copy(update={"mode": "iterative", "one_shot_budget": "iterative_total"})
            ref_state, _ = compress(profile, ref, seed, teacher, processor, data, sets, cache_dir, progress)
            plan = follow(plan, ref_state["trace"])
        state = run_compression(teacher, processor, data["validation"], d_p, d_d, plan, out, progress)
        return state, out
    ref = run.model_copy(
        update={
            "mode": "iterative",
            "one_shot_budget": "iterative_total",
            "scratch_structure": "final",
            "scratch_recipe": "d_d",
        }
    )
    ref_state, ref_dir = compress(profile, ref, seed, teacher, processor, data, sets, cache_dir, progress)
    n_dd, n_dp = (sum(len(b["input_ids"]) for b in x) for x in (d_d, d_p))
    lm_before = parameter_counts(teacher)["language_model"]
    reference = {
        "structure": structure(step_model(ref_dir, ref_state["step"])),
        "compute": compression_compute(
            ref_state["trace"], lm_before, n_dd, n_dp, ref.epochs_under(profile.compression)
        ),
        "p_teacher": ref_state["p_teacher"],
    }
    return train_from_scratch(profile, data, run, reference, seed, out, progress), out


def training_sets(profile, run, teacher, processor, data, tdir, progress) -> tuple[list, list]:
    """(D_d, D_p) for a run: its share of the training split with the teacher's outputs, and D_p from it."""
    c, t = profile.compression, content_hash(teacher_key(profile))
    n = max(1, math.floor(run.data_fraction * len(data["train"])))
    split = data["train"].select(range(n))
    k = cached_top_k(c, processor, split, teacher.config.text_config.vocab_size)
    d_d = teacher_outputs(  # in micro-batches: distillation accumulates them into batch_size
        (t, "d_d", n, c.micro, k),
        lambda: teacher_batches(teacher, processor, split, c.micro, progress, top_k=k),
    )
    return d_d, pruning_batches(profile, teacher, processor, split, progress)


def pruning_batches(profile, teacher, processor, split, progress) -> list:
    """D_p drawn from `split` (the run's D_d samples) with the profile teacher's outputs, built once per
    process: the compression runs and the pruning curves of one run_all share it."""
    c = profile.compression
    k = cached_top_k(c, processor, split, teacher.config.text_config.vocab_size)
    key = (content_hash(teacher_key(profile)), "d_p", len(split), c.pruning_samples, c.batch_size, c.micro, k)
    return teacher_outputs(
        key,
        lambda: pruning_set(teacher, processor, split, c.pruning_samples, c.batch_size, progress, c.micro, k),
    )


def _seed_record(exp, run, seed, state, out, sets, teacher, processor, test, bs, seconds) -> dict:
    """What a result keeps of one run and seed; Table 2 (`table: stages`) also evaluates the end of every
    stage of the experiment's first run, the one it shows."""
    final = step_model(out, state["step"])
    vision = None if run.mode == "scratch" else teacher  # a compressed model keeps the teacher's vision side
    record = {
        "seed": seed,
        "run": out.name.removeprefix("run-"),
        "run_dir": str(out),
        "seconds_this_call": seconds,
        "compression_seconds": sum(t["seconds"] for t in state["trace"]),
        "d_d_samples": sum(len(b["input_ids"]) for b in sets[0]),
        "d_p_samples": sum(len(b["input_ids"]) for b in sets[1]),
        "structure": structure(final),
        "parameters": parameter_counts(final),
        "accuracy": test_accuracy(out, state["step"], processor, test, bs, vision),
        "trace": state["trace"],
        "epochs_used": state["epochs_used"],
        "distillation_sample_passes": None
        if run.mode == "scratch"
        else round(state["epochs_used"] * sum(len(b["input_ids"]) for b in sets[0])),
        "blocks_dropped": None  # a model trained from scratch drops nothing
        if run.mode == "scratch"
        else sorted(b for t in state["trace"] for b in t.get("blocks_dropped", [])),
        "p_teacher_validation": state["p_teacher"],
    }
    if exp.table == "stages" and run is exp.runs[0]:
        ends = {row["stage"]: row["step"] for row in state["trace"]}  # the last step of every stage
        record["stage_ends"] = [
            {
                "stage": stage,
                "step": step,
                "parameters": parameter_counts(step_model(out, step)),
                "accuracy": test_accuracy(out, step, processor, test, bs, vision),
            }
            for stage, step in ends.items()
        ]
    return record


def run_compression_experiment(
    exp: Experiment, profile: Profile, cache_dir: Path, progress: bool = True
) -> Result:
    data = get_dataset(profile, cache_dir, progress)
    teacher, processor, tdir, log = get_teacher(profile, cache_dir, data, progress)
    bs, test = profile.evaluation_batch_size, data["test"]
    teacher_acc = teacher_test_accuracy(profile, tdir, teacher, processor, test)
    runs = []
    for run in exp.runs:
        sets = training_sets(profile, run, teacher, processor, data, tdir, progress)
        seeds = []
        for seed in profile.seeds:
            if progress:
                where = run_dir(profile, run, seed, cache_dir).name
                print(f"  [{exp.name}] {run.label}, seed {seed} ({where})", flush=True)
            t0 = time.perf_counter()
            state, out = compress(profile, run, seed, teacher, processor, data, sets, cache_dir, progress)
            seconds = time.perf_counter() - t0
            seeds.append(
                _seed_record(exp, run, seed, state, out, sets, teacher, processor, test, bs, seconds)
            )
        runs.append({"label": run.label, "spec": run.model_dump(mode="json"), "seeds": seeds})
    teacher_rec = teacher_record(teacher, teacher_acc, log)
    if exp.measure:
        _measure(exp, profile, teacher, processor, data, runs, teacher_rec)
    return parse_result(
        {
            **result_header(exp, profile, test),
            "teacher": teacher_rec,
            "runs": runs,
            "paper": [r.model_dump() for r in exp.paper],
        }
    )


def _measure(exp, profile, teacher, processor, data, runs, teacher_record: dict) -> None:
    """Throughput of the teacher and of every row's first-seed model (each stage end of the first run's, for
    Table 2), all interleaved in one session, plus the batch-1 latency of the (never pruned) vision side,
    which bounds the batch-1 speed-up. Each measurement is stored on the record of the model it measures."""
    first = [r["seeds"][0] for r in runs]
    if exp.table == "stages":
        records = first[0]["stage_ends"]
        models = [step_model(first[0]["run_dir"], e["step"]) for e in records]
    else:
        records = first
        models = [step_model(s["run_dir"]) for s in first]  # each run's last step
    m = profile.measurement
    new_tokens = max_answer_tokens(processor, data["test"]["answer"])
    named = {"teacher": teacher, **{f"model {i}": model for i, model in enumerate(models)}}
    speed = throughput(named, processor, data["test"], m.batch_sizes, new_tokens, m)
    for name, record in zip(named, [teacher_record, *records], strict=True):
        record["throughput"] = list(speed[name].values())
    vision = vision_side_latency({"teacher": teacher, "last": models[-1]}, processor, data["test"], m)
    teacher_record["vision_side_latency"], records[-1]["vision_side_latency"] = (
        vision["teacher"],
        vision["last"],
    )


# a full multi-stage run of the profile's teacher, as the public-LMM comparison names it ('compressed')
FULL_RUN = CompressionRun(label="All stages")
