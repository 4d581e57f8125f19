"""Paired comparisons of two models from per-sample correctness, not from accuracies alone.

Why: every model is scored on the same test split, so two models' errors are correlated sample by sample.
Comparing mean accuracies over seeds throws that pairing away and needs a normality assumption; pairing
per sample removes the shared difficulty of the samples and gives a much tighter interval.

Test used (paired bootstrap): `better[s]` and `worse[s]` are the 0/1 correctness vectors of seed s of the
two models on the same samples, in the same order. Each replicate draws one set of test-sample indices
with replacement, shared by every seed because the samples are shared across seeds, and, when there are
two or more seeds, also draws the seeds with replacement (seed s of one model stays paired with seed s of
the other). Δ* = mean over the drawn seeds of the per-seed accuracy difference on the drawn samples. The
95% interval is the percentile interval (2.5%, 97.5%) of Δ*; the minimum detectable effect is
(z_0.975 + z_0.8) × the standard deviation of Δ*, i.e. two-sided α = 0.05 at 80% power.

Per-sample records are stored in result files as `pack`ed strings: bits, packed and base64-encoded
(~420 characters for 2,500 samples).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

TEST_DESCRIPTION = (
    "Paired percentile bootstrap of Δ accuracy, resampling the shared test samples and the paired seeds: "
    "both models answer the same samples, so pairing removes their shared difficulty, and a percentile "
    "bootstrap makes no normality assumption on 0/1 outcomes. MDE = the Δ detectable at 80% power "
    "(two-sided α = 0.05)."
)

_Z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)  # ≈ 2.80
_CHUNK = 1 << 20  # indices drawn per chunk of replicates: bounds memory to tens of MiB


def _as_bits(v: Sequence[bool] | np.ndarray, what: str) -> np.ndarray:
    """A 1-D bool array, refusing anything that is not 0/1 (a score, a label) rather than truncating it."""
    a = np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D 0/1 vector, got shape {a.shape}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{what} must hold only 0/1 (or bool) values")
    return a.astype(bool)


def _as_scores(v: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """A 1-D float array of per-sample scores in [0, 1]: 0/1 correctness, or its mean over several models
    (a pruning curve's steps, harness/report/claims.py)."""
    a = np.asarray(v, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D vector of per-sample scores, got shape {a.shape}")
    if a.size and not ((a >= 0) & (a <= 1)).all():
        raise ValueError(f"{what} must hold per-sample scores in [0, 1] (0/1 correctness or its mean)")
    return a


def pack(correct: Sequence[bool] | np.ndarray) -> str:
    """Per-sample correctness as a short ASCII string, so result files can keep it (8 samples a byte)."""
    return base64.b64encode(np.packbits(_as_bits(correct, "correct")).tobytes()).decode("ascii")


def unpack(text: str, n: int) -> np.ndarray:
    """The bool vector of length `n` that `pack` turned into `text`; a corrupt or mismatched record
    raises rather than silently scoring the wrong samples."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"per-sample record is not valid base64: {e}") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"per-sample record holds {len(raw)} bytes; {n} samples need {(n + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[n:].any():
        raise ValueError(f"per-sample record has bits set past sample {n}: recorded for more samples?")
    return bits[:n].astype(bool)


@dataclass(frozen=True)
class Paired:
    """One paired comparison on the claim 'better > worse': Δ, its 95% interval, the MDE, the verdict."""

    delta: float
    low: float
    high: float
    mde: float
    n_samples: int
    n_seeds: int
    verdict: str


def _differences(better: Sequence[np.ndarray], worse: Sequence[np.ndarray]) -> np.ndarray:
    """(seeds × samples) matrix of better − worse in {−1, 0, 1}, after checking the two line up."""
    if len(better) != len(worse):
        raise ValueError(f"seed counts differ: {len(better)} (better) vs {len(worse)} (worse)")
    if not better:
        raise ValueError("no seeds given")
    b = [_as_scores(v, f"better[{s}]") for s, v in enumerate(better)]
    w = [_as_scores(v, f"worse[{s}]") for s, v in enumerate(worse)]
    lengths = {len(v) for v in b + w}
    if len(lengths) != 1:
        raise ValueError(f"per-sample vectors differ in length: {sorted(lengths)}; same test split?")
    if lengths == {0}:
        raise ValueError("per-sample vectors are empty")
    return np.stack(b) - np.stack(w)


def _counts(idx: np.ndarray, m: int) -> np.ndarray:
    """Row-wise bincount of a (rows × draws) index matrix with values in [0, m): how often each was drawn."""
    k = idx.shape[0]
    return np.bincount((idx + m * np.arange(k)[:, None]).ravel(), minlength=k * m).reshape(k, m)


def _replicates(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Δ* for each replicate: resampled samples (shared by the seeds) and, with ≥2 seeds, resampled seeds."""
    n_seeds, n = d.shape
    out = np.empty(n_boot)
    rows = max(1, _CHUNK // n)
    for start in range(0, n_boot, rows):
        k = min(rows, n_boot - start)
        # (k, seeds): each seed's accuracy difference on the same drawn samples
        per_seed = _counts(rng.integers(0, n, size=(k, n)), n) @ d.T / n
        weights = _counts(rng.integers(0, n_seeds, size=(k, n_seeds)), n_seeds) if n_seeds > 1 else 1
        out[start : start + k] = (per_seed * weights).sum(axis=1) / n_seeds
    return out


def paired_bootstrap(
    better: Sequence[np.ndarray], worse: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0
) -> Paired:
    """Paired bootstrap of Δ = accuracy(better) − accuracy(worse) over shared samples and paired seeds
    (see the module docstring); deterministic for a given `seed`."""
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    d = _differences(better, worse)
    reps = _replicates(d, n_boot, np.random.default_rng(seed))
    low, high = (float(x) for x in np.percentile(reps, [2.5, 97.5]))
    verdict = "reproduced" if low > 0 else "not reproduced" if high < 0 else "inconclusive"
    return Paired(
        delta=float(d.mean()),
        low=low,
        high=high,
        mde=float(_Z * reps.std(ddof=1)),
        n_samples=d.shape[1],
        n_seeds=d.shape[0],
        verdict=verdict,
    )


def combine(verdicts: Sequence[str]) -> str:
    """A claim made of several comparisons holds only if all do; one going significantly the other way
    refutes it; anything else is inconclusive (the rule of harness/report/claims.py)."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "inconclusive"
