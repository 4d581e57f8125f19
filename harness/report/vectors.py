"""Per-sample correctness of the models in a result file, as vectors the paired test compares.

Why a module: claims (harness/report/claims.py) and the budget map's table (harness/report/budget.py) pair
the same runs the same way: seeds in seed order, the teacher repeated once per seed, subsets of the test
split by its recorded knowledge groups (harness/results.py TestSplit).
"""

from __future__ import annotations

import numpy as np

from harness.report.frame import mean_std
from harness.report.paired import Paired, paired_test
from harness.results import CompressionResult, CurvesResult, unpack


def _vectors(records, n: int, mask: np.ndarray | None) -> list[np.ndarray]:
    """Each record's per-sample correctness (restricted to `mask`)."""
    return [
        unpack(r.accuracy.correct, n)[mask] if mask is not None else unpack(r.accuracy.correct, n)
        for r in records
    ]


def run_vectors(
    res: CompressionResult, label: str, mask: np.ndarray | None = None
) -> list[np.ndarray] | None:
    """Per-sample correctness of each seed of run `label`, in seed order; None if the result has no such
    run."""
    run = next((r for r in res.runs if r.label == label), None)
    if run is None:
        return None
    return _vectors(sorted(run.seeds, key=lambda s: s.seed), res.test_split.n, mask)


def teacher_vectors(res: CompressionResult, k: int, mask: np.ndarray | None = None) -> list[np.ndarray]:
    """The teacher's per-sample correctness, repeated for `k` seeds (it is one model)."""
    return _vectors([res.teacher], res.test_split.n, mask) * k


def knowledge_mask(res: CompressionResult | CurvesResult) -> np.ndarray:
    """Which test samples are knowledge questions (TestSplit.knowledge 's' or 'u')."""
    return np.array([c in "su" for c in res.test_split.knowledge])


def stats(p: Paired) -> str:
    """Δ, its 95% interval and the minimum detectable effect, as every row shows them."""
    return f"Δ {p.delta:+.3f}, 95% CI [{p.low:+.3f}, {p.high:+.3f}], MDE {p.mde:.3f}"


def paired_vectors(res: CompressionResult, better: str, worse: str) -> tuple[list, list] | None:
    """Both runs' per-sample correctness, seeds paired by seed; None where the result lacks a run or the two
    have different seeds."""
    a, b = run_vectors(res, better), run_vectors(res, worse)
    if a is None or b is None or len(a) != len(b):
        return None
    return a, b


def compare(res: CompressionResult, better: str, worse: str) -> Paired | None:
    """The paired test of 'run `better` beats run `worse`' (harness/report/paired.py); None where
    `paired_vectors` finds no pairing."""
    found = paired_vectors(res, better, worse)
    return paired_test(*found) if found else None


KNOWLEDGE_SPLIT = {"no_knowledge": "no-knowledge", "knowledge": "knowledge"}


def by_knowledge(
    res: CompressionResult | CurvesResult, better: list[np.ndarray], worse: list[np.ndarray]
) -> dict[str, Paired] | None:
    """The paired test again on the samples that need no advertiser knowledge (what D_d can teach) and on
    the knowledge questions (what only the teacher's pretraining taught): a compressed model can keep the
    first and lose the second, and one Δ over both hides which. None where either part has fewer than two
    samples (a MAAD split without knowledge questions)."""
    mask = knowledge_mask(res)
    if mask.sum() < 2 or (~mask).sum() < 2:
        return None
    return {
        "no_knowledge": paired_test([x[~mask] for x in better], [y[~mask] for y in worse]),
        "knowledge": paired_test([x[mask] for x in better], [y[mask] for y in worse]),
    }


def curve_scores(res: CurvesResult, level: str, criterion: str) -> list[np.ndarray] | None:
    """Per seed, each test sample's correctness averaged over the curve's pruning steps (the teacher's own
    step 0 left out): a per-sample area under the curve, which the paired test compares."""
    curves = sorted(
        (c for c in res.curves if c.level == level and c.criterion == criterion), key=lambda c: c.seed
    )
    if not curves:
        return None
    n = res.test_split.n
    scores = []
    for c in curves:
        steps = [p for p in c.points if p.step > 0]
        if not steps:
            return None
        scores.append(np.mean([unpack(p.accuracy.correct, n) for p in steps], axis=0))
    return scores


def one_curve(scores: list[np.ndarray]) -> bool:
    """Every seed's curve is the same: a criterion that draws no random numbers (all but random)."""
    return all(np.array_equal(scores[0], s) for s in scores[1:])


def seed_free(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two criteria's per-seed curve scores, reduced to one seed when neither varies with the seed (their
    copies would claim seeds that vary nothing)."""
    return ([a[0]], [b[0]]) if one_curve(a) and one_curve(b) else (a, b)


def area(scores: list[np.ndarray]) -> str:
    """A curve's area (mean per-sample score) over seeds, or once for a seed-independent curve."""
    if len(scores) > 1 and one_curve(scores):
        return f"{float(scores[0].mean()):.3f} (one curve for every seed)"
    return mean_std([float(s.mean()) for s in scores])
