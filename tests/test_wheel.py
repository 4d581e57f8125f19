"""An installed wheel works as a clone does: the experiments and profiles ship inside it, so
`python -m harness validate` checks every one from any working directory, and results and caches default to
that directory (harness/config/paths.py ROOT).

Why: a non-editable `pip install .` once carried no experiments; `ls` and `validate` then printed nothing and
exited 0, as if all were well."""

import os
import subprocess
import sys

import pytest

from harness.config.paths import EXPERIMENTS_DIR, ROOT
from tests.helpers import SUBPROCESS_TIMEOUT, harness_cli


@pytest.mark.slow
def test_an_installed_wheel_validates_every_experiment_from_elsewhere(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT)
    (wheel,) = wheels.glob("*.whl")
    install = [*pip, "install", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT)
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not this checkout

    where = harness_cli("ls", "--profile", "smoke", cwd=elsewhere, env=env)
    assert where.returncode == 0, where.stderr
    names = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    assert sorted(line.split()[0] for line in where.stdout.splitlines()) == names
    checked = harness_cli("validate", "--profile", "smoke", cwd=elsewhere, env=env)
    assert checked.returncode == 0, checked.stderr
    ok = [line for line in checked.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok) == len(names) and all(str(target / "harness" / "experiments") in line for line in ok)
    # the plan's checkpoint configs ship too
    assert (target / "harness" / "experiments" / "checkpoints" / "blip2-opt-2.7b" / "config.json").is_file()
    assert not (elsewhere / "results").exists()  # validating writes nothing
    # every module of the tree ships (a package missing from pyproject's list would lose its commands)
    shipped = {p.relative_to(target).as_posix() for p in (target / "harness").rglob("*.py")}
    tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("*.py")}
    assert tree - shipped == set()
    planned = harness_cli("plan", "--profile", "smoke", cwd=elsewhere, env=env)  # a command of commands/
    assert planned.returncode == 0 and "Peak:" in planned.stdout, planned.stderr
