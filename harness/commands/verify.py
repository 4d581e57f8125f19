"""`python -m harness verify`: every cache entry checked in full, each file's sha256 against its manifest and
every seal."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.config.files import SpecError
from harness.store import verify


def cmd_verify(args) -> int:
    """Check every cache entry in full: each file's sha256 against its manifest, every seal."""
    if not Path(args.cache_dir).is_dir():
        raise SpecError(f"--cache-dir: {args.cache_dir} is not a folder; nothing to verify")
    t0 = time.perf_counter()
    checked, problems = verify(args.cache_dir)
    for p in problems:
        print(f"corrupt: {p}", file=sys.stderr)
    print(
        f"{checked} cache entries checked in {time.perf_counter() - t0:.1f}s under {args.cache_dir}: "
        + (f"{len(problems)} corrupt (the next run that needs one rebuilds it)" if problems else "all intact")
    )
    return 1 if problems else 0
