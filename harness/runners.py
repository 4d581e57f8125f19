"""One plain function per experiment kind: set up, run, write the result file, render its table.

Why flat: a reader should see the whole recipe of an experiment in one screen, in the order it happens.
Results are rendered only from the result JSON (harness.report.render), so `report` can redo every table
offline. Compression runs are keyed by what determines them (teacher, compression section, run variant,
seed), so a run named by several experiments (the full multi-stage run is in RQ1–RQ6) is computed once.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch

from harness.cache import atomic_dir, content_hash, write_json
from harness.distill.loop import distill, teacher_batches
from harness.evaluate import evaluate, max_answer_tokens, oracle_ceiling
from harness.measure import checkpoint_bytes, device_info, throughput, vision_side_latency
from harness.models.blip2 import parameter_counts
from harness.models.public import load_lmm
from harness.pipeline import STEP_KEYS, reached, run_compression, run_maxima, step_model, structure
from harness.profile import Profile
from harness.provenance import provenance
from harness.prune.structures import lm_family
from harness.recipes.from_scratch import compression_compute, train_from_scratch
from harness.report.render import render_compression, render_original, render_public
from harness.results import spec_record, validated
from harness.spec import CompressionRun, Experiment
from harness.store import dataset_key, get_dataset, get_teacher, teacher_key


def result_header(exp: Experiment, profile: Profile) -> dict:
    """What every result file starts with: the resolved spec and its hash, provenance, device, shared runs."""
    return {
        **spec_record(exp, profile),
        "seeds": list(profile.seeds),
        "provenance": provenance(),
        "device": device_info(),
        "runs": {
            "dataset": content_hash(dataset_key(profile)),
            "teacher": content_hash(teacher_key(profile)),
        },
    }


def _publish_result(out_dir: Path, result: dict, render) -> None:
    """The result folder (result.json, tables, figures, traces) is built in a temporary folder and replaces
    the old one only once rendering has succeeded: a render that fails leaves the previous folder as it was,
    never a new result.json beside stale tables."""
    with atomic_dir(Path(out_dir)) as tmp:
        write_json(tmp / "result.json", result)
        render(tmp)


def _threads(profile: Profile) -> None:
    if profile.measurement.num_threads:
        torch.set_num_threads(profile.measurement.num_threads)


def run_original(
    exp: Experiment, profile: Profile, out_dir: Path, cache_dir: Path, progress: bool = True
) -> dict:
    """Table 2, row 'Original': the trained teacher's size, throughput and per-task accuracy."""
    _threads(profile)
    data = get_dataset(profile, cache_dir, progress)
    model, processor, tdir, log = get_teacher(profile, cache_dir, data, progress)
    acc = evaluate(model, processor, data["test"], profile.evaluation_batch_size, progress)
    counts = parameter_counts(model)
    new_tokens = max_answer_tokens(processor, data["test"]["answer"])
    speed = throughput(
        {"original": model},
        processor,
        data["test"],
        profile.measurement.batch_sizes,
        new_tokens,
        profile.measurement.model_dump(),
    )["original"]
    rows = [
        {
            "row": "Original (stand-in teacher)",
            "parameters": counts,
            "checkpoint_bytes": checkpoint_bytes(tdir),
            "accuracy": {**acc["per_task"], "overall": acc["overall"], "n_test": acc["n"]},
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
    result = validated(
        {
            **result_header(exp, profile),
            "teacher_training": log,
            "rows": rows,
            "paper": [r.model_dump() for r in exp.paper],
        }
    )
    _publish_result(out_dir, result, render_original)
    return result


def compression_key(profile: Profile, run: CompressionRun, seed: int) -> dict:
    return {
        "teacher": teacher_key(profile),
        "compression": profile.compression.model_dump(mode="json"),
        "run": run.key(),
        "seed": seed,
        "eval_batch_size": profile.evaluation_batch_size,
    }


def _run_config(c: dict, run: CompressionRun, seed: int, eval_batch_size: int, teacher) -> dict:
    """What `run_compression` takes: the run variant, its seed, the compression section `c`, each stage's
    maximum (the iterative run's stopping point and one-shot's target), whether α stops a stage (not for a
    run pruned to a target size) and the one-shot epoch budget (E × the iterative run's step count)."""
    maxima = run_maxima(teacher, c, run.stages, run.target_share)
    steps = {level: maxima[level] // c[STEP_KEYS[level][0]] for level in STEP_KEYS}
    return {
        **run.model_dump(mode="json", exclude={"label", "paper"}),
        "seed": seed,
        "compression": c,
        "eval_batch_size": eval_batch_size,
        "maxima": maxima,
        "use_alpha": run.target_share is None,
        "total_epochs": c["epochs"] * sum(steps[s] for s in run.stages),
    }


def _run_dir(profile: Profile, run: CompressionRun, seed: int, cache_dir: Path) -> Path:
    return Path(cache_dir) / "compression" / f"run-{content_hash(compression_key(profile, run, seed))}"


def pruning_set(d_d: list, pruning_samples: int | None, batch_size: int) -> list:
    """D_p: the first `pruning_samples` of D_d (all of D_d when unset, as in the paper)."""
    return d_d if pruning_samples is None else d_d[: math.ceil(pruning_samples / batch_size)]


def _test_accuracy(run_dir: Path, step: int, processor, test, batch_size: int) -> dict:
    """Test accuracy of the model after `step`, cached in the run folder: RQ1–RQ6 share runs."""
    path = run_dir / "eval" / f"test_step_{step:03d}.json"
    if path.is_file():
        return json.loads(path.read_text())
    acc = evaluate(step_model(run_dir, step), processor, test, batch_size)
    record = {**acc["per_task"], "overall": acc["overall"]}
    write_json(path, record)
    return record


_TEACHER_BATCHES: dict[tuple, list] = {}


def cached_teacher_batches(
    teacher_dir: Path, teacher, processor, train, n: int, batch_size: int, progress
) -> list:
    """D_d for the first `n` training samples, computed once per process: every experiment of a run_all and
    every run of an experiment that uses the same share of the data reuses it."""
    key = (str(teacher_dir), n, batch_size)
    if key not in _TEACHER_BATCHES:
        _TEACHER_BATCHES[key] = teacher_batches(
            teacher, processor, train.select(range(n)), batch_size, progress
        )
    return _TEACHER_BATCHES[key]


def teacher_test_accuracy(teacher_dir: Path, teacher, processor, test, batch_size: int) -> dict:
    """The teacher's test accuracy, cached beside the teacher (every experiment shows it)."""
    path = Path(teacher_dir) / "eval" / f"test_bs{batch_size}.json"
    if path.is_file():
        return json.loads(path.read_text())
    acc = evaluate(teacher, processor, test, batch_size)
    write_json(path, acc)
    return acc


def stage_ends(trace: list[dict]) -> dict[str, int]:
    """The last step of every stage that ran (Table 2's rows)."""
    return {row["stage"]: row["step"] for row in trace}


def _compress(profile, run, seed, teacher, processor, data, sets, cache_dir, progress) -> tuple[dict, Path]:
    """One run for one seed (computed, resumed or cached): Algorithm 1 or a variant on D_d, D_p = `sets`;
    for mode 'scratch', the matching iterative run first, then its final structure trained from scratch."""
    d_d, d_p = sets
    run_dir = _run_dir(profile, run, seed, cache_dir)
    if run.mode != "scratch":
        cfg = _run_config(profile.compression.model_dump(), run, seed, profile.evaluation_batch_size, teacher)
        if run.mode == "one_shot":  # exactly the structure the iterative run reaches, with its epochs
            ref = run.model_copy(update={"mode": "iterative"})
            ref_state, _ = _compress(profile, ref, seed, teacher, processor, data, sets, cache_dir, progress)
            cfg["maxima"] = {**cfg["maxima"], **reached(ref_state["trace"], run.stages)}
            cfg["total_epochs"] = profile.compression.epochs * len(ref_state["trace"])
        state = run_compression(teacher, processor, data["validation"], d_p, d_d, cfg, run_dir, progress)
        return state, run_dir
    ref = run.model_copy(update={"mode": "iterative"})
    ref_state, ref_dir = _compress(profile, ref, seed, teacher, processor, data, sets, cache_dir, progress)
    n_dd, n_dp = (sum(len(b["input_ids"]) for b in x) for x in (d_d, d_p))
    compute = compression_compute(
        ref_state["trace"],
        parameter_counts(teacher)["language_model"],
        n_dd,
        n_dp,
        profile.compression.epochs,
    )
    reference = {
        "structure": structure(step_model(ref_dir, ref_state["step"])),
        "compute": compute,
        "p_teacher": ref_state["p_teacher"],
    }
    return train_from_scratch(profile, data, reference, seed, run_dir, progress), run_dir


def _training_sets(profile, run, teacher, processor, data, tdir, progress) -> tuple[list, list]:
    """(D_d, D_p) for a run: its share of the training split with the teacher's outputs, and D_p from it."""
    c = profile.compression
    n = max(1, math.floor(run.data_fraction * len(data["train"])))
    d_d = cached_teacher_batches(tdir, teacher, processor, data["train"], n, c.batch_size, progress)
    return d_d, pruning_set(d_d, c.pruning_samples, c.batch_size)


def run_compression_experiment(
    exp: Experiment, profile: Profile, out_dir: Path, cache_dir: Path, progress: bool = True
) -> dict:
    """Every run of the experiment (Algorithm 1 or a variant, from the cached teacher) once per seed; test
    accuracy of each final model (and of each stage end for Table 2); then the rows' throughput, measured
    interleaved with the teacher's."""
    _threads(profile)
    data = get_dataset(profile, cache_dir, progress)
    teacher, processor, tdir, _ = get_teacher(profile, cache_dir, data, progress)
    bs, test = profile.evaluation_batch_size, data["test"]
    teacher_acc = teacher_test_accuracy(tdir, teacher, processor, test, bs)
    runs = []
    for run in exp.runs:
        sets = _training_sets(profile, run, teacher, processor, data, tdir, progress)
        seeds = []
        for seed in profile.seeds:
            if progress:
                where = _run_dir(profile, run, seed, cache_dir).name
                print(f"  [{exp.name}] {run.label}, seed {seed} ({where})", flush=True)
            t0 = time.perf_counter()
            state, run_dir = _compress(
                profile, run, seed, teacher, processor, data, sets, cache_dir, progress
            )
            final = step_model(run_dir, state["step"])
            record = {
                "seed": seed,
                "run": run_dir.name.removeprefix("run-"),
                "run_dir": str(run_dir),
                "seconds_this_call": time.perf_counter() - t0,
                "compression_seconds": sum(t["seconds"] for t in state["trace"]),
                "d_d_samples": sum(len(b["input_ids"]) for b in sets[0]),
                "d_p_samples": sum(len(b["input_ids"]) for b in sets[1]),
                "structure": structure(final),
                "parameters": parameter_counts(final),
                "accuracy": _test_accuracy(run_dir, state["step"], processor, test, bs),
                "trace": state["trace"],
                "epochs_used": state["epochs_used"],
                "blocks_dropped": None  # a model trained from scratch drops nothing
                if run.mode == "scratch"
                else sorted(b for t in state["trace"] for b in t.get("blocks_dropped", [])),
                "p_teacher_validation": state["p_teacher"],
            }
            if exp.table == "stages":
                record["stage_ends"] = [
                    {
                        "stage": stage,
                        "step": step,
                        "parameters": parameter_counts(step_model(run_dir, step)),
                        "accuracy": _test_accuracy(run_dir, step, processor, test, bs),
                    }
                    for stage, step in stage_ends(state["trace"]).items()
                ]
            seeds.append(record)
        runs.append({"label": run.label, "spec": run.model_dump(mode="json"), "seeds": seeds})
    teacher_record = {
        "structure": structure(teacher),
        "parameters": parameter_counts(teacher),
        "accuracy": {**teacher_acc["per_task"], "overall": teacher_acc["overall"]},
    }
    if exp.measure:
        _measure(exp, profile, teacher, processor, data, runs, teacher_record)
    result = validated(
        {
            **result_header(exp, profile),
            "teacher": teacher_record,
            "runs": runs,
            "paper": [r.model_dump() for r in exp.paper],
        }
    )
    _publish_result(out_dir, result, render_compression)
    return result


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
        models = [step_model(s["run_dir"], s["trace"][-1]["step"]) for s in first]
    m = profile.measurement.model_dump()
    new_tokens = max_answer_tokens(processor, data["test"]["answer"])
    named = {"teacher": teacher, **{f"model {i}": model for i, model in enumerate(models)}}
    speed = throughput(named, processor, data["test"], m["batch_sizes"], new_tokens, m)
    for name, record in zip(named, [teacher_record, *records], strict=True):
        record["throughput"] = list(speed[name].values())
    vision = vision_side_latency({"teacher": teacher, "last": models[-1]}, processor, data["test"], m)
    teacher_record["vision_side_latency"], records[-1]["vision_side_latency"] = (
        vision["teacher"],
        vision["last"],
    )


def _public_model(entry, profile, data, teacher, teacher_processor, tdir, cache_dir, progress):
    """(model, processor, key) for one entry of public_lmms.yaml."""
    if entry.checkpoint == "teacher":
        return copy.deepcopy(teacher), teacher_processor, {"teacher": teacher_key(profile)}
    if entry.checkpoint == "compressed":
        full, seed = CompressionRun(label="All stages"), profile.seeds[0]
        sets = _training_sets(profile, full, teacher, teacher_processor, data, tdir, progress)
        _, run_dir = _compress(
            profile, full, seed, teacher, teacher_processor, data, sets, cache_dir, progress
        )
        return step_model(run_dir), teacher_processor, compression_key(profile, full, seed)
    model, processor = load_lmm(entry.checkpoint, entry.allow_download)
    config = (Path(entry.checkpoint) / "config.json").read_text() if Path(entry.checkpoint).is_dir() else ""
    return model, processor, {"checkpoint": str(entry.checkpoint), "config": content_hash(config)}


def run_public_lmms(
    exp: Experiment, profile: Profile, out_dir: Path, cache_dir: Path, progress: bool = True
) -> dict:
    """Public BLIP-2-family checkpoints beside ours: zero-shot accuracy, optionally after a short fine-tune
    on the training split and after Algorithm 1; size; and throughput, models interleaved."""
    _threads(profile)
    data = get_dataset(profile, cache_dir, progress)
    teacher, teacher_proc, tdir, _ = get_teacher(profile, cache_dir, data, progress)
    bs, rows, models = profile.evaluation_batch_size, [], {}
    for entry in exp.models:
        model, processor, key = _public_model(
            entry, profile, data, teacher, teacher_proc, tdir, cache_dir, progress
        )
        variants = [("zero-shot" if entry.checkpoint not in ("teacher", "compressed") else "as is", model)]
        if entry.fine_tune_epochs:
            tuned = copy.deepcopy(model)
            batches = teacher_batches(
                tuned, processor, data["train"], profile.compression.batch_size, progress
            )
            seed = profile.seeds[0]
            distill(
                tuned, batches, entry.fine_tune_epochs, entry.fine_tune_lr, "label_ce", 0.0, seed, progress
            )
            variants.append((f"fine-tuned {entry.fine_tune_epochs} ep", tuned))
        if entry.compress:
            base = variants[-1][1]
            c = {**profile.compression.model_dump(), **entry.compression}
            stages = entry.stages or (["block", "ffn"] if lm_family(base) == "opt" else list(STEP_KEYS))
            run = CompressionRun(label=entry.name, stages=stages)
            cfg = _run_config(c, run, profile.seeds[0], bs, base)
            run_key = {  # what determines the run: the model, its fine-tune, the run, the compression section
                "model": key,
                "fine_tune": entry.fine_tune_epochs,
                "lr": entry.fine_tune_lr,
                "run": run.key(),
                "compression": c,
                "maxima": cfg["maxima"],
                "seed": profile.seeds[0],
                "eval_batch_size": bs,
            }
            run_dir = Path(cache_dir) / "compression" / f"public-{content_hash(run_key)}"
            d_d = teacher_batches(base, processor, data["train"], c["batch_size"], progress)
            d_p = pruning_set(d_d, c["pruning_samples"], c["batch_size"])
            run_compression(base, processor, data["validation"], d_p, d_d, cfg, run_dir, progress)
            variants.append((f"compressed ({'→'.join(stages)})", step_model(run_dir)))
        for how, m in variants:
            acc = evaluate(m, processor, data["test"], bs)
            name = f"{entry.name} ({how})"
            rows.append(
                {
                    "row": name,
                    "parameters": parameter_counts(m),
                    "structure": structure(m),
                    "accuracy": {**acc["per_task"], "overall": acc["overall"]},
                }
            )
            models[name] = (m, processor)
    if exp.measure:
        m = profile.measurement.model_dump()
        new_tokens = max_answer_tokens(teacher_proc, data["test"]["answer"])
        speed = {}
        # one interleaved session per processor (the prompt tokens differ between tokenizers)
        for proc in {id(p): p for _, p in models.values()}.values():
            group = {n: mm for n, (mm, pp) in models.items() if pp is proc}
            speed.update(throughput(group, proc, data["test"], m["batch_sizes"], new_tokens, m))
        for row in rows:
            row["throughput"] = list(speed[row["row"]].values())
    result = validated({**result_header(exp, profile), "rows": rows})
    _publish_result(out_dir, result, render_public)
    return result


RUNNERS = {
    "original": run_original,
    "compression": run_compression_experiment,
    "public_lmms": run_public_lmms,
}
