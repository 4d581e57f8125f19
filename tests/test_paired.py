"""The paired interval and per-sample records (harness/report/paired.py), checked against known answers and
by simulating the committed design."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from scipy import stats as st

from harness.report.paired import TEST_DESCRIPTION, Paired, combine, holm, paired_test
from harness.results import pack, unpack


def _pairs(rng: np.random.Generator, n: int, p11: float, p10: float, p01: float) -> tuple[np.ndarray, ...]:
    """n correlated (better, worse) outcomes drawn from a known joint law, so the population Δ = p10 − p01."""
    u = rng.random(n)
    better = u < p11 + p10
    worse = (u < p11) | ((u >= p11 + p10) & (u < p11 + p10 + p01))
    return better, worse


def _shift(
    rng: np.random.Generator, n_seeds: int, n: int
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """`better` flips exactly 10% of each seed's wrong answers of `worse` to right; returns the true Δ."""
    better, worse, gains = [], [], []
    for _ in range(n_seeds):
        w = rng.random(n) < 0.7
        wrong = np.flatnonzero(~w)
        flip = rng.choice(wrong, size=len(wrong) // 10, replace=False)
        b = w.copy()
        b[flip] = True
        better.append(b)
        worse.append(w)
        gains.append(len(flip) / n)
    return better, worse, float(np.mean(gains))


# --- pack / unpack -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 2500])
def test_pack_round_trip(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(5):
        v = rng.random(n) < 0.5
        text = pack(v)
        assert text.isascii() and len(text) == 4 * math.ceil(math.ceil(n / 8) / 3)
        out = unpack(text, n)
        assert out.dtype == bool and out.shape == (n,)
        np.testing.assert_array_equal(out, v)
    assert np.array_equal(unpack(pack([1] * n), n), np.ones(n, bool))
    assert np.array_equal(unpack(pack(list(np.zeros(n, int))), n), np.zeros(n, bool))


def test_pack_refuses_non_binary() -> None:
    with pytest.raises(ValueError, match="0/1"):
        pack(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="1-D"):
        pack(np.zeros((2, 2), bool))


@pytest.mark.parametrize(
    ("text", "n", "match"),
    [
        ("not base64!", 8, "base64"),
        ("AAA", 8, "base64"),  # missing padding
        ("é", 8, "base64"),
        (pack([1, 0, 1]), 9, "bytes"),  # 1 byte recorded, 2 needed
        (pack([1] * 16), 8, "bytes"),
        (base64.b64encode(b"\xff").decode(), 3, "past sample"),  # bits set beyond n
    ],
)
def test_unpack_rejects_bad_records(text: str, n: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        unpack(text, n)


def test_unpack_rejects_negative_n() -> None:
    with pytest.raises(ValueError, match="n must be"):
        unpack("", -1)


# --- paired_test -------------------------------------------------------------------------------------


def test_identical_vectors_are_inconclusive_with_zero_mde() -> None:
    rng = np.random.default_rng(0)
    v = [rng.random(1000) < 0.8 for _ in range(3)]
    r = paired_test(v, [x.copy() for x in v])
    assert r == Paired(delta=0.0, seed_var=0.0, sample_var=0.0, n_samples=1000, n_seeds=3)
    assert r.interval() == (0.0, 0.0) and r.mde == 0.0 and r.verdict() == "inconclusive"
    assert r.p_value() == 1.0


def test_known_shift_is_detected_and_reversed() -> None:
    better, worse, truth = _shift(np.random.default_rng(1), n_seeds=3, n=2000)
    r = paired_test(better, worse)
    assert r.delta == pytest.approx(truth, abs=1e-12)  # Δ is the exact mean of per-seed differences
    assert 0.025 < truth < 0.035
    assert r.low < r.delta < r.high
    assert r.verdict() == "reproduced" and r.p_value() < 0.05
    assert (r.n_samples, r.n_seeds) == (2000, 3)
    rev = paired_test(worse, better)
    assert rev.delta == pytest.approx(-truth, abs=1e-12)
    assert rev.high < 0 and rev.verdict() == "not reproduced"
    assert rev.p_value() == pytest.approx(r.p_value())


def test_one_seed_is_the_paired_t_interval() -> None:
    """One seed: Δ ± t_{n−1} × SD(d)/√n, the textbook paired interval, and the MDE (t_0.975 + t_0.8) × SE."""
    rng = np.random.default_rng(5)
    b, w = _pairs(rng, 800, 0.72, 0.08, 0.05)
    d = b.astype(float) - w.astype(float)
    se = d.std(ddof=1) / math.sqrt(len(d))
    r = paired_test([b], [w])
    t975, t80 = st.t.isf(0.025, len(d) - 1), st.t.isf(0.2, len(d) - 1)
    assert r.se == pytest.approx(se, rel=1e-12)
    assert r.interval() == pytest.approx((d.mean() - t975 * se, d.mean() + t975 * se), rel=1e-9)
    assert r.mde == pytest.approx((t975 + t80) * se, rel=1e-9)
    # the p-value is the level at which the interval touches 0
    assert r.p_value() == pytest.approx(2 * st.t.sf(abs(d.mean()) / se, len(d) - 1), rel=1e-6)


def test_identical_seeds_give_the_single_seed_standard_error() -> None:
    """Three seeds whose per-sample differences are identical carry the information of one: the interval
    equals the single seed's. A draw of samples made independently per seed would shrink it by √3."""
    rng = np.random.default_rng(6)
    b, w = _pairs(rng, 1500, 0.70, 0.10, 0.06)
    one = paired_test([b], [w])
    three = paired_test([b, b.copy(), b.copy()], [w, w.copy(), w.copy()])
    assert three.se == pytest.approx(one.se, rel=1e-12)
    assert three.interval() == pytest.approx(one.interval(), rel=1e-12)


def test_seed_disagreement_widens_the_interval_to_t_on_the_seeds() -> None:
    """Seed 0 gains 0.1, seed 1 loses 0.1 on the same samples: Δ = 0, and the spread between the seeds,
    read with t on 1 degree of freedom, makes the interval reach far past ±0.1."""
    n = 2000
    base = np.zeros(n, bool)
    up = base.copy()
    up[: n // 10] = True
    r = paired_test([up, base], [base, up])
    assert r.delta == 0.0
    assert r.low < -0.1 and r.high > 0.1
    assert r.verdict() == "inconclusive"


def _design(rng: np.random.Generator, seeds: int, n: int, seed_sd: float, delta: float):
    """One draw of the committed design: n shared test samples, each with its own mean difference (most
    samples tie, some favour one model), a per-seed shift of SD `seed_sd`, 0/1 outcomes. E[Δ] = `delta`."""
    effect = rng.choice([-0.4, 0.0, 0.4], size=n, p=[0.1, 0.75, 0.15]) - 0.02 + delta
    mean = effect[None, :] + rng.normal(0, seed_sd, seeds)[:, None]
    up, down = np.maximum(mean, 0) + 0.05, np.maximum(-mean, 0) + 0.05
    u = rng.random((seeds, n))
    gain, loss = u < up, (u >= up) & (u < up + down)
    both = rng.random((seeds, n)) < 0.75  # ties: both right or both wrong
    return list(gain | (both & ~loss)), list(loss | (both & ~gain))


@pytest.mark.parametrize("seeds", [3, 5])
def test_coverage_holds_its_nominal_level(seeds: int) -> None:
    """The 95% interval covers the true Δ = 0.02 in 92–98% of 600 simulated experiments of the committed
    design, whether seeds add no variance or dominate it (seed SD 0 to 0.03)."""
    rng = np.random.default_rng(seeds)
    for seed_sd in (0.0, 0.006, 0.012, 0.02, 0.03):
        covered = 0
        for _ in range(600):
            low, high = paired_test(*_design(rng, seeds, 2500, seed_sd, 0.02)).interval()
            covered += low <= 0.02 <= high
        assert 0.92 <= covered / 600 <= 0.98, (seed_sd, covered / 600)


def test_accepts_lists_of_ints() -> None:
    r = paired_test([[1, 1, 0, 1]], [[0, 1, 0, 1]])
    assert r.delta == pytest.approx(0.25) and r.n_samples == 4 and r.n_seeds == 1


def test_borderline_is_a_bound_at_the_threshold() -> None:
    r = Paired(
        delta=0.02, seed_var=0.0, sample_var=(0.02 / st.t.isf(0.025, 999)) ** 2, n_samples=1000, n_seeds=1
    )
    assert r.low == pytest.approx(0.0, abs=1e-12) and r.borderline()
    assert not r.borderline(-0.02) and not paired_test([[1, 0, 1, 1]], [[0, 0, 1, 1]]).borderline(0.9)


@pytest.mark.parametrize(
    ("better", "worse", "match"),
    [
        ([np.ones(5, bool)], [np.ones(5, bool)] * 2, "seed counts differ"),
        ([], [], "no seeds"),
        ([np.ones(5, bool)], [np.ones(6, bool)], "differ in length"),
        ([np.ones(5, bool), np.ones(4, bool)], [np.ones(5, bool)] * 2, "differ in length"),
        ([np.ones(0, bool)], [np.ones(0, bool)], "empty"),
        ([np.array([0, 2])], [np.array([0, 1])], "0/1"),
    ],
)
def test_input_validation(better: list, worse: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_test(better, worse)


def test_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2 test samples"):
        paired_test([np.ones(1, bool)], [np.zeros(1, bool)])


# --- combine and report text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["reproduced", "reproduced"], "reproduced"),
        (["reproduced", "inconclusive"], "inconclusive"),
        (["reproduced", "not reproduced"], "not reproduced"),
        (["inconclusive", "not reproduced"], "not reproduced"),
        ([], "inconclusive"),
        (("reproduced",), "reproduced"),
    ],
)
def test_combine(verdicts: list[str], expected: str) -> None:
    assert combine(verdicts) == expected


def test_description_names_the_test() -> None:
    assert (
        "Cochran" in TEST_DESCRIPTION and "80%" in TEST_DESCRIPTION and "paired" in TEST_DESCRIPTION.lower()
    )


def test_holm_known_answer() -> None:
    """Sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, made monotone: 0.04, 0.09, 0.09, 0.2."""
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []


def test_seeds_that_agree_by_chance_never_make_delta_exact() -> None:
    """Three seeds lose exactly 0.02 each, from different samples: seed means agree and samples share
    nothing, so A + B is about 0; the interval still keeps what pure noise leaves (MS_residual / (S n)),
    read with the samples' t as three seeds' worth of independent answers."""
    rng = np.random.default_rng(8)
    n, better, worse = 1000, [], []
    for _ in range(3):
        order = rng.permutation(n)
        b, w = np.zeros(n, bool), np.zeros(n, bool)
        b[order[:100]] = True  # 100 wins
        w[order[100:220]] = True  # 120 losses: Δ = −0.02
        b[order[220:700]] = w[order[220:700]] = True  # ties, both right
        better.append(b)
        worse.append(w)
    r = paired_test(better, worse)
    assert r.delta == pytest.approx(-0.02) and r.se > 0
    assert r.seed_var + r.sample_var < r.noise_var  # the unbiased parts alone would claim more than noise
    assert r.se == pytest.approx(math.sqrt(r.noise_var))
    assert r.high - r.low == pytest.approx(2 * st.t.isf(0.025, n - 1) * r.se, rel=1e-6)
