"""The trace CSV: one row per pruning step, written beside every result and into every run folder.

Why here, torch-free: `python -m harness report` rewrites these CSVs from result files alone, and
harness/pipeline.py writes the same file while a run is under way.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.cache import write_atomic

TRACE_FIELDS = (
    "step",
    "stage",
    "amount",
    "removed_total",
    "params_total",
    "params_lm",
    "acc_pruned",
    "acc_distilled",
    "loss_last_epoch",
    "seconds",
    "blocks_dropped",
)


def write_trace_csv(path: Path, trace: Iterable[Mapping]) -> None:
    """One row per step: the numbers behind the saw-tooth (Figure 6) and size-vs-step (Figures 10, 11)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TRACE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(
        {**row, "blocks_dropped": " ".join(map(str, row.get("blocks_dropped") or []))} for row in trace
    )
    write_atomic(path, buf.getvalue())
