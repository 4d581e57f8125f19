"""The GPU acceptance check: everything the CPU cannot test, in one command, with one JSON summary.

1. `pytest -m cuda` (tests/test_cuda.py): Eq. 1, distillation in each precision, surgery and saving, timing.
2. A random-weight blip2-opt-2.7b built from experiments/checkpoints/blip2-opt-2.7b/config.json (float32,
   as the Hub's), with the SynthAd processor, compressed by the public_lmms recipe on the `gpu` profile
   (bfloat16, a handful of samples, one block step and one FFN step), the peak memory of each phase recorded
   beside `python -m harness plan`'s figure for it, prefill and decode timed, and the result reloaded with
   the stock Blip2ForConditionalGeneration.
3. With two or more GPUs: tests/test_parallel.py's two-process runs (DDP and FSDP) over NCCL.

Why a script and not a test: it needs a GPU and minutes, and what it reports (peaks against the plan,
timings) is a measurement to read, not a pass/fail. It refuses to run without CUDA. `--cpu-rehearsal` runs
the same flow on the CPU with a small model (tests/test_gpu_check.py), so the script itself stays tested.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIG = ROOT / "experiments" / "checkpoints" / "blip2-opt-2.7b"
# one step of each of two levels: 32 → 24 blocks, FFN 10240 → 7680 (the rehearsal's: 4 → 2, 64 → 48)
SCHEDULE = {"n_b": 8, "N_blocks": 8, "n_h_ffn": 2560, "N_ffn": 2560}
REHEARSAL_SCHEDULE = {"n_b": 2, "N_blocks": 2, "n_h_ffn": 16, "N_ffn": 16}
SMALL = {  # the rehearsal's model: blip2-opt-2.7b's config with every width and depth cut down
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
    "qformer_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "encoder_hidden_size": 32},
    "text_config": {"hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
                    "word_embed_proj_dim": 32},
    "num_query_tokens": 4,
}  # fmt: skip
SPEED = ("samples_per_s", "prefill_ms", "decode_ms_per_token", "peak_memory_mb")
PHASES = {  # the harness function each phase of `plan` runs in (patched below to record its peak)
    "teacher outputs": ("harness.recipes.public_lmms", "teacher_batches"),
    "importance (Eq. 1)": ("harness.pipeline", "importance"),
    "distillation": ("harness.pipeline", "distill"),
    "evaluation": ("harness.pipeline", "evaluate"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON summary")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--cpu-rehearsal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_rehearsal:
        print(
            f"gpu_check: no CUDA device (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}, sees none); this script checks the GPU paths and runs only "
            "where there is one. On the CPU, `python -m pytest` tests everything else.",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    summary: dict = {"device": _device(args.cpu_rehearsal), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.cpu_rehearsal:
            summary["cuda_tests"] = _pytest(["-m", "cuda", "tests/test_cuda.py"])
        summary["compression"] = _compress(work, args.cpu_rehearsal)
        if torch.cuda.device_count() >= 2:
            summary["parallel_tests"] = _pytest(["-m", "slow", "tests/test_parallel.py"])
        else:
            summary["parallel_tests"] = "skipped: fewer than 2 GPUs"
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"gpu_check: summary in {args.out}")
    failed = [k for k in ("cuda_tests", "parallel_tests") if isinstance(summary.get(k), dict)]
    ok = all(summary[k]["returncode"] == 0 for k in failed) and summary["compression"]["reloaded"]
    return 0 if ok else 1


def _device(rehearsal: bool) -> dict:
    import torch

    if rehearsal:
        return {"name": "cpu (rehearsal)", "count": 0}
    return {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}


def _pytest(selection: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return {"returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-1:]}


def _random_checkpoint(folder: Path, rehearsal: bool, data) -> Path:
    """blip2-opt-2.7b's architecture with random weights and a processor fitted on SynthAd's training
    split (its tokenizer's special ids, the checkpoint's image size and query tokens), saved as a standard
    folder."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from harness.data.processor import build_processor, dataset_texts

    config = Blip2Config.from_pretrained(CONFIG)
    if rehearsal:
        for part, fields in SMALL.items():
            if isinstance(fields, dict):
                for k, v in fields.items():
                    setattr(getattr(config, part), k, v)
            else:
                setattr(config, part, fields)
    texts = list(dataset_texts(data["train"].select_columns(["question", "answer"])))
    processor = build_processor(texts, 300, config.vision_config.image_size, config.num_query_tokens)
    tok = processor.tokenizer
    config.image_token_index = tok.convert_tokens_to_ids("<image>")
    for name in ("bos", "eos", "pad"):
        setattr(config.text_config, f"{name}_token_id", getattr(tok, f"{name}_token_id"))
    with torch.device("cpu" if rehearsal else "cuda"):
        torch.manual_seed(0)
        model = Blip2ForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    return folder


def _compress(work: Path, rehearsal: bool) -> dict:
    """The public_lmms recipe on the random checkpoint, each phase's peak beside the plan's."""
    import importlib

    import torch
    import yaml
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from harness.cli import main as cli
    from harness.config.files import merge
    from harness.config.loading import load_profile
    from harness.plan import GiB, plan
    from harness.store import get_dataset

    schedule = REHEARSAL_SCHEDULE if rehearsal else SCHEDULE
    overrides = {
        "name": "gpu_check",
        "device": "cpu" if rehearsal else "cuda",
        "data": {"sizes": {"train": 32, "validation": 16, "test": 16}},
        "evaluation_batch_size": 8,
        "measurement": {"batch_sizes": [1, 4], "warmup": 1, "min_iterations": 3, "min_duration_s": 0.0},
        "compression": {"batch_size": 8, "micro_batch_size": 4, "pruning_samples": 8, "epochs": 1},
    }
    profile = merge(yaml.safe_load((ROOT / "experiments" / "profiles" / "gpu.yaml").read_text()), overrides)
    (work / "profiles").mkdir(exist_ok=True)
    profile_file = work / "profiles" / "gpu_check.yaml"
    profile_file.write_text(yaml.safe_dump(profile))
    prof = load_profile(profile_file)
    t0 = time.perf_counter()
    data = get_dataset(prof, work / "cache", progress=False)
    folder = _random_checkpoint(work / "blip2-opt-2.7b-random", rehearsal, data)
    built = time.perf_counter() - t0
    entry = {"name": "blip2-opt-2.7b (random)", "checkpoint": str(folder), "compress": True}
    entry["compression"] = schedule
    experiment = {
        "name": "gpu_check",
        "reproduces": "nothing (the GPU acceptance check, scripts/gpu_check.py)",
        "kind": "public_lmms",
        "description": "A random-weight blip2-opt-2.7b compressed by one block step and one FFN step.",
        "models": [entry],
    }
    (work / "gpu_check.yaml").write_text(yaml.safe_dump(experiment))
    with_schedule = prof.model_copy(update={"compression": prof.compression.model_copy(update=schedule)})
    planned = {p.name: p.total for p in plan(with_schedule, folder).phases}
    peaks: dict[str, float] = {}
    originals = []
    for phase, (module_name, attr) in PHASES.items():
        module = importlib.import_module(module_name)
        real = getattr(module, attr)
        originals.append((module, attr, real))
        setattr(module, attr, _recording(real, phase, peaks))
    t1 = time.perf_counter()
    try:
        code = cli(
            ["run", str(work / "gpu_check.yaml"), "--profile", str(profile_file),
             "--cache-dir", str(work / "cache"), "--results-dir", str(work / "results"), "--quiet"]
        )  # fmt: skip
    finally:
        for module, attr, real in originals:
            setattr(module, attr, real)
    ran = time.perf_counter() - t1
    out: dict = {"run_returncode": code, "build_and_save_s": round(built, 1), "run_s": round(ran, 1)}
    if code != 0:
        return {**out, "reloaded": False}
    result = json.loads((work / "results" / "gpu_check" / "result.json").read_text())
    out["rows"] = [
        {
            "row": r["row"],
            "parameters_total": r["parameters"]["total"],
            "structure": r["structure"],
            "accuracy": r["accuracy"]["overall"],
            "throughput": {
                f"batch_{t['batch_size']}": {k: t.get(k) for k in SPEED} for t in r.get("throughput") or []
            },
        }
        for r in result["rows"]
    ]
    out["phases_gib"] = {
        p: {"planned": round(v / GiB, 2), "measured": round(peaks[p] / GiB, 2) if p in peaks else None}
        for p, v in planned.items()
    }
    final = sorted((work / "cache" / "compression").glob("public-*/steps/step_*"))[-1]  # the last step
    text = Blip2ForConditionalGeneration.from_pretrained(final).config.text_config
    base = Blip2Config.from_pretrained(folder).text_config
    out["saved"] = {"folder": final.name, "layers": text.num_hidden_layers, "ffn_dim": text.ffn_dim}
    out["reloaded"] = (
        text.num_hidden_layers == base.num_hidden_layers - schedule["N_blocks"]
        and text.ffn_dim == base.ffn_dim - schedule["N_ffn"]
    )
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def _recording(fn, phase: str, peaks: dict):
    """`fn`, recording the peak CUDA memory allocated while it runs under `phase` (nothing on the CPU)."""
    import torch

    def wrapped(*args, **kwargs):
        if not torch.cuda.is_available():
            return fn(*args, **kwargs)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.cuda.synchronize()
            peaks[phase] = max(peaks.get(phase, 0.0), float(torch.cuda.max_memory_allocated()))

    return wrapped


if __name__ == "__main__":
    sys.exit(main())
