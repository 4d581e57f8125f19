"""Size and speed: parameter counts, checkpoint size, and throughput under a fixed protocol.

Protocol (after optimum-benchmark): inference mode; the first call timed apart (it pays for lazy
initialisation); warm-up calls; then a loop that stops only once both a minimum number of iterations and a
minimum duration are reached. On GPU, CUDA events and a synchronize; on CPU, `perf_counter`. Raw latencies
are kept. Several models are measured interleaved in one process, so that their ratio survives a noisy
machine. Every generation produces the same number of new tokens, so models that stop early at EOS do not
look faster than they are.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from harness import parallel
from harness.config.profile import Measurement
from harness.data.collate import pixel_values, prompt_batch, qformer_kwargs
from harness.device import Placement, current
from harness.models.blip2 import query_outputs


def _timed_call(fn: Callable[[], object], device: torch.device | None, clock: Callable[[], float]) -> float:
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    t0 = clock()
    fn()
    return clock() - t0


def measure_interleaved(
    fns: dict,
    warmup: int,
    min_iterations: int,
    min_duration_s: float,
    device: torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict]:
    """Time each callable in turn, round after round, until every one has both `min_iterations` timed
    calls and `min_duration_s` seconds of timed calls. Returns first-call time and raw latencies per name
    (and, on CUDA, the peak memory allocated during its calls)."""
    out = {
        name: {"first_call_s": _timed_call(fn, device, clock), "latencies_s": []} for name, fn in fns.items()
    }
    for _ in range(warmup):
        for fn in fns.values():
            _timed_call(fn, device, clock)
    cuda = device is not None and device.type == "cuda"
    while True:
        for name, fn in fns.items():
            out[name]["latencies_s"].append(_timed_call(fn, device, clock))
            if cuda:  # the most the allocator held during its timed calls: every measured model's weights too
                peak = torch.cuda.max_memory_allocated(device)
                out[name]["peak_memory_bytes"] = max(out[name].get("peak_memory_bytes", 0), peak)
        if all(
            len(r["latencies_s"]) >= min_iterations and sum(r["latencies_s"]) >= min_duration_s
            for r in out.values()
        ):
            break
    for r in out.values():
        r["warmup"] = warmup
        r["iterations"] = len(r["latencies_s"])
        r["measured_s"] = sum(r["latencies_s"])
    return out


def summarize(raw: dict, batch_size: int, prefill: dict | None = None, new_tokens: int = 1) -> dict:
    """Median samples/s, p50/p90 latency and spread, with units in the names. With the `prefill` calls'
    raw record (one generated token): their median latency, and the per-token decode latency, (end to end −
    prefill) / (new_tokens − 1), as optimum-benchmark reports them; peak device memory where CUDA
    measured it."""
    lat = sorted(raw["latencies_s"])
    median = statistics.median(lat)
    p90 = lat[min(len(lat) - 1, int(round(0.9 * (len(lat) - 1))))]
    stdev = statistics.stdev(lat) if len(lat) > 1 else 0.0
    out = {
        "batch_size": batch_size,
        "samples_per_s": batch_size / median,
        "latency_p50_ms": 1000 * median,
        "latency_p90_ms": 1000 * p90,
        "latency_stdev_pct": 100 * stdev / statistics.mean(lat),
        "first_call_ms": 1000 * raw["first_call_s"],
        "warmup": raw["warmup"],
        "iterations": raw["iterations"],
        "measured_s": raw["measured_s"],
        "latencies_ms": [round(1000 * x, 4) for x in raw["latencies_s"]],
    }
    if prefill is not None:
        first = statistics.median(prefill["latencies_s"])
        out["prefill_ms"] = 1000 * first
        out["decode_ms_per_token"] = 1000 * (median - first) / (new_tokens - 1) if new_tokens > 1 else None
        out["prefill_latencies_ms"] = [round(1000 * x, 4) for x in prefill["latencies_s"]]
    if "peak_memory_bytes" in raw:
        out["peak_memory_mb"] = raw["peak_memory_bytes"] / 2**20
    return out


def generation_call(model, processor, images, questions, new_tokens: int, device: torch.device):
    """A closure that answers one fixed batch end to end: preprocessed image → query tokens → `new_tokens`
    generated with the KV cache."""
    batch = prompt_batch(processor, questions)
    pixels = pixel_values(processor, images).to(device, model.dtype)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    qformer = {k: v.to(device) for k, v in qformer_kwargs(batch).items()}

    def call():
        with torch.inference_mode():
            model.generate(
                pixel_values=pixels,
                input_ids=ids,
                attention_mask=mask,
                **qformer,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
            )

    return call


def as_deployed(models: dict, placement: Placement | None = None) -> dict:
    """Each model as it would be served: on the placement's device with its weights in the placement's dtype
    (a copy, so that the caller's float32 weights stay as they are; the model itself in float32)."""
    p = placement or current()
    if p.dtype == torch.float32:
        return {n: m.to(p.device) for n, m in models.items()}
    return {n: copy.deepcopy(m).to(p.device, p.dtype) for n, m in models.items()}


def throughput(
    models: dict,
    processor,
    split,
    batch_sizes: list[int],
    new_tokens: int | dict[str, int],
    cfg: Measurement,
    device: torch.device | None = None,
) -> dict[str, dict[str, dict]]:
    """Samples/s of each model at each batch size, every model interleaved in one session, each timed
    generating `new_tokens` (end to end) and generating one token (prefill), in turn. `processor` and
    `new_tokens` may be dicts by model name: models with different tokenizers then share the session, each
    with its own prompt tokens and answer length. `cfg` is the profile's measurement. The models run as
    deployed (`as_deployed`) on `device` (default: the current placement's)."""
    device = device or current().device
    models = as_deployed(models, Placement(device, current().dtype))
    procs = processor if isinstance(processor, dict) else dict.fromkeys(models, processor)
    tokens = new_tokens if isinstance(new_tokens, dict) else dict.fromkeys(models, new_tokens)
    results: dict[str, dict[str, dict]] = {name: {} for name in models}
    for bs in batch_sizes:
        images, questions = split["image"][:bs], split["question"][:bs]
        if len(questions) < bs:
            raise ValueError(
                f"measurement.batch_sizes: batch {bs} is larger than the split ({len(questions)})"
            )
        fns = {}
        for n, m in models.items():
            fns[n] = generation_call(m.eval(), procs[n], images, questions, tokens[n], device)
            fns[(n, "prefill")] = generation_call(m, procs[n], images, questions, 1, device)
        raw = measure_interleaved(fns, cfg.warmup, cfg.min_iterations, cfg.min_duration_s, device)
        for n in models:
            results[n][f"batch_{bs}"] = summarize(raw[n], bs, raw[(n, "prefill")], tokens[n])
    return results


def vision_side_latency(
    models: dict, processor, split, cfg: Measurement, device: torch.device | None = None
) -> dict:
    """Batch-1 latency of the vision tower + Q-Former alone (the part the language-model stages never
    prune), models interleaved: it bounds the end-to-end batch-1 speed-up any LM pruning can give."""
    device = device or current().device
    models = as_deployed(models, Placement(device, current().dtype))
    pixels = pixel_values(processor, split["image"][:1]).to(device, current().dtype)
    qformer = {
        k: v.to(device) for k, v in qformer_kwargs(prompt_batch(processor, split["question"][:1])).items()
    }

    def call(model):
        def run():
            with torch.inference_mode():
                query_outputs(model, pixels, **qformer)

        return run

    raw = measure_interleaved(
        {n: call(m.eval()) for n, m in models.items()},
        cfg.warmup,
        cfg.min_iterations,
        cfg.min_duration_s,
        device,
    )
    return {n: summarize(raw[n], 1) for n in models}


def checkpoint_bytes(folder: Path) -> int:
    """Size on disk of the weights of a `save_pretrained` folder."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(placement: Placement | None = None) -> dict:
    """The machine and the placement (harness/device.py) a result was computed with."""
    placement = placement or current()
    device = placement.device
    info = {
        "device": device.type,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(placement.dtype).removeprefix("torch."),
        "platform": platform.platform(),
        # the vector ISA torch dispatches CPU kernels to (e.g. AVX2, AVX512): training on another one can
        # round differently, so the same seed need not give the same teacher on another machine
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if parallel.world() > 1:  # data-parallel under accelerate launch (harness/parallel.py)
        info["processes"] = parallel.world()
        info["parallel"] = "fsdp" if parallel.sharding() else "ddp"
    info["name"] = info.get("gpu") or f"{info['cpu']} ({info['torch_threads']} threads)"
    return info
