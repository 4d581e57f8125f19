"""`python -m harness run | ls | validate | report | verify | prune | evaluate | publish | plan`: the
arguments of every command; each command's work lives in harness/commands/ and is imported only when it runs.

Why a CLI beside run_all.py: researchers rerun one experiment, check a YAML edit before a long run, or
re-render tables after a change of style, without touching anything else.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, get_args

from harness.cache import CorruptEntry
from harness.config.files import SpecError
from harness.config.loading import DEFAULT_PROFILE
from harness.config.paths import ROOT
from harness.config.vocabulary import STAGE_NAMES, ImportanceLoss
from harness.errors import CheckpointError, PruningError
from harness.registry import CRITERIA
from harness.results import ResultError

DEFAULT_CACHE = ROOT / ".cache"


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
    r.set_defaults(func=_command("harness.commands.run", "cmd_run"))
    ls = sub.add_parser("ls", parents=[common], help="list experiments and their state")
    ls.set_defaults(func=_command("harness.commands.run", "cmd_ls"))
    v = sub.add_parser("validate", parents=[common], help="validate experiment/profile files, run nothing")
    v.add_argument(
        "files", nargs="*", help="files to check (default: every experiment, against every profile)"
    )
    v.set_defaults(func=_command("harness.commands.validate", "cmd_validate"))
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
    rp.set_defaults(func=_command("harness.commands.report", "cmd_report"))
    sub.add_parser(
        "verify", parents=[common], help="check every cache entry against its manifest (full sha256)"
    ).set_defaults(func=_command("harness.commands.verify", "cmd_verify"))
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
    pr.add_argument("--criterion", default="first_order", choices=list(CRITERIA))
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
        "one a folder pruned by `harness prune` records, the stand-in's for another folder the harness "
        "wrote, BLIP-2's otherwise",
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
