"""The throughput protocol: first call apart, warm-up, minimum iterations and minimum duration."""

import itertools

import torch

from harness.config.profile import Measurement
from harness.measure import measure_interleaved, summarize, throughput
from tests.helpers import tiny


class FakeClock:
    """Each timed call lasts `step` seconds of fake time."""

    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step / 2
        return self.t


def _counter():
    calls = itertools.count()
    return calls, (lambda: next(calls))


def test_minimum_iterations_bind_when_calls_are_slow():
    calls, fn = _counter()
    raw = measure_interleaved({"m": fn}, warmup=2, min_iterations=7, min_duration_s=1.0, clock=FakeClock(1.0))
    assert raw["m"]["iterations"] == 7 and len(raw["m"]["latencies_s"]) == 7
    assert next(calls) == 1 + 2 + 7  # first call, warm-up, timed


def test_minimum_duration_binds_when_calls_are_fast():
    calls, fn = _counter()
    raw = measure_interleaved({"m": fn}, warmup=0, min_iterations=3, min_duration_s=5.0, clock=FakeClock(0.1))
    assert raw["m"]["iterations"] >= 50 and raw["m"]["measured_s"] >= 5.0 - 1e-9
    assert next(calls) == 1 + raw["m"]["iterations"]


def test_interleaved_models_run_in_rounds_until_both_are_satisfied():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    raw = measure_interleaved(fns, warmup=1, min_iterations=4, min_duration_s=0.0, clock=FakeClock(0.01))
    assert raw["a"]["iterations"] == raw["b"]["iterations"] == 4
    assert order == ["a", "b"] * (1 + 1 + 4)


def test_summary_reports_median_samples_per_second():
    raw = {
        "first_call_s": 1.0,
        "latencies_s": [0.1, 0.2, 0.2, 0.4],
        "warmup": 1,
        "iterations": 4,
        "measured_s": 0.9,
    }
    s = summarize(raw, batch_size=4)
    assert s["samples_per_s"] == 4 / 0.2 and s["latency_p50_ms"] == 200.0
    assert s["first_call_ms"] == 1000.0 and len(s["latencies_ms"]) == 4


def test_throughput_on_a_tiny_model():
    model, proc = tiny()
    from PIL import Image

    split = {"image": [Image.new("RGB", (32, 32))] * 2, "question": ["What is the background color?"] * 2}
    cfg = Measurement(warmup=1, min_iterations=2, min_duration_s=0.0)
    out = throughput({"tiny": model}, proc, split, [1, 2], new_tokens=2, cfg=cfg, device=torch.device("cpu"))
    assert set(out["tiny"]) == {"batch_1", "batch_2"}
    assert out["tiny"]["batch_2"]["iterations"] >= 2 and out["tiny"]["batch_2"]["samples_per_s"] > 0
    assert (
        out["tiny"]["batch_2"]["prefill_ms"] > 0 and len(out["tiny"]["batch_2"]["prefill_latencies_ms"]) >= 2
    )


def test_prefill_and_per_token_decode_latency_as_optimum_benchmark_reports_them():
    raw = {"first_call_s": 1.0, "latencies_s": [0.5] * 3, "warmup": 0, "iterations": 3, "measured_s": 1.5}
    prefill = {**raw, "latencies_s": [0.1, 0.1, 0.3]}
    s = summarize(raw, 1, prefill, new_tokens=5)
    assert s["prefill_ms"] == 100.0 and abs(s["decode_ms_per_token"] - 100.0) < 1e-9
    assert summarize(raw, 1, prefill, new_tokens=1)["decode_ms_per_token"] is None
    assert "peak_memory_mb" not in s  # measured on CUDA only


def test_models_with_different_tokenizers_share_one_interleaved_session(monkeypatch):
    import copy

    from PIL import Image

    import harness.measure as measure
    from harness.data.collate import BLIP2_PROMPT

    a, proc_a = tiny(seed=0)
    b, _ = tiny(seed=1)
    proc_b = copy.deepcopy(proc_a)
    proc_b.prompt_template = BLIP2_PROMPT  # other prompt tokens, as another tokenizer's would be
    calls, real = [], measure.generation_call

    def recording(model, processor, images, questions, new_tokens, device):
        calls.append((model, processor, new_tokens))
        return real(model, processor, images, questions, new_tokens, device)

    monkeypatch.setattr(measure, "generation_call", recording)
    sessions, real_session = [], measure.measure_interleaved
    monkeypatch.setattr(
        measure,
        "measure_interleaved",
        lambda fns, *a, **k: sessions.append(list(fns)) or real_session(fns, *a, **k),
    )
    split = {"image": [Image.new("RGB", (32, 32))], "question": ["What is the background color?"]}
    cfg = Measurement(warmup=0, min_iterations=2, min_duration_s=0.0)
    out = measure.throughput(
        {"a": a, "b": b}, {"a": proc_a, "b": proc_b}, split, [1], {"a": 3, "b": 2}, cfg, torch.device("cpu")
    )
    assert sessions == [["a", ("a", "prefill"), "b", ("b", "prefill")]]
    assert [(m is a, p is proc_a, n) for m, p, n in calls] == [
        (True, True, 3),
        (True, True, 1),
        (False, False, 2),
        (False, False, 1),
    ]
    assert out["a"]["batch_1"]["prefill_ms"] > 0 and out["b"]["batch_1"]["decode_ms_per_token"] is not None
