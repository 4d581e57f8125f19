"""Run every experiment of a profile and render everything.

Usage: `python run_all.py [--profile NAME] [--overwrite | --rebuild] [--device DEV] [--dtype DTYPE]`.

Shared runs (dataset, teacher, ...) are computed once and cached under .cache/; an experiment whose result
is up to date is skipped, so a rerun only re-renders.
"""

from __future__ import annotations

import argparse
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

from harness.cli import DEFAULT_CACHE, guarded, placement_arguments
from harness.commands.folders import results_root, writable_dir, writable_results
from harness.commands.report import publish
from harness.commands.run import quiet_libraries, run_checked
from harness.config.files import SpecError
from harness.config.loading import DEFAULT_PROFILE, experiment_files
from harness.preflight import checked, checked_profile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="smoke | cpu | paper, or a profile YAML path")
    p.add_argument("--overwrite", action="store_true", help="rerun experiments whose results exist")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="also recompute the cached teacher and compression runs (implies --overwrite)",
    )
    p.add_argument(
        "--results-dir", type=Path, default=None, help="default: results/ (cpu) or results-<profile>/"
    )
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument(
        "--num-seeds",
        type=int,
        default=None,
        help="seeds 0..N-1 for every experiment (default: the profile's)",
    )
    placement_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="PATTERN",
        help="experiment names to run (globs, e.g. 'rq*')",
    )
    args = p.parse_args(argv)
    try:  # validate everything before any work starts
        checked_profile(args.profile)
        if args.num_seeds is not None and args.num_seeds < 1:
            raise SpecError(f"--num-seeds: must be at least 1, got {args.num_seeds}")
        files = [f for f in experiment_files() if not args.only or any(fnmatch(f.stem, p) for p in args.only)]
        if not files:
            raise SpecError(f"--only {' '.join(args.only)}: matches no experiment in experiments/")
        specs = {f: checked(f, args.profile, args.num_seeds, args.device, args.dtype) for f in files}
        out_root = writable_dir(args.results_dir or results_root(args.profile), "--results-dir")
        writable_results(out_root, [f.stem for f in files])
        writable_dir(args.cache_dir, "--cache-dir")
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # the teacher's own experiment first (every other one starts from it), then the paper's RQs, then the rest
    order = sorted(specs, key=lambda f: (specs[f][0].kind != "original", not f.stem.startswith("rq"), f.name))
    return guarded(lambda: run_all(args, {f: specs[f] for f in order}, out_root), args.cache_dir)


def run_all(args: argparse.Namespace, specs: dict[Path, tuple], out_root: Path) -> int:
    """Every checked experiment of `specs` (file: (experiment, profile)) in order, then the claims report and
    the README's tables."""
    if args.quiet:
        quiet_libraries()
    if args.rebuild:
        from harness.store import rebuild_entries

        rebuild_entries()
    t0 = time.perf_counter()
    for i, (f, (exp, prof)) in enumerate(specs.items(), 1):
        t = time.perf_counter()
        print(f"[{i}/{len(specs)}] {f.stem} (profile {args.profile}) ...", flush=True)
        out, how = run_checked(
            exp, prof, out_root, args.cache_dir, args.overwrite or args.rebuild, not args.quiet
        )
        print(f"[{i}/{len(specs)}] {f.stem}: {how} in {time.perf_counter() - t:.1f}s -> {out}", flush=True)
    publish(out_root)
    print(f"done in {time.perf_counter() - t0:.1f}s; tables and result files under {out_root}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
