"""Data parallelism under `accelerate launch` (harness/parallel.py): two CPU processes compress the smoke
teacher as one process does, with the same structure at every step, every distillation loss within 1e-3
(relative) and the accuracy within 0.05 (the summed gradients differ from one process's only in the order
of float additions; on this machine the losses agreed to 1e-7 and the accuracy exactly)."""

import json
import shutil
import subprocess
import sys

import pytest

from harness.spec import ROOT

EXPERIMENT = """name: parallel_check
reproduces: nothing (a test of accelerate launch)
kind: compression
description: The full multi-stage run on the smoke profile.
measure: false
runs:
  - {label: All stages}
"""


@pytest.mark.slow
def test_two_processes_compress_as_one_does(tmp_path):
    pytest.importorskip("accelerate")
    import yaml

    exp = tmp_path / "parallel_check.yaml"
    exp.write_text(EXPERIMENT)
    profile = yaml.safe_load((ROOT / "experiments" / "profiles" / "smoke.yaml").read_text())
    profile["compression"]["micro_batch_size"] = 8  # 4 micro-batches per optimizer step: 2 per process
    prof = tmp_path / "smoke_micro.yaml"
    prof.write_text(yaml.safe_dump(profile))
    args = ["-m", "harness", "run", str(exp), "--profile", str(prof), "--quiet"]

    def run(launcher: list[str], name: str, cache) -> dict:
        done = subprocess.run(
            [*launcher, *args, "--cache-dir", str(cache), "--results-dir", str(tmp_path / name)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads((tmp_path / name / "parallel_check" / "result.json").read_text())

    one = run([sys.executable], "one", tmp_path / "cache")
    # the second cache has the dataset and the teacher, not the run: the two processes compute it
    shutil.copytree(tmp_path / "cache", tmp_path / "cache2", ignore=shutil.ignore_patterns("compression"))
    # accelerate's torchrun launcher (--multi_gpu) starts the two processes; on this GPU-less machine they
    # run on the CPU and talk over gloo (accelerate's --cpu launcher needs MPI for more than one process)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    accelerate += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two = run(accelerate, "two", tmp_path / "cache2")

    assert two["device"]["processes"] == 2 and "processes" not in one["device"]
    (a,), (b,) = one["runs"][0]["seeds"], two["runs"][0]["seeds"]
    shape = ("step", "stage", "amount", "params_total", "params_lm")
    assert [[r[k] for k in shape] for r in a["trace"]] == [[r[k] for k in shape] for r in b["trace"]]
    for ra, rb in zip(a["trace"], b["trace"], strict=True):
        assert rb["acc_distilled"] == pytest.approx(ra["acc_distilled"], abs=0.05)
        assert rb["loss_last_epoch"] == pytest.approx(ra["loss_last_epoch"], rel=1e-3)
    assert b["accuracy"]["overall"] == pytest.approx(a["accuracy"]["overall"], abs=0.05)


def test_work_of_several_processes_has_its_own_cache_key(monkeypatch, tmp_path):
    """Runs and curves summed over N > 1 processes are not served to one process (or another N)."""
    from harness import parallel
    from harness.spec import CompressionRun, load_profile
    from harness.store import compression_key, curve_path, run_dir

    prof, run = load_profile("smoke"), CompressionRun(label="x")
    one = run_dir(prof, run, 0, tmp_path), curve_path(prof, "ffn", "l1", 0, tmp_path)
    assert "processes" not in compression_key(prof, run, 0)  # keys as before data parallelism
    monkeypatch.setattr(parallel, "world", lambda: 2)
    two = run_dir(prof, run, 0, tmp_path), curve_path(prof, "ffn", "l1", 0, tmp_path)
    assert one[0] != two[0] and one[1] != two[1]
