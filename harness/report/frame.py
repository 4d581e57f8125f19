"""Every result under a results folder as one tidy table, and the one way a spread over seeds is shown.

Why one frame: tables, claims and figures take means and spreads over seeds from the same numbers with the
same group-by (`summary`), and show them with one formatter (`mean_std`). One row per experiment × role ×
row × seed × stage × metric (× batch size for throughput):
- role 'teacher': a compression experiment's teacher; 'run': a seed's final model; 'stage': a seed's model at
  the end of a stage (`stage` names it); 'row': a row of an original or public table; 'curve': a step of a
  pruning curve (`stage` the level, `label` the criterion, `position` the step; metric 'share' removed);
- metric: 'overall' and each task of harness/config/vocabulary.py TASKS (test accuracy), 'knowledge' (all
  knowledge questions), 'knowledge_seen' and 'knowledge_unseen' (about advertisers D_d names or not),
  'params_total',
  'params_language_model', 'params_lm_blocks', 'd_d_samples', 'samples_per_s' and 'latency_p50_ms' (with
  `batch_size`), 'vision_latency_p50_ms' (the vision side alone, batch 1), 'distillation_sample_passes'
  (runs) and 'training_sample_passes' (teacher): the two sides of the budget ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from harness.config.vocabulary import TASKS
from harness.results import (
    CompressionResult,
    CurvesResult,
    OriginalRow,
    PublicRow,
    Result,
    SeedRecord,
    StageEnd,
    TeacherRecord,
    load_result,
)

KNOWLEDGE = ("knowledge", "knowledge_seen", "knowledge_unseen")
Model = TeacherRecord | SeedRecord | StageEnd | OriginalRow | PublicRow  # a record of one model's numbers

COLUMNS = ["experiment", "role", "position", "label", "seed", "stage", "metric", "batch_size", "value"]


def mean_std(values: list[float | None], digits: int = 3, exact: bool = False) -> str | None:
    """'0.884' for one value, '0.884 ± 0.004' for several (sample std). `exact`: quantities that cannot
    vary by chance (sizes: every seed reaches the same structure) show one value when all seeds agree."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else None
    if s is None or (exact and s == 0):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _metrics(record: Model) -> Iterator[tuple[str, int | None, float]]:
    """(metric, batch size, value) of one model's record."""
    for task in (*TASKS, "overall", *KNOWLEDGE):
        if (v := record.accuracy.task(task)) is not None:
            yield task, None, v
    if (p := record.parameters) is not None:
        yield "params_total", None, p.total
        yield "params_language_model", None, p.language_model
        if p.lm_blocks is not None:
            yield "params_lm_blocks", None, p.lm_blocks
    for t in record.throughput or []:
        yield "samples_per_s", t.batch_size, t.samples_per_s
        yield "latency_p50_ms", t.batch_size, t.latency_p50_ms
    if (vision := getattr(record, "vision_side_latency", None)) is not None:
        yield "vision_latency_p50_ms", vision.batch_size, vision.latency_p50_ms


def result_frame(res: Result) -> pd.DataFrame:
    """The tidy rows of one result (columns: COLUMNS)."""
    rows = []

    def add(role: str, position: int, label: str | None, seed: int | None, stage: str | None, record, *extra):
        metrics = [*_metrics(record), *extra]
        rows.extend([res.experiment.name, role, position, label, seed, stage, *m] for m in metrics)

    if isinstance(res, CompressionResult):
        passes = res.teacher.training_sample_passes
        add(
            "teacher",
            0,
            None,
            None,
            None,
            res.teacher,
            *([("training_sample_passes", None, passes)] * (passes is not None)),
        )
        for i, run in enumerate(res.runs):
            for s in run.seeds:
                passes = [("distillation_sample_passes", None, s.distillation_sample_passes)]
                extra = [("d_d_samples", None, s.d_d_samples), *(p for p in passes if p[2] is not None)]
                add("run", i, run.label, s.seed, None, s, *extra)
                for e in s.stage_ends or []:
                    add("stage", i, run.label, s.seed, e.stage, e)
    elif isinstance(res, CurvesResult):
        add("teacher", 0, None, None, None, res.teacher)
        for c in res.curves:
            for p in c.points:
                acc = [
                    (m, None, v) for m in ("overall", *KNOWLEDGE) if (v := getattr(p.accuracy, m)) is not None
                ]
                extra = [
                    ("share", None, p.share),
                    ("validation", None, p.validation),
                    ("params_lm", None, p.params_lm),
                ]
                rows.extend(
                    [res.experiment.name, "curve", p.step, c.criterion, c.seed, c.level, *m]
                    for m in acc + extra
                )
    else:
        for i, r in enumerate(res.rows):
            add("row", i, r.row, None, None, r)
    return pd.DataFrame(rows, columns=COLUMNS)


def load_results(root: Path) -> dict[str, Result]:
    """Every result under `root`, by experiment name (folders in name order)."""
    results = (load_result(p) for p in sorted(Path(root).glob("*/result.json")))
    return {r.experiment.name: r for r in results}


def frame_of(results: dict[str, Result]) -> pd.DataFrame:
    frames = [result_frame(r) for r in results.values()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def pick(frame: pd.DataFrame, **where) -> pd.DataFrame:
    """The rows whose columns equal the given values (None: the column is empty)."""
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column].isna() if value is None else frame[column] == value
    return frame[mask]


def value(frame: pd.DataFrame, metric: str, batch_size: int | None = None) -> float | None:
    """The first value of `metric` (at `batch_size`) in `frame`, or None where it was not measured."""
    rows = pick(frame, metric=metric, batch_size=batch_size)
    return float(rows["value"].iloc[0]) if len(rows) else None


def values(frame: pd.DataFrame, metric: str) -> list[float]:
    """Every value of `metric` in `frame`, in seed order."""
    return [float(v) for v in pick(frame, metric=metric)["value"]]


def summary(frame: pd.DataFrame, metric: str, by: tuple[str, ...] = ("position", "label")) -> pd.DataFrame:
    """Per group of `by` (in the frame's order): the values of `metric` over seeds, their mean and sample
    std (None for one seed). The one group-by behind every mean ± std of tables, claims and figures."""
    rows = pick(frame, metric=metric)
    groups = rows.groupby(list(by), sort=False, dropna=False)["value"]
    out = groups.agg(values=lambda v: [float(x) for x in v]).reset_index()
    out["mean"] = [statistics.fmean(v) for v in out["values"]]
    out["std"] = pd.Series([statistics.stdev(v) if len(v) > 1 else None for v in out["values"]], dtype=object)
    return out


EXPORTS = ("csv", "json", "parquet")


def export_frame(root: Path, fmt: str) -> Path:
    """Every result under `root` as one tidy table (the frame every report reads), written as
    `<root>/results.<fmt>` for analysis elsewhere; parquet needs pyarrow (the `export` extra)."""
    if fmt not in EXPORTS:
        raise ValueError(f"--format: '{fmt}' is not one of {', '.join(EXPORTS)}")
    frame, path = frame_of(load_results(root)), Path(root) / f"results.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "json":
        frame.to_json(path, orient="records", indent=1)
    else:
        frame.to_parquet(path, index=False)
    return path
