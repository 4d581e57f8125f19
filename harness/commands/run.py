"""`python -m harness run` and `ls`, and what run_all.py shares with them: running one experiment (or
restating its cached result) and publishing its folder whole.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from harness import parallel, registry
from harness.cache import atomic_dir, entry_lock, write_json
from harness.commands.folders import results_root, writable_dir, writable_results
from harness.config.experiment import Experiment
from harness.config.loading import experiment_files, load_experiment
from harness.preflight import checked
from harness.recipes.common import running
from harness.report.render import slug
from harness.results import dump_result, load_result, restated, seal_result, spec_hash
from harness.store import input_hashes, rebuild_entries, result_sample_logs, teacher_dir


def quiet_libraries() -> None:
    """--quiet also silences the progress bars of datasets (saving) and transformers (loading, saving)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def publish_result(out_dir: Path, result: dict, render, logs: dict[str, Path] | None = None) -> None:
    """The result folder (result.json, tables, figures, traces, sample logs) is built in a temporary folder
    and replaces the old one only once rendering has succeeded: a render that fails leaves the previous
    folder as it was, never a new result.json beside stale tables. `logs`: the per-sample logs to keep in
    `samples/` (harness/store.py result_sample_logs); None keeps the folder's own."""
    with entry_lock(Path(out_dir)):
        if not parallel.is_main():  # under accelerate launch the main process writes results
            return
        kept = Path(out_dir) / "samples"
        with atomic_dir(Path(out_dir)) as tmp:
            write_json(tmp / "result.json", result)
            seal_result(tmp / "result.json")
            render(tmp)
            if logs is None and kept.is_dir():
                shutil.copytree(kept, tmp / "samples")
            for name, path in (logs or {}).items():
                (tmp / "samples").mkdir(exist_ok=True)
                shutil.copyfile(path, tmp / "samples" / f"{slug(name)}.jsonl.gz")


def run_experiment(
    name: str,
    profile: str,
    results_dir: Path,
    cache_dir: Path,
    overwrite: bool,
    progress: bool = True,
    num_seeds: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> tuple[Path, str]:
    """Check one experiment against the profile (preflight.checked), then `run_checked`."""
    exp, prof = checked(name, profile, num_seeds, device, dtype)
    return run_checked(exp, prof, results_dir, cache_dir, overwrite, progress)


def run_checked(
    exp: Experiment, prof, results_dir: Path, cache_dir: Path, overwrite: bool, progress: bool = True
) -> tuple[Path, str]:
    """Run one checked experiment unless an up-to-date result exists: same spec hash (what determines the
    numbers, harness/results.py spec_hash) and at least the requested seeds. Returns (output folder, 'ran' |
    'cached'); a cached result takes on the experiment's current labels, paper rows and claims."""
    with running(prof):  # the placement first: under accelerate launch it picks the processes' backend
        return _run(exp, prof, Path(results_dir), Path(cache_dir), overwrite, progress)


def _run(
    exp: Experiment, prof, results_dir: Path, cache_dir: Path, overwrite: bool, progress: bool
) -> tuple[Path, str]:
    out = Path(results_dir) / exp.name
    existing = out / "result.json"
    if existing.is_file() and not overwrite:
        old = load_result(existing)  # sealed and consistent, or an error naming the file
        if old.spec_hash == spec_hash(exp, prof, input_hashes(prof)):
            if set(prof.seeds) <= set(old.seeds):
                restate(out, exp)
                return out, "cached"
            print(f"[{exp.name}] {existing} lacks seeds {sorted(set(prof.seeds) - set(old.seeds))}: running")
        else:
            print(f"[{exp.name}] spec changed since {existing} was written: running again", file=sys.stderr)
    result = registry.recipe(exp.kind)(exp, prof, Path(cache_dir), progress)  # a typed result model
    own_teacher = exp.kind == "original" or "teacher" in exp.overrides
    logs = result_sample_logs(result, prof, teacher_dir(prof, Path(cache_dir)), own_teacher)
    publish_result(out, dump_result(result), registry.renderer(exp.kind), logs)
    return out, "ran"


def restate(out: Path, exp: Experiment) -> None:
    """Rewrite a cached result's records with the experiment's current presentation (labels, paper rows,
    claims, wording: nothing that enters the spec hash) and re-render its folder; no number changes."""
    old = load_result(out / "result.json")
    new = dump_result(restated(old, exp))
    if new != dump_result(old):
        publish_result(out, new, registry.renderer(exp.kind))


def cmd_run(args) -> int:
    specs = [  # every spec, the files it names and the device checked before any folder is made
        checked(name, args.profile, args.num_seeds, args.device, args.dtype) for name in args.experiments
    ]
    names = [exp.name for exp, _ in specs]
    writable_dir(args.results_dir or results_root(args.profile), "--results-dir")
    writable_results(args.results_dir or results_root(args.profile), names)
    writable_dir(args.cache_dir, "--cache-dir")
    if args.quiet:
        quiet_libraries()
    if args.rebuild:
        rebuild_entries()
    for name, (exp, prof) in zip(args.experiments, specs, strict=True):
        t = time.perf_counter()
        root = args.results_dir or results_root(args.profile)
        out, how = run_checked(
            exp, prof, root, args.cache_dir, args.overwrite or args.rebuild, not args.quiet
        )
        print(f"[{name}] {how} in {time.perf_counter() - t:.1f}s -> {out}")
    return 0


def cmd_ls(args) -> int:
    root = args.results_dir or results_root(args.profile)
    for path in experiment_files():
        exp = load_experiment(path)
        state = "done" if (root / exp.name / "result.json").is_file() else "not run"
        print(f"{exp.name:24s} {exp.kind:12s} {state:8s} {exp.reproduces}")
    return 0
