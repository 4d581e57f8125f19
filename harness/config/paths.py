"""Where experiments, profiles, results and caches live, for a clone and for an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # harness/
CHECKOUT = PACKAGE.parent
# in a clone (or an editable install) everything lives in the checkout; an installed wheel carries the
# experiments as harness/experiments and writes results and caches under the working directory
ROOT = CHECKOUT if (CHECKOUT / "experiments").is_dir() else Path.cwd()
EXPERIMENTS_DIR = CHECKOUT / "experiments" if (CHECKOUT / "experiments").is_dir() else PACKAGE / "experiments"
PROFILES_DIR = EXPERIMENTS_DIR / "profiles"
