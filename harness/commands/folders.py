"""Where results go and whether they can be written: checked before any work, shared by `run`, `report`
and run_all.py (torch-free, so `report` stays so)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.config.files import SpecError
from harness.config.loading import DEFAULT_PROFILE
from harness.config.paths import ROOT


def results_root(profile: str) -> Path:
    """The cpu profile writes the committed `results/`; other profiles write beside it, named by the
    profile's name (a profile given as a path: its file's stem)."""
    name = Path(str(profile)).stem if str(profile).endswith((".yaml", ".yml")) else str(profile)
    return ROOT / "results" if name == DEFAULT_PROFILE else ROOT / f"results-{name}"


def writable_dir(path: Path, option: str) -> Path:
    """`path` as a folder this process can write in (created if missing), or a SpecError naming the option:
    found before any work, not after an hour of compression when the result is written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpecError(f"{option}: {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise SpecError(f"{option}: cannot write in {path} ({e.strerror})") from None
    return path


def writable_results(root: Path, names: list[str]) -> None:
    """Each experiment's result folder under `root` can be replaced when its run ends (a folder this process
    may empty and rename): checked before any work, not found after the run."""
    for name in names:
        out = Path(root) / name
        if out.exists() and not out.is_dir():
            raise SpecError(f"--results-dir: {out} is a file where the result folder of {name} goes")
        if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
            raise SpecError(f"--results-dir: cannot write in {out}, the result folder of {name}")
