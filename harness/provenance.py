"""What a result was made with: code version, libraries, machine and date, stored in every result file."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
import sys

from harness.config.paths import ROOT

# every library that can change a number of a result (a kernel, a default, a rounding) or a rendered table
LIBRARIES = (
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "accelerate",
    "torch-pruning",
    "bitsandbytes",
    "pillow",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "seaborn",
    "pydantic",
    "tabulate",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict:
    commit = _git("rev-parse", "HEAD")
    status = _git(
        "status", "--porcelain", "--untracked-files=no", "--", "harness", "experiments", "run_all.py"
    )
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    return out


def provenance() -> dict:
    return {
        "git": git_state(),
        "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
