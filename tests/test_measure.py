"""The throughput protocol: first call apart, warm-up, minimum iterations and minimum duration."""

import itertools

import torch

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
    cfg = {"warmup": 1, "min_iterations": 2, "min_duration_s": 0.0}
    out = throughput({"tiny": model}, proc, split, [1, 2], new_tokens=2, cfg=cfg, device=torch.device("cpu"))
    assert set(out["tiny"]) == {"batch_1", "batch_2"}
    assert out["tiny"]["batch_2"]["iterations"] >= 2 and out["tiny"]["batch_2"]["samples_per_s"] > 0
