"""Per-sample logs of an evaluation, lm-evaluation-harness's `--log_samples` in spirit: for every test sample,
its id, task, knowledge class, prompt, target, the generated text and whether it was right.

Why kept: a result's accuracy and its packed correctness bits say how often a model fails, not what it
answers; with the log, anyone can read what a compressed model gets wrong. The bits a result carries are
derived from the same records (`correct_bits`), so the two can never disagree. A log is gzip-compressed
JSON Lines with a zero timestamp, so the same records always give the same bytes (committed logs
re-render byte for byte).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path

from harness.results import pack

FIELDS = ("id", "task", "knowledge", "prompt", "target", "generated", "how", "correct")


def records(
    tasks: Sequence[str],
    groups: Sequence[str],
    prompts: Sequence[str],
    targets: Sequence[str],
    generated: Sequence[str | None],
    correct: Sequence[bool],
    forced: Sequence[bool],
) -> list[dict]:
    """One record per test sample, in the split's order (the order of every result's `correct` bits).
    `forced`: the teacher-forced pass decided the verdict (harness/evaluate.py): its generated text is the
    target where it matched, None where its first departing token already ruled the answer out."""
    out = []
    rows = zip(tasks, prompts, targets, generated, correct, forced, strict=True)
    for i, (task, prompt, target, text, hit, by_force) in enumerate(rows):
        out.append(
            {
                "id": i,
                "task": task,
                "knowledge": groups[i] if groups else None,
                "prompt": prompt,
                "target": target,
                "generated": text,
                "how": "forced pass" if by_force else "generated",
                "correct": bool(hit),
            }
        )
    return out


def correct_bits(log: Sequence[dict]) -> str:
    """The packed per-sample correctness a result carries (harness/results.py `pack`), from the log."""
    return pack([r["correct"] for r in log])


def dump(log: Sequence[dict]) -> bytes:
    """The log as deterministic gzip-compressed JSON Lines."""
    text = "".join(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n" for r in log)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    return buf.getvalue()


def read(path: Path) -> list[dict]:
    """A log written as `dump` writes it, every record with every field."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        out = [json.loads(line) for line in f]
    for i, r in enumerate(out):
        if tuple(r) != FIELDS or r["id"] != i:
            raise ValueError(f"{path}: record {i} is not a sample record ({', '.join(FIELDS)}, ids from 0)")
    return out
