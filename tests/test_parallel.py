"""Several processes under `accelerate launch` (harness/parallel.py): two CPU processes over gloo compress
the smoke teacher as one process does, on accelerate's DDP and on torch's FSDP, with the same structure at
every step, every distillation loss within 1e-3 (relative) and the accuracy within 0.05 (the gradients
differ from one process's only in the order of float additions; on this machine the losses agreed to 1e-7
and the accuracy exactly, with both engines)."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from harness.config.paths import ROOT

EXPERIMENT = """name: parallel_check
reproduces: nothing (a test of accelerate launch)
kind: compression
description: The full multi-stage run on the smoke profile.
measure: false
runs:
  - {label: All stages}
"""


ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
ACCELERATE += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.mark.slow
def test_two_processes_compress_as_one_does_under_each_engine(tmp_path):
    pytest.importorskip("accelerate")
    import yaml

    exp = tmp_path / "parallel_check.yaml"
    exp.write_text(EXPERIMENT)
    profile = yaml.safe_load((ROOT / "experiments" / "profiles" / "smoke.yaml").read_text())
    profile["compression"]["micro_batch_size"] = 8  # 4 micro-batches per optimizer step: 2 per process
    # NCCL, one GPU per process, where there are two (scripts/gpu_check.sh); gloo on the CPU elsewhere
    profile["device"] = "auto" if torch.cuda.device_count() >= 2 else "cpu"

    def run(launcher: list[str], engine: str, name: str, cache) -> dict:
        profile["compression"]["parallel"] = engine  # no effect in one process
        prof = tmp_path / "profiles" / "smoke_micro.yaml"
        prof.parent.mkdir(exist_ok=True)
        prof.write_text(yaml.safe_dump(profile))
        args = ["-m", "harness", "run", str(exp), "--profile", str(prof), "--quiet"]
        done = subprocess.run(
            [*launcher, *args, "--cache-dir", str(cache), "--results-dir", str(tmp_path / name)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads((tmp_path / name / "parallel_check" / "result.json").read_text())

    one = run([sys.executable], "ddp", "one", tmp_path / "cache")
    (a,) = one["runs"][0]["seeds"]
    assert "processes" not in one["device"]
    shape = ("step", "stage", "amount", "params_total", "params_lm")
    for engine in ("ddp", "fsdp"):
        # this cache has the dataset and the teacher, not the run: the two processes compute it
        cache = tmp_path / f"cache-{engine}"
        shutil.copytree(tmp_path / "cache", cache, ignore=shutil.ignore_patterns("compression"))
        # accelerate's torchrun launcher (--multi_gpu) starts the two processes; on a GPU-less machine they
        # run on the CPU and talk over gloo (accelerate's --cpu launcher needs MPI for more than one process)
        two = run(ACCELERATE, engine, engine, cache)
        assert two["device"]["processes"] == 2 and two["device"]["parallel"] == engine
        (b,) = two["runs"][0]["seeds"]
        assert [[r[k] for k in shape] for r in a["trace"]] == [[r[k] for k in shape] for r in b["trace"]]
        for ra, rb in zip(a["trace"], b["trace"], strict=True):
            assert rb["acc_distilled"] == pytest.approx(ra["acc_distilled"], abs=0.05)
            assert rb["loss_last_epoch"] == pytest.approx(ra["loss_last_epoch"], rel=1e-3)
        assert b["accuracy"]["overall"] == pytest.approx(a["accuracy"]["overall"], abs=0.05)


def test_fsdp_shards_what_plan_says_and_restores_the_whole_model(tmp_path):
    """Two CPU processes: `parallel.sharded` leaves each process half the trained weights (plan's `shards`
    per device, within the rows torch.chunk rounds), frees the whole ones meanwhile, and gives back
    bit-identical weights in the same parameter objects; a forward-only pass run as `sharded_call` runs it
    leaves every block sharded again."""
    pytest.importorskip("accelerate")
    from harness.config.loading import load_profile
    from harness.plan import plan
    from tests.helpers import tiny

    probe = [*ACCELERATE, "-m", "tests.shard_probe", str(tmp_path)]
    done = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["restored"] and r["freed"] and r["same_objects"] for r in ranks)
    assert all(r["blocks_resharded"] for r in ranks)  # a forward-only pass leaves no block gathered
    assert sum(r["shard_bytes"] for r in ranks) == 4 * ranks[0]["trained"]  # float32, each weight once
    model, _ = tiny()
    model.save_pretrained(tmp_path / "tiny")
    planned = {
        p.name: p for p in plan(load_profile("smoke"), tmp_path / "tiny", gpus=2, parallel="fsdp").phases
    }
    for r in ranks:
        assert r["shard_bytes"] == pytest.approx(planned["distillation"].parts["shards"], rel=0.05)


def test_work_of_several_processes_has_its_own_cache_key(monkeypatch, tmp_path):
    """Runs and curves summed over N > 1 processes are not served to one process (or another N)."""
    from harness import parallel
    from harness.config.experiment import CompressionRun
    from harness.config.loading import load_profile
    from harness.store import compression_key, curve_path, run_dir

    prof, run = load_profile("smoke"), CompressionRun(label="x")
    one = run_dir(prof, run, 0, tmp_path), curve_path(prof, "ffn", "l1", 0, tmp_path)
    assert "processes" not in compression_key(prof, run, 0)  # keys as before data parallelism
    monkeypatch.setattr(parallel, "world", lambda: 2)
    two = run_dir(prof, run, 0, tmp_path), curve_path(prof, "ffn", "l1", 0, tmp_path)
    assert one[0] != two[0] and one[1] != two[1]


@pytest.mark.parametrize("family", ["llama", "opt", "t5"])
def test_fsdp_units_are_the_language_models_blocks(tmp_path, family):
    """fully_shard goes on every block harness/prune/structures.py knows (a T5's encoder and decoder blocks,
    not their sub-layers), found without importing it (harness/parallel.py stays below prune/)."""
    from harness.models.blip2 import lm_blocks
    from harness.models.public import load_model
    from harness.parallel import _blocks
    from tests.helpers import tiny
    from tests.test_public import blip2_opt, blip2_t5

    model, proc = tiny()
    if family != "llama":
        model = load_model((blip2_opt if family == "opt" else blip2_t5)(proc, tmp_path / family))
    assert [id(b) for b in _blocks(model.language_model)] == [id(b) for b in lm_blocks(model)]
    assert _blocks(model.language_projection) == []
