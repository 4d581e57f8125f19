"""`python -m harness run | ls | validate | report`.

Why a CLI beside run_all.py: researchers rerun one experiment, check a YAML edit before a long run, or
re-render tables after a change of style, without touching anything else.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, get_args

from harness import parallel
from harness.cache import CorruptEntry, atomic_dir, entry_lock, write_json
from harness.errors import CheckpointError, PruningError
from harness.results import ResultError, dump_result, load_result, restated, seal_result, spec_hash
from harness.spec import (
    DEFAULT_PROFILE,
    PROFILES_DIR,
    ROOT,
    Experiment,
    SpecError,
    experiment_files,
    load_experiment,
    replicate_problems,
)
from harness.spec_files import read_yaml
from harness.stages import STAGE_NAMES, Criterion, ImportanceLoss

DEFAULT_CACHE = ROOT / ".cache"


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


def quiet_libraries() -> None:
    """--quiet also silences the progress bars of datasets (saving) and transformers (loading, saving)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _recipe(kind: str):
    """The recipe of an experiment kind (imported on demand: `report` and `validate` need no torch)."""
    if kind == "original":
        from harness.recipes.original import run_original

        return run_original
    if kind == "compression":
        from harness.recipes.compression import run_compression_experiment

        return run_compression_experiment
    if kind == "pruning_curves":
        from harness.recipes.pruning_curves import run_pruning_curves

        return run_pruning_curves
    from harness.recipes.public_lmms import run_public_lmms

    return run_public_lmms


def publish_result(out_dir: Path, result: dict, render, logs: dict[str, Path] | None = None) -> None:
    """The result folder (result.json, tables, figures, traces, sample logs) is built in a temporary folder
    and replaces the old one only once rendering has succeeded: a render that fails leaves the previous
    folder as it was, never a new result.json beside stale tables. `logs`: the per-sample logs to keep in
    `samples/` (harness/store.py result_sample_logs); None keeps the folder's own."""
    from harness.report.render import slug

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
    """Run one experiment unless an up-to-date result exists: same spec hash (what determines the numbers,
    harness/results.py spec_hash) and at least the requested seeds. Returns (output folder, 'ran' |
    'cached'); a cached result takes on the experiment's current labels, paper rows and claims."""
    from harness.preflight import checked
    from harness.recipes.common import set_up
    from harness.report.render import RENDERERS

    exp, prof = checked(name, profile, num_seeds, device, dtype)

    set_up(prof)  # the placement first: under accelerate launch it picks the processes' backend
    out = Path(results_dir) / exp.name
    existing = out / "result.json"
    if existing.is_file() and not overwrite:
        old = load_result(existing)  # sealed and consistent, or an error naming the file
        from harness.store import input_hashes

        if old.spec_hash == spec_hash(exp, prof, input_hashes(prof)):
            if set(prof.seeds) <= set(old.seeds):
                restate(out, exp)
                return out, "cached"
            print(f"[{exp.name}] {existing} lacks seeds {sorted(set(prof.seeds) - set(old.seeds))}: running")
        else:
            print(f"[{exp.name}] spec changed since {existing} was written: running again", file=sys.stderr)
    result = _recipe(exp.kind)(exp, prof, Path(cache_dir), progress)
    from harness.store import result_sample_logs, teacher_dir

    own_teacher = exp.kind == "original" or "teacher" in exp.overrides
    logs = result_sample_logs(result, prof, teacher_dir(prof, Path(cache_dir)), own_teacher)
    publish_result(out, result, RENDERERS[exp.kind], logs)
    return out, "ran"


def restate(out: Path, exp: Experiment) -> None:
    """Rewrite a cached result's records with the experiment's current presentation (labels, paper rows,
    claims, wording: nothing that enters the spec hash) and re-render its folder; no number changes."""
    from harness.report.render import RENDERERS

    old = load_result(out / "result.json")
    new = dump_result(restated(old, exp))
    if new != dump_result(old):
        publish_result(out, new, RENDERERS[exp.kind])


def cmd_run(args) -> int:
    from harness.preflight import checked

    names = [  # every spec, the files it names and the device checked before any folder is made
        checked(name, args.profile, args.num_seeds, args.device, args.dtype)[0].name
        for name in args.experiments
    ]
    writable_dir(args.results_dir or results_root(args.profile), "--results-dir")
    writable_results(args.results_dir or results_root(args.profile), names)
    writable_dir(args.cache_dir, "--cache-dir")
    if args.quiet:
        quiet_libraries()
    if args.rebuild:
        from harness.store import rebuild_entries

        rebuild_entries()
    for name in args.experiments:
        t = time.perf_counter()
        out, how = run_experiment(
            name,
            args.profile,
            args.results_dir or results_root(args.profile),
            args.cache_dir,
            args.overwrite or args.rebuild,
            progress=not args.quiet,
            num_seeds=args.num_seeds,
            device=args.device,
            dtype=args.dtype,
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


def _is_profile(path: Path) -> bool:
    """Profiles live in experiments/profiles/. Elsewhere, a file is taken for a profile only when it has a
    profile's sections (model, data, teacher, compression) and none of an experiment's; so an experiment
    that lacks `kind` is reported as an experiment missing `kind`, not as a profile with nine errors."""
    if path.parent.resolve() == PROFILES_DIR.resolve():
        return True
    try:
        raw = read_yaml(path)
    except (OSError, SpecError):
        return False
    if not isinstance(raw, dict):
        return False
    experiment_keys = set(Experiment.model_fields) - {"name", "description"}  # a profile has those too
    return not (experiment_keys & set(raw)) and bool({"model", "data", "teacher", "compression"} & set(raw))


def cmd_validate(args) -> int:
    from harness.preflight import checked, checked_profile

    files = [Path(f) for f in args.files] or experiment_files()
    profiles = [args.profile] if args.profile else sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    failures = 0
    for prof in profiles:
        try:
            checked_profile(prof)
        except SpecError as e:
            print(e, file=sys.stderr)
            failures += 1
            continue
        for f in files:
            try:
                if _is_profile(f):
                    checked_profile(f)
                else:
                    checked(f, prof)
                print(f"ok  {f} (profile {prof})")
            except SpecError as e:
                print(e, file=sys.stderr)
                failures += 1
    for problem in replicate_problems([load_experiment(f) for f in experiment_files()]):
        print(problem, file=sys.stderr)
        failures += 1
    return 1 if failures else 0


def cmd_report(args) -> int:
    from harness.report.render import RENDERERS

    root = args.results_dir or results_root(args.profile)
    if not Path(root).is_dir():
        raise SpecError(f"--results-dir: {root} is not a folder; nothing to report")
    for path in experiment_files():
        exp = load_experiment(path)
        if (root / exp.name / "result.json").is_file():
            RENDERERS[exp.kind](root / exp.name)
            print(f"rendered {root / exp.name}")
    publish(root)
    if args.html:
        from harness.report.html import write_html

        print(f"page: {write_html(root)}")
    for fmt in args.format or []:
        from harness.report.frame import export_frame

        try:
            print(f"exported {export_frame(root, fmt)}")
        except ImportError as e:
            raise SpecError(f"--format {fmt}: {e.msg}; pip install pyarrow (the export extra)") from None
    return 0


def publish(root: Path) -> None:
    """The claims report from whatever results exist; then the committed results (and only those) are
    copied into the README, docs/ and data cards."""
    from harness.report.claims import write_claims
    from harness.report.constraints import write_constraints
    from harness.report.readme import fill_tables

    if not parallel.is_main():  # under accelerate launch the main process writes reports
        return
    if Path(root).is_dir():
        print(f"claims report: {write_claims(root)}")
        print(f"library versions behind the results: {write_constraints(root)}")
        if (Path(root) / "index.html").is_file():  # once written (report --html), kept in step with the rest
            from harness.report.html import write_html

            print(f"page: {write_html(root)}")
    if Path(root).resolve() == results_root(DEFAULT_PROFILE).resolve():
        for doc in fill_tables(root):
            print(f"updated tables in {doc}")


def cmd_verify(args) -> int:
    """Check every cache entry in full: each file's sha256 against its manifest, every seal."""
    from harness.store import verify

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


def placement_arguments(p: argparse.ArgumentParser) -> None:
    """--device and --dtype, which replace the profile's `device` and `dtype` (harness/device.py)."""
    p.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: the profile's device)"
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="precision of forward passes and measured weights (default: the profile's dtype)",
    )


class Parser(argparse.ArgumentParser):
    """argparse with its error as one line (`error: ...`, exit status 2), like every other refusal here;
    `--help` still prints the usage."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


def count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least` (sizes, token counts, seeds)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if not least <= value < 2**63:
            raise argparse.ArgumentTypeError(f"must be at least {least} (and below 2**63), got {value}")
        return value

    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number above 0 (a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = Parser(add_help=False)
    common.add_argument(
        "--profile", default=None, help=f"profile name or YAML path (default: {DEFAULT_PROFILE})"
    )
    common.add_argument("--results-dir", type=Path, default=None, help="where result folders go")
    common.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="datasets, teachers, runs")
    r = sub.add_parser(
        "run", parents=[common], help="run experiments (skips those with an up-to-date result)"
    )
    r.add_argument("experiments", nargs="+", help="experiment names (files in experiments/) or YAML paths")
    r.add_argument("--overwrite", action="store_true", help="rerun even if a result exists")
    r.add_argument(
        "--rebuild",
        action="store_true",
        help="also recompute the cached teacher and compression runs they use (implies --overwrite)",
    )
    r.add_argument(
        "--num-seeds", type=count(1), default=None, help="seeds 0..N-1 (default: the profile's seeds)"
    )
    placement_arguments(r)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)
    sub.add_parser("ls", parents=[common], help="list experiments and their state").set_defaults(func=cmd_ls)
    v = sub.add_parser("validate", parents=[common], help="validate experiment/profile files, run nothing")
    v.add_argument(
        "files", nargs="*", help="files to check (default: every experiment, against every profile)"
    )
    v.set_defaults(func=cmd_validate)
    rp = sub.add_parser("report", parents=[common], help="re-render tables from result files")
    rp.add_argument(
        "--format",
        action="append",
        choices=["csv", "json", "parquet"],
        help="also write every result as one tidy table, results/results.FORMAT (repeatable; parquet needs "
        "pyarrow)",
    )
    rp.add_argument(
        "--html",
        action="store_true",
        help="also write results/index.html: claims, tables and figures on one page",
    )
    rp.set_defaults(func=cmd_report)
    sub.add_parser(
        "verify", parents=[common], help="check every cache entry against its manifest (full sha256)"
    ).set_defaults(func=cmd_verify)
    pr = sub.add_parser("prune", parents=[common], help="prune one step of one level and save the checkpoint")
    placement_arguments(pr)
    pr.add_argument("--level", required=True, choices=list(STAGE_NAMES))
    pr.add_argument(
        "--amount",
        required=True,
        type=count(1),
        help="blocks, FFN channels, attention inner width (heads × head_dim) or hidden dims",
    )
    pr.add_argument(
        "--out", required=True, type=Path, help="folder for the pruned save_pretrained checkpoint"
    )
    pr.add_argument(
        "--checkpoint", type=Path, default=None, help="model to prune (default: the profile's teacher)"
    )
    pr.add_argument(
        "--module", default="language_model", choices=["language_model", "vision_model", "qformer"]
    )
    pr.add_argument("--criterion", default="first_order", choices=list(get_args(Criterion)))
    pr.add_argument(
        "--loss",
        default="cross_entropy",
        choices=list(get_args(ImportanceLoss)),
        help="loss whose gradient scores the parameters (Eq. 1)",
    )
    pr.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint for --loss teacher_kl")
    pr.add_argument(
        "--samples", type=count(1), default=None, help="size of D_p (default: the whole train split)"
    )
    pr.add_argument("--seed", type=count(0), default=0, help="seed of the random criterion")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_command("harness.commands.prune", "prune_command"))
    ev = sub.add_parser(
        "evaluate", parents=[common], help="score a checkpoint (and compare another) on a profile's data"
    )
    placement_arguments(ev)
    ev.add_argument("--checkpoint", required=True, type=Path, help="a BLIP-2-family save_pretrained folder")
    ev.add_argument(
        "--compare", type=Path, default=None, help="a second checkpoint: the paired Δ over the same samples"
    )
    ev.add_argument("--split", default="test", choices=["test", "validation"])
    ev.add_argument(
        "--prompt",
        default="auto",
        help="stand-in, blip2 ('Question: {question} Answer:'), a text with one {question}, or auto: the "
        "stand-in's for a folder the harness wrote, BLIP-2's otherwise",
    )
    ev.add_argument("--out", required=True, type=Path, help="a new folder for the records and sample logs")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_command("harness.commands.evaluate", "evaluate_command"))
    pb = sub.add_parser(
        "publish", parents=[common], help="put the profile's trained teacher into the repository (published/)"
    )
    pb.set_defaults(func=_command("harness.commands.publish", "publish_command"))
    pl = sub.add_parser(
        "plan", parents=[common], help="memory per phase of compressing a checkpoint, from its config alone"
    )
    pl.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        default=None,
        help="folder with config.json (default: the stand-in)",
    )
    pl.add_argument("--memory", type=memory_size, default=None, help="device memory to fit, e.g. 24GB")
    pl.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    pl.add_argument(
        "--gpus", type=count(1), default=1, help="processes under accelerate launch, one device each"
    )
    pl.add_argument(
        "--parallel",
        default=None,
        choices=["ddp", "fsdp"],
        help="their engine (harness/parallel.py; default: the profile's compression.parallel)",
    )
    pl.add_argument(
        "--text-tokens",
        type=count(1),
        default=32,
        help="prompt + answer tokens per sample, image placeholders aside",
    )
    pl.add_argument(
        "--answer-tokens", type=count(1), default=4, help="answer tokens per sample (the KL's positions)"
    )
    pl.add_argument(
        "--tflops",
        type=positive,
        default=None,
        help="sustained TFLOP/s of the device, to turn compute into time",
    )
    pl.set_defaults(func=_command("harness.commands.plan", "plan_command"))
    return p


def memory_size(text: str) -> float:
    """--memory's argparse type (harness/plan.py parse_memory): a positive, finite size with its unit."""
    from harness.plan import parse_memory

    try:
        return parse_memory(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--memory: ")) from None


def _command(module: str, name: str):
    """A command imported only when it runs, so that `report` never imports torch."""

    def run(args) -> int:
        return getattr(importlib.import_module(module), name)(args)

    return run


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command != "validate" and args.profile is None:
        args.profile = DEFAULT_PROFILE
    return guarded(lambda: args.func(args), getattr(args, "cache_dir", DEFAULT_CACHE))


def guarded(command: Callable[[], int], cache_dir: Path) -> int:
    """Run a command as the CLI and run_all.py do: a refusal is one `error:` line (exit status 2), Ctrl-C one
    line on what is kept and how to resume (130), a closed pipe nothing at all."""
    try:
        return command()
    except (SpecError, PruningError, CheckpointError, ResultError, CorruptEntry) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: every finished run and pruning step is kept under {cache_dir}; the same command "
            "resumes from there",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # the reader went away (`python -m harness ls | head`): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
