"""scripts/gpu_check.sh, the GPU acceptance check: it refuses a machine without CUDA in one line, and its
whole flow (a random-weight BLIP-2 OPT checkpoint built from the config, compressed by one block and one FFN
step, timed, reloaded with the stock class) runs as a CPU rehearsal with a small model."""

import json
import subprocess
import sys

import pytest
import torch

from harness.config.paths import ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_the_check_refuses_a_machine_without_cuda(tmp_path):
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--out", str(tmp_path / "s.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2 and not (tmp_path / "s.json").exists()
    assert done.stderr.startswith("gpu_check: no CUDA device") and len(done.stderr.splitlines()) == 1


@pytest.mark.slow
def test_the_checks_flow_rehearsed_on_the_cpu(tmp_path):
    out = tmp_path / "summary.json"
    args = ["--cpu-rehearsal", "--work", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    run = summary["compression"]
    assert run["run_returncode"] == 0 and run["reloaded"]
    assert run["saved"] == {"folder": "step_002", "layers": 2, "ffn_dim": 48}  # 4 → 2 blocks, 64 → 48
    zero_shot, compressed = run["rows"]
    assert compressed["parameters_total"] < zero_shot["parameters_total"]
    assert compressed["throughput"]["batch_1"]["prefill_ms"] > 0
    assert set(run["phases_gib"]) == {"teacher outputs", "importance (Eq. 1)", "distillation", "evaluation"}
    assert summary["parallel_tests"] == "skipped: fewer than 2 GPUs"
