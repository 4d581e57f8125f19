"""Paired bootstrap and per-sample records (harness/report/paired.py), checked against known answers."""

from __future__ import annotations

import base64
import math
from statistics import NormalDist

import numpy as np
import pytest

from harness.report.paired import TEST_DESCRIPTION, Paired, combine, pack, paired_bootstrap, unpack

Z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)


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


# --- paired_bootstrap --------------------------------------------------------------------------------


def test_identical_vectors_are_inconclusive_with_zero_mde() -> None:
    rng = np.random.default_rng(0)
    v = [rng.random(1000) < 0.8 for _ in range(3)]
    r = paired_bootstrap(v, [x.copy() for x in v])
    assert r == Paired(
        delta=0.0, low=0.0, high=0.0, mde=0.0, n_samples=1000, n_seeds=3, verdict="inconclusive"
    )
    assert r.low <= 0 <= r.high


def test_known_shift_is_detected_and_reversed() -> None:
    better, worse, truth = _shift(np.random.default_rng(1), n_seeds=3, n=2000)
    r = paired_bootstrap(better, worse)
    assert r.delta == pytest.approx(truth, abs=1e-12)  # Δ is the exact mean of per-seed differences
    assert 0.025 < truth < 0.035
    assert r.low < r.delta < r.high
    assert r.verdict == "reproduced"
    assert (r.n_samples, r.n_seeds) == (2000, 3)
    rev = paired_bootstrap(worse, better)
    assert rev.delta == pytest.approx(-truth, abs=1e-12)
    assert rev.high < 0 and rev.verdict == "not reproduced"


def test_deterministic_for_a_seed() -> None:
    better, worse, _ = _shift(np.random.default_rng(2), n_seeds=2, n=500)
    assert paired_bootstrap(better, worse, seed=7) == paired_bootstrap(better, worse, seed=7)
    assert paired_bootstrap(better, worse, seed=7) != paired_bootstrap(better, worse, seed=8)


def test_chunking_matches_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicates drawn in several chunks follow the same design (same Δ*, up to the random stream)."""
    import harness.report.paired as paired

    better, worse, _ = _shift(np.random.default_rng(3), n_seeds=3, n=400)
    whole = paired_bootstrap(better, worse, n_boot=3000)
    monkeypatch.setattr(paired, "_CHUNK", 400 * 7)  # 7 replicates per chunk, last chunk partial
    chunked = paired_bootstrap(better, worse, n_boot=3000)
    assert chunked.delta == whole.delta
    assert chunked.mde == pytest.approx(whole.mde, rel=0.1)
    assert chunked.low == pytest.approx(whole.low, abs=0.005)
    assert chunked.high == pytest.approx(whole.high, abs=0.005)


def test_ci_covers_population_difference() -> None:
    """1 seed, 1000 iid samples from a known joint law: P(better)=0.80, P(worse)=0.77, correlated pairs.
    Resampling samples targets the population Δ = 0.03; a 95% interval should cover it ≥ 90% of the time."""
    rng = np.random.default_rng(4)
    p11, p10, p01 = 0.72, 0.08, 0.05  # P(better)=0.80, P(worse)=0.77, P(both right)=0.72
    truth = p10 - p01
    cases, covered = 250, 0
    for i in range(cases):
        b, w = _pairs(rng, 1000, p11, p10, p01)
        r = paired_bootstrap([b], [w], n_boot=400, seed=i)
        covered += r.low <= truth <= r.high
    assert covered / cases >= 0.90


def test_mde_matches_standard_error_and_shrinks_with_samples() -> None:
    """1 seed: bootstrap SE of a mean = plug-in SD of the differences over √n, so MDE ≈ 2.80 × that."""
    rng = np.random.default_rng(5)
    mdes = {}
    for n in (500, 2000):
        b, w = _pairs(rng, n, 0.72, 0.08, 0.05)
        r = paired_bootstrap([b], [w])
        d = b.astype(float) - w.astype(float)
        assert r.mde > 0
        assert r.mde == pytest.approx(Z * d.std() / math.sqrt(n), rel=0.1)
        mdes[n] = r.mde
    assert mdes[2000] < 0.7 * mdes[500]  # ≈ halves with 4× the samples


def test_seeds_are_resampled() -> None:
    """Seed 0 gains 0.1, seed 1 loses 0.1 on the same samples: Δ = 0, but seed resampling gives replicates
    near ±0.1 (both draws the same seed, 1/4 each), so the interval must reach out to about ±0.1."""
    n = 2000
    base = np.zeros(n, bool)
    up = base.copy()
    up[: n // 10] = True
    r = paired_bootstrap([up, base], [base, up])
    assert r.delta == 0.0
    assert r.low < -0.08 and r.high > 0.08
    assert r.verdict == "inconclusive"


def test_accepts_lists_of_ints() -> None:
    r = paired_bootstrap([[1, 1, 0, 1]], [[0, 1, 0, 1]], n_boot=50)
    assert r.delta == pytest.approx(0.25) and r.n_samples == 4 and r.n_seeds == 1


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
        paired_bootstrap(better, worse)


def test_n_boot_validation() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap([np.ones(3, bool)], [np.zeros(3, bool)], n_boot=1)


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
        "bootstrap" in TEST_DESCRIPTION and "80%" in TEST_DESCRIPTION and "paired" in TEST_DESCRIPTION.lower()
    )
