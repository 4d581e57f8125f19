"""Paired comparisons of two models from per-sample correctness, not from accuracies alone.

Why: every model is scored on the same test split, so two models' errors are correlated sample by sample.
Comparing mean accuracies over seeds throws that pairing away; pairing per sample removes the shared
difficulty of the samples and gives a much tighter interval.

Test used (variance components, Cochran–Cox quantile): d[s, i] = better[s, i] − worse[s, i] for seed s of
both models (paired by seed) and test sample i (shared by every seed), a two-way layout without replication.
Its mean squares give an unbiased variance of the mean Δ in two parts, A for the seeds (S − 1 degrees of
freedom) and B for the samples (n − 1):

    A = MS_seed / (S n),   B = max(MS_sample − MS_residual, 0) / (S n)

E[A + B] = σ²_seed / S + σ²_sample / n + σ²_residual / (S n), the variance of the mean when seeds and
samples are both drawn anew. Where seeds agree by chance (the same Δ from different samples), A + B can fall
below R = MS_residual / (S n), what pure noise alone leaves; SE² = max(A + B, R), so Δ never looks exact.
The quantile is Cochran and Cox's weighting of the parts' t quantiles, q = (t_{S−1} A + t_{n−1} (SE² − A))
/ SE²: with 3 seeds a seed-dominated comparison gets t with 2 degrees of freedom (4.30), a sample-dominated
one about 1.96. Why this and not a bootstrap: resampling 3 seeds cannot reach beyond their observed range,
and Satterthwaite's degrees of freedom under-cover with 3 seeds (91% in a simulation of this design, where
this interval stays within 94–98%: tests/test_paired.py asserts 92–98% for 3 and 5 seeds and a seed
standard deviation from 0 to 0.03). Where samples share no difficulty and seeds add nothing, it is
conservative (up to 99%). It is analytic: no verdict depends on a random generator. One seed (or identical
seeds) reduces to the paired t interval over samples. The minimum detectable effect is the Δ found at 80%
power: (q_0.975 + q_0.8) × SE.

Per-sample records are stored in result files as `pack`ed strings (harness/results.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as st

TEST_DESCRIPTION = (
    "Δ accuracy is paired per test sample and per seed; its 95% interval comes from the variance "
    "components of seeds and test samples (a two-way layout: every seed answers the same samples), with "
    "Cochran and Cox's quantile between t on the seeds' degrees of freedom and t on the samples': with 3 "
    "seeds a difference that varies from seed to seed gets a wide interval, and a simulation of this design "
    "(tests/test_paired.py) holds 94–98% coverage at nominal 95% for 3 and 5 seeds. The interval is "
    "analytic, so no verdict depends on a random generator. MDE = the Δ detectable at 80% power "
    "(two-sided α = 0.05)."
)
LEVEL = 0.95  # every interval and verdict of the report
P_FLOOR = 1e-12  # p-values below this are reported as this
BORDER = 0.0005  # half the last digit shown: a bound this close to its threshold is called borderline


def _as_scores(v: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """A 1-D float array of per-sample scores in [0, 1]: 0/1 correctness, or its mean over several models
    (a pruning curve's steps, harness/report/claims.py)."""
    a = np.asarray(v, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D vector of per-sample scores, got shape {a.shape}")
    if a.size and not ((a >= 0) & (a <= 1)).all():
        raise ValueError(f"{what} must hold per-sample scores in [0, 1] (0/1 correctness or its mean)")
    return a


@dataclass(frozen=True)
class Paired:
    """One paired comparison 'better > worse': Δ and the two variance components of its mean (module
    docstring). Intervals, verdicts and p-values follow from these, at any level and against any threshold."""

    delta: float
    seed_var: float  # A: the seeds' part of Var(Δ), S − 1 degrees of freedom (0 with one seed)
    sample_var: float  # B: the test samples' part, n − 1 degrees of freedom
    n_samples: int
    n_seeds: int
    noise_var: float = 0.0  # MS_residual / (S n): the variance that pure noise alone would leave

    @property
    def se(self) -> float:
        """√(A + B), never below pure noise: seeds that agree by chance must not make Δ look exact."""
        return float(np.sqrt(max(self.seed_var + self.sample_var, self.noise_var)))

    def quantile(self, level: float = LEVEL) -> float:
        """Cochran–Cox: the two parts' two-sided t quantiles at `level`, weighted by their variances."""
        tail = (1 - level) / 2
        total = self.se**2
        t_samples = float(st.t.isf(tail, self.n_samples - 1))
        if total == 0 or self.n_seeds < 2:
            return t_samples
        t_seeds = float(st.t.isf(tail, self.n_seeds - 1))
        return (t_seeds * self.seed_var + t_samples * (total - self.seed_var)) / total

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        half = self.quantile(level) * self.se
        return self.delta - half, self.delta + half

    @property
    def low(self) -> float:
        return self.interval()[0]

    @property
    def high(self) -> float:
        return self.interval()[1]

    @property
    def mde(self) -> float:
        """The Δ this comparison detects with 80% power at two-sided α = 0.05."""
        return (self.quantile(LEVEL) + self.quantile(0.6)) * self.se  # 0.6 two-sided = the 80% one-sided

    def verdict(self, threshold: float = 0.0) -> str:
        """'reproduced' when the whole interval lies above `threshold`, 'not reproduced' below it."""
        low, high = self.interval()
        return "reproduced" if low > threshold else "not reproduced" if high < threshold else "inconclusive"

    def borderline(self, threshold: float = 0.0) -> bool:
        """A bound within BORDER of `threshold`: the verdict turns on the last digit shown."""
        return min(abs(b - threshold) for b in self.interval()) < BORDER

    def p_value(self, threshold: float = 0.0) -> float:
        """Two-sided p of Δ = `threshold`: 1 − the level of the widest interval that excludes it (so p <
        1 − LEVEL exactly when `verdict` is decided)."""
        gap = abs(self.delta - threshold)
        if gap == 0:
            return 1.0
        if self.se == 0:
            return 0.0
        reach = lambda p: self.quantile(1 - p) * self.se - gap  # noqa: E731 (falls as p grows)
        if reach(P_FLOOR) <= 0:  # smaller than any family needs: Holm multiplies by at most its size
            return P_FLOOR
        return float(optimize.brentq(reach, P_FLOOR, 1.0, xtol=1e-15, rtol=1e-10))


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


def _mean_squares(d: np.ndarray) -> tuple[float, float, float]:
    """Seeds', samples' and residual mean squares of the seeds × samples layout (no replication)."""
    n_seeds, n = d.shape
    grand, seeds, samples = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_samples = n_seeds * float(((samples - grand) ** 2).sum()) / (n - 1)
    if n_seeds < 2:
        return 0.0, ms_samples, 0.0
    ms_seeds = n * float(((seeds - grand) ** 2).sum()) / (n_seeds - 1)
    residual = d - seeds[:, None] - samples[None, :] + grand
    return ms_seeds, ms_samples, float((residual**2).sum()) / ((n_seeds - 1) * (n - 1))


def paired_test(better: Sequence[np.ndarray], worse: Sequence[np.ndarray]) -> Paired:
    """The paired comparison of Δ = accuracy(better) − accuracy(worse) over shared samples and paired seeds
    (module docstring); `better[s]` and `worse[s]` are seed s's per-sample scores on the same samples."""
    d = _differences(better, worse)
    n_seeds, n = d.shape
    if n < 2:
        raise ValueError(f"a paired comparison needs at least 2 test samples, got {n}")
    ms_seeds, ms_samples, ms_residual = _mean_squares(d)
    if n_seeds < 2:  # one seed: the paired t over samples
        seed_var, sample_var = 0.0, ms_samples / n
    else:
        seed_var = ms_seeds / (n_seeds * n)
        sample_var = max(ms_samples - ms_residual, 0.0) / (n_seeds * n)
    noise = ms_residual / (n_seeds * n) if n_seeds > 1 else 0.0
    return Paired(float(d.mean()), seed_var, sample_var, n, n_seeds, noise)


def combine(verdicts: Sequence[str]) -> str:
    """A claim made of several comparisons holds only if all do; one going significantly the other way
    refutes it; anything else is inconclusive (the rule of harness/report/claims.py)."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "inconclusive"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the family-wise error over them stays at
    most α when each is read against α. Why Holm: it holds under any dependence between the comparisons
    (they share runs and samples) and is uniformly more powerful than Bonferroni."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def adjusted_verdict(p: Paired, adjusted_p: float, threshold: float = 0.0) -> str:
    """The verdict of `p` read at its family-adjusted p-value."""
    if adjusted_p >= 1 - LEVEL:
        return "inconclusive"
    return "reproduced" if p.delta > threshold else "not reproduced"
