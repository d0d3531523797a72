"""Tests for lowres_jax.eval.stats against scipy.stats."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as sps

from lowres_jax.eval.stats import (
    MeanCI,
    format_mean_ci,
    mean_ci,
    paired_difference,
    regularized_incomplete_beta,
    student_t_sf_two_sided,
    t_critical,
)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_critical_matches_scipy(confidence: float) -> None:
    for df in range(1, 201):
        expected = sps.t.ppf(0.5 + confidence / 2.0, df)
        assert abs(t_critical(df, confidence) - expected) < 1e-8, df


def test_t_critical_known_values() -> None:
    # Textbook table values.
    assert t_critical(1) == pytest.approx(12.706204736, abs=1e-8)
    assert t_critical(4) == pytest.approx(2.776445105, abs=1e-8)
    assert t_critical(30) == pytest.approx(2.042272456, abs=1e-8)


def test_regularized_incomplete_beta_matches_scipy() -> None:
    from scipy.special import betainc

    for a, b in [(0.5, 0.5), (2.0, 3.0), (50.0, 0.5), (0.7, 40.0)]:
        for x in [0.0, 1e-6, 0.1, 0.5, 0.9, 0.999, 1.0]:
            assert regularized_incomplete_beta(x, a, b) == pytest.approx(
                betainc(a, b, x), rel=1e-10, abs=1e-15
            )


@pytest.mark.parametrize("df", [1, 2, 5, 29, 150])
def test_two_sided_sf_matches_scipy(df: int) -> None:
    for t in [0.0, 0.3, -1.0, 2.1, -4.5, 25.0]:
        expected = 2.0 * sps.t.sf(abs(t), df)
        assert student_t_sf_two_sided(t, df) == pytest.approx(expected, rel=1e-10)
    assert student_t_sf_two_sided(math.inf, df) == 0.0


def test_mean_ci_matches_scipy_interval() -> None:
    rng = np.random.default_rng(0)
    for n in [2, 3, 5, 10]:
        values = rng.normal(0.9, 0.02, size=n)
        ci = mean_ci(values)
        low, high = sps.t.interval(0.95, n - 1, loc=values.mean(), scale=sps.sem(values))
        assert ci.n == n
        assert ci.mean == pytest.approx(values.mean(), abs=1e-15)
        assert ci.low == pytest.approx(low, abs=1e-12)
        assert ci.high == pytest.approx(high, abs=1e-12)
        assert ci.half_width == pytest.approx((high - low) / 2.0, abs=1e-12)


def test_mean_ci_other_confidence() -> None:
    values = [0.81, 0.84, 0.79, 0.86]
    ci = mean_ci(values, confidence=0.99)
    low, high = sps.t.interval(0.99, 3, loc=np.mean(values), scale=sps.sem(values))
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)


def test_mean_ci_single_value_has_nan_width() -> None:
    ci = mean_ci([0.5])
    assert ci.mean == 0.5 and ci.n == 1
    assert math.isnan(ci.half_width) and math.isnan(ci.low) and math.isnan(ci.high)


def test_mean_ci_empty_raises() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])


def test_mean_ci_rejects_nan() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([0.1, float("nan")])


def test_mean_ci_is_frozen() -> None:
    ci = mean_ci([1.0, 2.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.mean = 3.0  # type: ignore[misc]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paired_difference_matches_ttest_rel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3 + seed * 2
    shared = rng.normal(0.85, 0.03, size=n)  # seed effect common to both methods
    a = shared + rng.normal(0.01, 0.005, size=n)
    b = shared + rng.normal(0.0, 0.005, size=n)
    result = paired_difference(a, b)
    reference = sps.ttest_rel(a, b)
    diffs = a - b
    low, high = sps.t.interval(0.95, n - 1, loc=diffs.mean(), scale=sps.sem(diffs))
    assert result.n == n
    assert result.mean_diff == pytest.approx(diffs.mean(), abs=1e-15)
    assert result.t_stat == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    assert (result.low, result.high) == pytest.approx((low, high), abs=1e-12)
    assert result.significant == (reference.pvalue < 0.05)
    # Significance and "interval excludes zero" are the same decision.
    assert result.significant == (result.low > 0 or result.high < 0)


def test_paired_difference_significance_flips_with_evidence() -> None:
    clearly_better = paired_difference([0.90, 0.91, 0.92, 0.93], [0.80, 0.80, 0.83, 0.82])
    assert clearly_better.significant and clearly_better.p_value < 0.01
    noise = paired_difference([0.90, 0.80, 0.91, 0.79], [0.85, 0.86, 0.84, 0.85])
    assert not noise.significant and noise.p_value > 0.5


def test_paired_difference_alpha_follows_confidence() -> None:
    # Differences 0.02, 0.03, -0.005, 0.02, 0.01 give p ~= 0.064 (df = 4):
    # not significant at 95% confidence, significant at 90%.
    b = [0.80, 0.81, 0.82, 0.83, 0.84]
    a = [0.82, 0.84, 0.815, 0.85, 0.85]
    at_95 = paired_difference(a, b, confidence=0.95)
    at_90 = paired_difference(a, b, confidence=0.90)
    assert at_95.p_value == pytest.approx(0.06429011098598782, rel=1e-6)
    assert not at_95.significant and at_95.low < 0.0 < at_95.high
    assert at_90.significant and at_90.low > 0.0


def test_paired_difference_length_mismatch_names_lengths() -> None:
    with pytest.raises(ValueError, match=r"len\(a\)=3.*len\(b\)=2"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])


def test_paired_difference_constant_nonzero_difference() -> None:
    result = paired_difference([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    assert result.mean_diff == 2.0
    assert result.t_stat == math.inf
    assert result.p_value == 0.0
    assert result.significant
    negative = paired_difference([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])
    assert negative.t_stat == -math.inf and negative.p_value == 0.0


def test_paired_difference_all_zero_difference() -> None:
    result = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert result.t_stat == 0.0
    assert result.p_value == 1.0
    assert not result.significant


def test_paired_difference_empty_raises() -> None:
    with pytest.raises(ValueError):
        paired_difference([], [])


def test_format_mean_ci() -> None:
    ci = MeanCI(mean=0.934, half_width=0.012, n=5, low=0.922, high=0.946)
    assert format_mean_ci(ci) == "93.4 ± 1.2"
    assert format_mean_ci(ci, scale=1.0, digits=3) == "0.934 ± 0.012"
    assert format_mean_ci(mean_ci([0.934])) == "93.4"
