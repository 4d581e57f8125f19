"""Per-sample correctness of the models in a result file, as vectors the paired test compares.

Why a module: claims (harness/report/claims.py) and the budget map's table (harness/report/budget.py) pair
the same runs the same way: seeds in seed order, the teacher repeated once per seed, subsets of the test
split by its recorded knowledge groups (harness/results.py TestSplit).
"""

from __future__ import annotations

import numpy as np

from harness.report.paired import Paired, paired_bootstrap, unpack
from harness.results import CompressionResult, CurvesResult


def _vectors(records, n: int, mask: np.ndarray | None) -> list[np.ndarray] | None:
    """Each record's per-sample correctness (restricted to `mask`), or None if one has none recorded."""
    if any(r.accuracy.correct is None for r in records):
        return None
    return [
        unpack(r.accuracy.correct, n)[mask] if mask is not None else unpack(r.accuracy.correct, n)
        for r in records
    ]


def run_vectors(
    res: CompressionResult, label: str, mask: np.ndarray | None = None
) -> list[np.ndarray] | None:
    """Per-sample correctness of each seed of run `label`, in seed order; None without records."""
    run = next((r for r in res.runs if r.label == label), None)
    if run is None or res.test_split is None:
        return None
    return _vectors(sorted(run.seeds, key=lambda s: s.seed), res.test_split.n, mask)


def teacher_vectors(
    res: CompressionResult, k: int, mask: np.ndarray | None = None
) -> list[np.ndarray] | None:
    """The teacher's per-sample correctness, repeated for `k` seeds (it is one model)."""
    if res.test_split is None:
        return None
    found = _vectors([res.teacher], res.test_split.n, mask)
    return found * k if found else None


def knowledge_mask(res: CompressionResult) -> np.ndarray | None:
    """Which test samples are knowledge questions (TestSplit.knowledge 's' or 'u')."""
    if res.test_split is None:
        return None
    return np.array([c in "su" for c in res.test_split.knowledge])


def stats(p: Paired) -> str:
    """Δ, its 95% interval and the minimum detectable effect, as every row shows them."""
    return f"Δ {p.delta:+.3f}, 95% CI [{p.low:+.3f}, {p.high:+.3f}], MDE {p.mde:.3f}"


def compare(res: CompressionResult, better: str, worse: str) -> Paired | None:
    """The paired test of 'run `better` beats run `worse`' (harness/report/paired.py), seeds paired by
    seed; None where a run has no per-sample records."""
    a, b = run_vectors(res, better), run_vectors(res, worse)
    if a is None or b is None or len(a) != len(b):
        return None
    return paired_bootstrap(a, b)


def curve_scores(res: CurvesResult, level: str, criterion: str) -> list[np.ndarray] | None:
    """Per seed, each test sample's correctness averaged over the curve's pruning steps (the teacher's own
    step 0 left out): a per-sample area under the curve, which the paired bootstrap compares."""
    curves = sorted(
        (c for c in res.curves if c.level == level and c.criterion == criterion), key=lambda c: c.seed
    )
    if not curves or res.test_split is None:
        return None
    n = res.test_split.n
    scores = []
    for c in curves:
        steps = [p for p in c.points if p.step > 0]
        if not steps or any(p.accuracy.correct is None for p in steps):
            return None
        scores.append(np.mean([unpack(p.accuracy.correct, n) for p in steps], axis=0))
    return scores
