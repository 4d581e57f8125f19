"""Caches that cannot lie: a corrupt entry is reported with its path and rebuilt, never used; --rebuild
recomputes what an experiment uses; two processes compute a shared run once; `verify` finds every fault."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cache import content_hash, write_sealed_json
from harness.config.paths import ROOT
from harness.store import verify
from tests.helpers import SUBPROCESS_TIMEOUT, harness_cli

pytestmark = pytest.mark.slow  # whole smoke runs and subprocesses: not in the fast subset


def _run(cache: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["rq1_stagewise", "--profile", "smoke", "--quiet", "--cache-dir", str(cache)]
    return harness_cli("run", *args, "--results-dir", str(results), *extra)


def _outcome(results: Path) -> dict:
    """What a run must reproduce: the trace, the accuracies, sizes and stage ends (wall times and throughput
    aside: they are measured anew)."""
    res = json.loads((results / "rq1_stagewise" / "result.json").read_text())
    seed = res["runs"][0]["seeds"][0]
    timed = {"seconds", "throughput", "vision_side_latency"}
    untimed = lambda record: {k: v for k, v in record.items() if k not in timed}  # noqa: E731
    return {
        "trace": [untimed(row) for row in seed["trace"]],
        "accuracy": seed["accuracy"],
        "stage_ends": [untimed(end) for end in seed["stage_ends"]],
        "teacher": untimed(res["teacher"]),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    done = _run(root / "cache", root / "res")
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def _copy(reference: Path, tmp_path: Path, runs: bool = True) -> Path:
    ignore = None if runs else shutil.ignore_patterns("compression")
    shutil.copytree(reference / "cache", tmp_path / "cache", ignore=ignore)
    return tmp_path / "cache"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _one(cache: Path, pattern: str) -> Path:
    (found,) = sorted(cache.glob(pattern))[-1:]
    return found


CORRUPTIONS = {
    "teacher weights truncated": (
        lambda c: _truncate(_one(c, "teachers/*/model.safetensors")),
        "model.safetensors",
    ),
    "step model with flipped bytes": (
        lambda c: _flip(_one(c, "compression/run-*/steps/step_002/model.safetensors")),
        "step_002/model.safetensors",
    ),
    "state.json rewound to an earlier step": (
        lambda c: _edit_json(_one(c, "compression/run-*/state.json"), lambda s: s.update(step=2)),
        "state.json",
    ),
    "evaluation cache forged": (
        lambda c: _edit_json(
            _one(c, "compression/run-*/eval/test_step_*.json"), lambda r: r["accuracy"].update(overall=0.99)
        ),
        "test_step_",
    ),
    "step folder missing": (
        lambda c: shutil.rmtree(_one(c, "compression/run-*/steps/step_001")),
        "step_001",
    ),
    "stray file in a step model": (
        lambda c: (_one(c, "compression/run-*/steps/step_001") / "extra.bin").write_bytes(b"x"),
        "extra.bin",
    ),
    "dataset file truncated": (
        lambda c: _truncate(_one(c, "datasets/*/train/data-*.arrow")),
        "data-00000-of-00001.arrow",
    ),
    "manifest unreadable": (
        lambda c: _one(c, "teachers/*/manifest.json").write_text("{not json"),
        "manifest.json",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_verify_names_every_kind_of_corruption(reference, tmp_path, name):
    corrupt, where = CORRUPTIONS[name]
    cache = _copy(reference, tmp_path)
    assert verify(cache)[1] == []
    corrupt(cache)
    checked, problems = verify(cache)
    assert len(problems) == 1 and where in problems[0], problems


# corruptions of distinct entries, so that one rerun shows each reported and rebuilt
REBUILT_TOGETHER = [
    ["teacher weights truncated", "dataset file truncated", "evaluation cache forged"],
    ["step model with flipped bytes"],
    ["state.json rewound to an earlier step"],
    ["step folder missing"],
]


@pytest.mark.parametrize("names", REBUILT_TOGETHER, ids=" + ".join)
def test_a_corrupt_entry_is_reported_with_its_path_and_rebuilt(reference, tmp_path, names):
    cache = _copy(reference, tmp_path)
    for name in names:
        CORRUPTIONS[name][0](cache)
    done = _run(cache, tmp_path / "res")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("corrupt cache entry, rebuilding it") == len(names), done.stderr[-2000:]
    assert all(CORRUPTIONS[name][1] in done.stderr for name in names), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert _outcome(tmp_path / "res") == _outcome(reference / "res")
    assert verify(cache)[1] == []


def test_verify_command_exits_1_naming_the_file(reference, tmp_path):
    cache = _copy(reference, tmp_path)
    assert harness_cli("verify", "--cache-dir", str(cache)).returncode == 0
    CORRUPTIONS["step model with flipped bytes"][0](cache)
    found = harness_cli("verify", "--cache-dir", str(cache))
    assert found.returncode == 1 and "step_002/model.safetensors" in found.stderr, found.stderr
    assert "1 corrupt" in found.stdout


def test_an_evaluation_of_another_model_is_not_reused(reference, tmp_path):
    """A sealed evaluation record made of another model (its manifest hash differs) is evaluated again, not
    copied into the result."""
    cache = _copy(reference, tmp_path)
    path = _one(cache, "compression/run-*/eval/test_step_*.json")
    record = json.loads(path.read_text())
    forged = {**record["accuracy"], "overall": 0.99}
    write_sealed_json(path, {"model": content_hash("another model"), "accuracy": forged})
    assert _run(cache, tmp_path / "res").returncode == 0
    assert _outcome(tmp_path / "res") == _outcome(reference / "res")
    assert json.loads(path.read_text())["accuracy"] == record["accuracy"]


def test_rebuild_recomputes_the_teacher_and_the_runs(reference, tmp_path):
    cache = _copy(reference, tmp_path)
    run = _one(cache, "compression/run-*")
    done = _run(cache, tmp_path / "res", "--rebuild")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("--rebuild: recomputing") == 2, done.stderr  # the teacher and the one run
    assert str(run) in done.stderr
    assert _outcome(tmp_path / "res") == _outcome(reference / "res")


def test_two_processes_on_one_cache_compute_a_run_once(reference, tmp_path):
    """Both start together on a cache holding only the teacher: one computes the run while the other waits
    on the run's lock, then reads it. Identical wall times in both traces show it was computed once."""
    cache = _copy(reference, tmp_path, runs=False)
    args = ["rq1_stagewise", "--profile", "smoke", "--quiet", "--cache-dir", str(cache)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness", "run", *args, "--results-dir", str(tmp_path / name)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for p in procs:
        assert p.wait(timeout=SUBPROCESS_TIMEOUT) == 0, p.stderr.read()[-2000:]
    traces = [
        json.loads((tmp_path / name / "rq1_stagewise" / "result.json").read_text())["runs"][0]["seeds"][0][
            "trace"
        ]
        for name in ("a", "b")
    ]
    assert traces[0] == traces[1]  # 'seconds' included: one computation, read twice
    assert len(list((cache / "compression").glob("run-*"))) == 1
    assert _outcome(tmp_path / "a") == _outcome(reference / "res")


def test_teacher_outputs_are_built_once_and_kept_for_one_teacher_at_a_time(monkeypatch):
    """Every run of a teacher reuses its D_d / D_p outputs; a second teacher's drop the first's (memory)."""
    from harness import store

    monkeypatch.setattr(store, "_TEACHER_OUTPUTS", {})
    built = []

    def build(name):
        return lambda: built.append(name) or [name]

    assert store.teacher_outputs(("t0", "d_d"), build("t0 d_d")) == ["t0 d_d"]
    assert store.teacher_outputs(("t0", "d_p"), build("t0 d_p")) == ["t0 d_p"]
    assert store.teacher_outputs(("t0", "d_d"), build("again")) == ["t0 d_d"]  # reused, not rebuilt
    store.teacher_outputs(("t1", "d_d"), build("t1 d_d"))
    assert set(store._TEACHER_OUTPUTS) == {("t1", "d_d")}
    assert built == ["t0 d_d", "t0 d_p", "t1 d_d"]
