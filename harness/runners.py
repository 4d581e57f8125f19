"""One plain function per experiment kind: set up, run, write the result file, render its table.

Why flat: a reader should see the whole recipe of an experiment in one screen, in the order it happens.
Results are rendered only from the result JSON (see `render`), so `report` can redo every table offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness.cache import content_hash, write_json
from harness.evaluate import evaluate, max_answer_tokens, oracle_ceiling
from harness.measure import checkpoint_bytes, device_info, throughput
from harness.models.blip2 import parameter_counts
from harness.provenance import provenance
from harness.report.tables import make_table
from harness.runs import dataset_key, get_dataset, get_teacher, teacher_key
from harness.spec import Experiment, Profile

TASK_COLUMNS = ("color", "manifestation", "content", "logo", "style")


def spec_record(exp: Experiment, profile: Profile) -> dict:
    resolved = {"experiment": exp.model_dump(mode="json"), "profile": profile.model_dump(mode="json")}
    return {**resolved, "spec_hash": content_hash(resolved)}


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
        **spec_record(exp, profile),
        "provenance": provenance(),
        "device": device_info(),
        "runs": {
            "dataset": content_hash(dataset_key(profile)),
            "teacher": content_hash(teacher_key(profile)),
        },
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


RUNNERS = {"original": run_original}
RENDERERS = {"original": render}
