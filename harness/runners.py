"""One plain function per experiment kind: set up, run, write the result file, render its table.

Why flat: a reader should see the whole recipe of an experiment in one screen, in the order it happens.
Results are rendered only from the result JSON (see `render`), so `report` can redo every table offline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from harness.cache import content_hash, write_json
from harness.distill.loop import teacher_batches
from harness.evaluate import evaluate, max_answer_tokens, oracle_ceiling
from harness.measure import checkpoint_bytes, device_info, throughput, vision_side_latency
from harness.models.blip2 import parameter_counts
from harness.pipeline import final_model, run_compression, structure, write_trace_csv
from harness.provenance import provenance
from harness.report.figures import trace_figures
from harness.report.tables import make_table
from harness.runs import dataset_key, get_dataset, get_teacher, teacher_key
from harness.spec import Experiment, Profile

TASK_COLUMNS = ("color", "manifestation", "content", "logo", "style")


def spec_record(exp: Experiment, profile: Profile) -> dict:
    resolved = {"experiment": exp.model_dump(mode="json"), "profile": profile.model_dump(mode="json")}
    return {**resolved, "spec_hash": content_hash(resolved)}


def result_header(exp: Experiment, profile: Profile) -> dict:
    """What every result file starts with: the resolved spec and its hash, provenance, device, shared runs."""
    return {
        **spec_record(exp, profile),
        "provenance": provenance(),
        "device": device_info(),
        "runs": {
            "dataset": content_hash(dataset_key(profile)),
            "teacher": content_hash(teacher_key(profile)),
        },
    }


def run_original(
    exp: Experiment, profile: Profile, out_dir: Path, cache_dir: Path, progress: bool = True
) -> dict:
    """Table 2, row 'Original': the trained teacher's size, throughput and per-task accuracy."""
    if profile.measurement.num_threads:
        torch.set_num_threads(profile.measurement.num_threads)
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
    row = {
        "row": "Original (stand-in teacher)",
        "parameters": counts,
        "checkpoint_bytes": checkpoint_bytes(tdir),
        "accuracy": {**acc["per_task"], "overall": acc["overall"], "n_test": acc["n"]},
        "throughput": speed,
        "generated_tokens_per_sample": new_tokens,
    }
    rows = [row]
    if profile.data.source == "synth_ads":
        ceiling = oracle_ceiling(data["test"])
        rows.append(
            {
                "row": "Oracle ceiling (SynthAd labels)",
                "accuracy": {**ceiling["per_task"], "overall": ceiling["overall"]},
            }
        )
    result = {
        **result_header(exp, profile),
        "teacher_training": log,
        "rows": rows,
        "paper": [r.model_dump() for r in exp.paper],
    }
    write_json(out_dir / "result.json", result)
    render(out_dir)
    return result


def render(out_dir: Path) -> str:
    """Table 2 (ours beside the paper's) from `result.json` alone."""
    res = json.loads((Path(out_dir) / "result.json").read_text())
    headers = [
        "Model",
        "Params (M)",
        "LM share",
        "Samples/s (b=1)",
        "Samples/s (b=32)",
        "Speed-up",
        *[t.capitalize() for t in TASK_COLUMNS],
        "Overall",
    ]
    rows = []
    base = None
    for r in res["rows"]:
        speed, p = r.get("throughput", {}), r.get("parameters")
        b1 = speed.get("batch_1", {}).get("samples_per_s")
        b32 = speed.get("batch_32", {}).get("samples_per_s")
        base = base or b1
        rows.append(
            [
                f"{r['row']} — ours",
                p["total"] / 1e6 if p else None,
                p["language_model"] / p["total"] if p else None,
                b1,
                b32,
                f"{b1 / base:.2f}×" if b1 and base else None,
                *[r["accuracy"].get(t) for t in TASK_COLUMNS],
                r["accuracy"]["overall"],
            ]
        )
    paper_base = next((r["a10_samples_per_s"] for r in res["paper"] if r["a10_samples_per_s"]), None)
    for r in res["paper"]:
        rows.append(
            [
                f"{r['row']} — paper",
                r["size_b"] * 1e3 if r["size_b"] else None,
                None,
                r["a10_samples_per_s"],
                None,
                f"{r['a10_samples_per_s'] / paper_base:.2f}×"
                if paper_base and r["a10_samples_per_s"]
                else None,
                *[r.get(t) for t in TASK_COLUMNS],
                r["overall"],
            ]
        )
    dev = res["device"]["name"]
    caption = (
        f"Reproduces {res['experiment']['reproduces']}. Ours: profile '{res['profile']['name']}', "
        f"throughput on {dev} (median, end-to-end generation); paper: AntGMM on an A10 GPU. "
        "Compare speed-ups, not absolute samples/s."
    )
    return make_table(headers, rows, caption, out_dir)


def compression_key(profile: Profile, run: dict, seed: int) -> dict:
    return {
        "teacher": teacher_key(profile),
        "compression": profile.compression.model_dump(mode="json"),
        "run": run,
        "seed": seed,
        "eval_batch_size": profile.evaluation_batch_size,
    }


def run_compression_experiment(
    exp: Experiment, profile: Profile, out_dir: Path, cache_dir: Path, progress: bool = True
) -> dict:
    """Algorithm 1 (or a variant) from the cached teacher, once per seed; the trace, the final model's test
    accuracy, size, and throughput measured interleaved with the teacher's."""
    if profile.measurement.num_threads:
        torch.set_num_threads(profile.measurement.num_threads)
    data = get_dataset(profile, cache_dir, progress)
    teacher, processor, _, _ = get_teacher(profile, cache_dir, data, progress)
    run = exp.run.model_dump()
    d_d = teacher_batches(teacher, processor, data["train"], profile.compression.batch_size, progress)
    teacher_acc = evaluate(teacher, processor, data["test"], profile.evaluation_batch_size)
    c = profile.compression.model_dump()
    steps = {
        "block": c["N_blocks"] // c["n_b"],
        "ffn": c["N_ffn"] // c["n_h_ffn"],
        "attention": c["N_att"] // c["n_h_att"],
        "hidden": c["N_input"] // c["n_d"],
    }
    targets = {"block": c["N_blocks"], "ffn": c["N_ffn"], "attention": c["N_att"], "hidden": c["N_input"]}
    seeds = []
    for seed in profile.seeds:
        run_dir = Path(cache_dir) / "compression" / f"run-{content_hash(compression_key(profile, run, seed))}"
        cfg = {
            **run,
            "seed": seed,
            "compression": c,
            "eval_batch_size": profile.evaluation_batch_size,
            "targets": targets,
            "total_epochs": c["epochs"] * sum(steps[s] for s in run["stages"]),
        }
        t0 = time.perf_counter()
        state = run_compression(teacher, processor, data["validation"], d_d, d_d, cfg, run_dir, progress)
        seconds = time.perf_counter() - t0
        student = final_model(run_dir)
        acc = evaluate(student, processor, data["test"], profile.evaluation_batch_size)
        new_tokens = max_answer_tokens(processor, data["test"]["answer"])
        speed = throughput(
            {"teacher": teacher, "student": student},
            processor,
            data["test"],
            profile.measurement.batch_sizes,
            new_tokens,
            profile.measurement.model_dump(),
        )
        vision = vision_side_latency(
            {"teacher": teacher, "student": student},
            processor,
            data["test"],
            profile.measurement.model_dump(),
        )
        seeds.append(
            {
                "seed": seed,
                "run": content_hash(compression_key(profile, run, seed)),
                "compression_seconds": seconds,
                "structure": structure(student),
                "parameters": parameter_counts(student),
                "accuracy": {**acc["per_task"], "overall": acc["overall"]},
                "throughput": speed["student"],
                "teacher_throughput": speed["teacher"],
                "vision_side_latency": vision["student"],
                "trace": state["trace"],
                "epochs_used": state["epochs_used"],
                "p_teacher_validation": state["p_teacher"],
            }
        )
    result = {
        **result_header(exp, profile),
        "teacher": {
            "structure": structure(teacher),
            "parameters": parameter_counts(teacher),
            "accuracy": {**teacher_acc["per_task"], "overall": teacher_acc["overall"]},
        },
        "seeds": seeds,
        "paper": [r.model_dump() for r in exp.paper],
    }
    write_json(out_dir / "result.json", result)
    render_compression(out_dir)
    return result


def render_compression(out_dir: Path) -> str:
    """Teacher vs compressed model, one row per seed, from `result.json` alone."""
    res = json.loads((Path(out_dir) / "result.json").read_text())
    t = res["teacher"]
    headers = [
        "Model",
        "Params (M)",
        "LM params (M)",
        "LM ×fewer",
        "Samples/s (b=1)",
        "Speed-up (b=1)",
        "Speed-up (b=32)",
        *[x.capitalize() for x in TASK_COLUMNS],
        "Overall",
        "Δ overall",
    ]
    rows = []
    first = res["seeds"][0]
    rows.append(
        [
            "Teacher",
            t["parameters"]["total"] / 1e6,
            t["parameters"]["language_model"] / 1e6,
            "1.0×",
            first["teacher_throughput"]["batch_1"]["samples_per_s"],
            "1.00×",
            "1.00×",
            *[t["accuracy"].get(x) for x in TASK_COLUMNS],
            t["accuracy"]["overall"],
            None,
        ]
    )
    for s in res["seeds"]:
        sp = {
            b: s["throughput"][b]["samples_per_s"] / s["teacher_throughput"][b]["samples_per_s"]
            for b in s["throughput"]
        }
        rows.append(
            [
                f"Compressed (seed {s['seed']})",
                s["parameters"]["total"] / 1e6,
                s["parameters"]["language_model"] / 1e6,
                f"{t['parameters']['language_model'] / s['parameters']['language_model']:.1f}×",
                s["throughput"]["batch_1"]["samples_per_s"],
                f"{sp.get('batch_1', 0):.2f}×",
                f"{sp.get('batch_32', 0):.2f}×",
                *[s["accuracy"].get(x) for x in TASK_COLUMNS],
                s["accuracy"]["overall"],
                f"{s['accuracy']['overall'] - t['accuracy']['overall']:+.3f}",
            ]
        )
    for s in res["seeds"]:
        write_trace_csv(Path(out_dir) / f"trace_seed{s['seed']}.csv", s["trace"])
    if res["experiment"]["run"]["mode"] == "iterative":
        trace_figures(res, out_dir)
    run = res["experiment"]["run"]
    s0 = res["seeds"][0]
    fixed = s0.get("vision_side_latency", {}).get("latency_p50_ms")
    bound = (
        f" At batch 1 the unpruned vision tower + Q-Former take {fixed:.1f} ms of the compressed model's "
        f"{s0['throughput']['batch_1']['latency_p50_ms']:.1f} ms (seed {s0['seed']})."
        if fixed and "batch_1" in s0["throughput"]
        else ""
    )
    caption = (
        f"Reproduces {res['experiment']['reproduces']}: {run['mode']} {'→'.join(run['stages'])}, "
        f"criterion {run['criterion']}, loss {run['variant']}; profile '{res['profile']['name']}', "
        f"test split; throughput on {res['device']['name']}, teacher and student measured interleaved.{bound}"
    )
    return make_table(headers, rows, caption, out_dir)


RUNNERS = {"original": run_original, "compression": run_compression_experiment}
RENDERERS = {"original": render, "compression": render_compression}
