"""`python -m harness evaluate --checkpoint DIR [--compare DIR2]`: score any BLIP-2-family checkpoint on the
profile's data (SynthAd or a MAAD folder), with its sample log, and compare two checkpoints sample by sample.

Why a command: scoring one's own model should not need an experiment file. It uses the protocol every
result uses (harness/evaluate.py: greedy generation after one forced pass), writes the accuracy in the
results' `Accuracy` schema with the test split's record (harness/results.py), and `--compare` reads the two
per-sample vectors with the claims' paired interval (harness/report/paired.py).
"""

from __future__ import annotations

from pathlib import Path

from harness import sample_log
from harness.cache import atomic_dir, write_json
from harness.config.files import SpecError, new_folder
from harness.errors import CheckpointError
from harness.evaluate import accuracy_record, evaluate
from harness.measure import device_info
from harness.models.blip2 import parameter_counts
from harness.models.public import load_lmm
from harness.pipeline import structure
from harness.preflight import checked_profile
from harness.provenance import provenance
from harness.recipes.common import running, test_split_record
from harness.report.paired import paired_test
from harness.results import Accuracy, TestSplit, unpack
from harness.store import get_dataset


def evaluate_command(args) -> int:
    """Score `--checkpoint` (and `--compare`) on the profile's split; write each one's record and log."""
    for flag, folder in (("--checkpoint", args.checkpoint), ("--compare", args.compare)):
        if folder is not None and not (Path(folder) / "config.json").is_file():
            raise CheckpointError(f"{flag}: {folder} is not a checkpoint folder (no config.json in it)")
    if args.prompt not in ("auto", "stand-in", "blip2") and args.prompt.count("{question}") != 1:
        raise SpecError(
            f"--prompt: '{args.prompt}' must be auto, stand-in, blip2 or a text with one {{question}}"
        )
    out = Path(args.out)
    new_folder(out, "--out")
    prof = checked_profile(args.profile, {}, args.device, args.dtype)
    with running(prof):
        return _evaluate(args, prof)


def _evaluate(args, prof) -> int:
    """The scoring itself, inside the profile's run context (device, dtype, threads)."""
    out = Path(args.out)
    data = get_dataset(prof, args.cache_dir, not args.quiet)
    split = data[args.split]
    scored, c = {}, None
    with atomic_dir(out) as tmp:
        for name, folder in (("a", args.checkpoint), ("b", args.compare)):
            if folder is not None:
                scored[name] = _score(Path(folder), args.prompt, prof, split, tmp / name, args.quiet)
        if "b" in scored:
            c = _compare(scored["a"], scored["b"])
            write_json(tmp / "comparison.json", c)
    for record in scored.values():
        acc = record["accuracy"]
        n = acc["n_test"]
        print(f"{record['checkpoint']}: accuracy {acc['overall']:.3f} on {n} {args.split} samples")
    if c is not None:
        low, high = c["interval_95"]
        print(
            f"paired over the same samples: Δ accuracy (--checkpoint − --compare) {c['delta']:+.3f}, 95% CI "
            f"[{low:+.3f}, {high:+.3f}], p {c['p_value']:.3g}: {c['verdict']}"
        )
    print(f"records and sample logs in {out}")
    return 0


def _score(folder: Path, prompt: str, prof, split, out: Path, quiet: bool) -> dict:
    model, processor = load_lmm(folder, prompt=prompt)  # its template is read by harness/data/collate.py
    acc = evaluate(model, processor, split, prof.evaluation_batch_size, progress=not quiet)
    record = {
        "checkpoint": str(folder),
        "prompt": processor.prompt_template,
        "profile": prof.name,
        "parameters": parameter_counts(model),
        "structure": structure(model),
        "accuracy": Accuracy.model_validate(accuracy_record(acc)).model_dump(),
        "test_split": TestSplit.model_validate(test_split_record(split)).model_dump(),
        "provenance": provenance(),
        "device": device_info(),
    }
    out.mkdir(parents=True)
    write_json(out / "evaluation.json", record)
    (out / "samples.jsonl.gz").write_bytes(sample_log.dump(acc["samples"]))
    return record


def _compare(a: dict, b: dict) -> dict:
    """a − b over the same samples, with the claims' paired interval (one seed: a paired t over samples)."""
    n = a["accuracy"]["n_test"]
    if a["test_split"] != b["test_split"]:
        raise ValueError("--compare: the two evaluations did not score the same samples")
    bits_a, bits_b = (unpack(x["accuracy"]["correct"], n) for x in (a, b))
    p = paired_test([bits_a.astype(float)], [bits_b.astype(float)])
    low, high = p.interval()
    return {
        "checkpoint": a["checkpoint"],
        "compare": b["checkpoint"],
        "n": n,
        "delta": p.delta,
        "interval_95": [low, high],
        "p_value": p.p_value(),
        "mde": p.mde,
        "verdict": {"reproduced": "--checkpoint is better", "not reproduced": "--compare is better"}.get(
            p.verdict(), "no difference the interval can tell"
        ),
    }
