"""Statistics for result tables with honest error bars.

Seeds are few (typically 3-10), so intervals use the Student-t distribution
rather than a normal approximation. The t distribution is implemented here by
hand because scipy is not a runtime dependency of this package; the tests check
it against scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Lentz continued-fraction settings. A relative step below machine epsilon
# means the fraction has converged to double precision; the iteration cap only
# guards against a bug, since convergence takes O(sqrt(max(a, b))) terms.
_CF_EPS = 1e-16
_CF_TINY = 1e-300
_CF_MAX_ITER = 100_000


@dataclass(frozen=True)
class MeanCI:
    """Sample mean with a two-sided Student-t confidence interval (mean +- half_width)."""

    mean: float
    half_width: float
    n: int
    low: float
    high: float


@dataclass(frozen=True)
class PairedDiff:
    """Paired comparison of a - b: mean difference, its t interval, and a paired t-test."""

    mean_diff: float
    half_width: float
    low: float
    high: float
    n: int
    t_stat: float
    p_value: float
    significant: bool


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (Numerical Recipes ``betacf``).

    Evaluated with the modified Lentz algorithm; converges quickly for
    x < (a + 1) / (a + b + 2), which the caller guarantees.
    """
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2 * m
        # Even step of the recurrence.
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _CF_TINY else _CF_TINY
        h *= d * c
        # Odd step of the recurrence.
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _CF_TINY else _CF_TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            return h
    raise RuntimeError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1.

    Uses the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) to always evaluate the
    continued fraction on the side where it converges fast.
    """
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x == 0.0 or x == 1.0:
        return x
    # Prefactor x^a (1-x)^b / (a B(a, b)), in log space to avoid overflow for large a, b.
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_sf_two_sided(t: float, df: int) -> float:
    """Two-sided p-value P(|T| >= |t|) for a Student-t variable with ``df`` degrees of freedom.

    Uses P(|T| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2).
    """
    _check_df(df)
    if math.isnan(t):
        return float("nan")
    if math.isinf(t):
        return 0.0
    x = df / (df + t * t)
    return regularized_incomplete_beta(x, 0.5 * df, 0.5)


def _student_t_pdf(t: float, df: int) -> float:
    """Student-t density; the derivative Newton's method needs when inverting the tail probability."""
    log_norm = math.lgamma(0.5 * (df + 1)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - 0.5 * (df + 1) * math.log1p(t * t / df))


def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value: the t with P(|T| <= t) = confidence.

    Equals scipy.stats.t.ppf((1 + confidence) / 2, df). Found by Newton's
    method on the two-sided tail probability, safeguarded by a bisection
    bracket so it cannot diverge in the heavy tails of small df.
    """
    _check_df(df)
    _check_confidence(confidence)
    alpha = 1.0 - confidence

    def excess(t: float) -> float:
        # Decreasing in t; its root is the critical value.
        return student_t_sf_two_sided(t, df) - alpha

    low, high = 0.0, 1.0
    while excess(high) > 0.0:
        low, high = high, 2.0 * high
    t = 0.5 * (low + high)
    for _ in range(200):
        value = excess(t)
        if value == 0.0:
            return t
        if value > 0.0:
            low = t
        else:
            high = t
        # d/dt of the two-sided tail probability is -2 * pdf(t).
        newton = t + value / (2.0 * _student_t_pdf(t, df))
        next_t = newton if low < newton < high else 0.5 * (low + high)
        if abs(next_t - t) <= 1e-15 * max(1.0, abs(t)) or high - low <= 1e-15 * high:
            return next_t
        t = next_t
    return t


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean and two-sided Student-t confidence interval of ``values`` (e.g. one metric across seeds).

    With a single value the spread is unknown, so the half-width is NaN rather
    than a misleading 0.
    """
    _check_confidence(confidence)
    array = _as_finite_array(values, "values")
    n = array.size
    if n == 0:
        raise ValueError("mean_ci needs at least one value, got an empty sequence")
    mean = float(array.mean())
    if n == 1:
        return MeanCI(mean=mean, half_width=float("nan"), n=1, low=float("nan"), high=float("nan"))
    half_width = t_critical(n - 1, confidence) * _standard_error(array)
    return MeanCI(mean=mean, half_width=half_width, n=n, low=mean - half_width, high=mean + half_width)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDiff:
    """Paired t-test and confidence interval for a - b, pairing entries by position (e.g. by seed).

    Pairing removes seed-to-seed variance shared by both methods, which makes
    the comparison far more sensitive than comparing two independent CIs.
    ``significant`` means p < 1 - confidence, i.e. the interval excludes 0.
    A zero-variance difference gives an exact answer instead of 0/0: p = 0 and
    t = +-inf if the (constant) difference is nonzero, p = 1 and t = 0 if it is 0.
    """
    _check_confidence(confidence)
    first = _as_finite_array(a, "a")
    second = _as_finite_array(b, "b")
    if first.size != second.size:
        raise ValueError(f"paired_difference needs equal lengths, got len(a)={first.size} and len(b)={second.size}")
    n = first.size
    if n == 0:
        raise ValueError("paired_difference needs at least one pair, got empty sequences")
    diffs = first - second
    mean_diff = float(diffs.mean())
    if n == 1:
        nan = float("nan")
        return PairedDiff(mean_diff, nan, nan, nan, 1, nan, nan, False)
    alpha = 1.0 - confidence
    if np.all(diffs == diffs[0]):
        return _constant_difference(mean_diff, n)
    standard_error = _standard_error(diffs)
    t_stat = mean_diff / standard_error
    p_value = student_t_sf_two_sided(t_stat, n - 1)
    half_width = t_critical(n - 1, confidence) * standard_error
    return PairedDiff(
        mean_diff=mean_diff,
        half_width=half_width,
        low=mean_diff - half_width,
        high=mean_diff + half_width,
        n=n,
        t_stat=t_stat,
        p_value=p_value,
        significant=bool(p_value < alpha),
    )


def format_mean_ci(ci: MeanCI, scale: float = 100.0, digits: int = 1) -> str:
    """Render as "93.4 ± 1.2" (scaled, e.g. fractions to percent); just "93.4" when there is no interval."""
    mean_text = f"{ci.mean * scale:.{digits}f}"
    if ci.n < 2 or math.isnan(ci.half_width):
        return mean_text
    return f"{mean_text} ± {ci.half_width * scale:.{digits}f}"


def _constant_difference(mean_diff: float, n: int) -> PairedDiff:
    """Paired result when every difference is identical, so the standard error is exactly 0."""
    if mean_diff == 0.0:
        return PairedDiff(0.0, 0.0, 0.0, 0.0, n, 0.0, 1.0, False)
    t_stat = math.copysign(math.inf, mean_diff)
    return PairedDiff(mean_diff, 0.0, mean_diff, mean_diff, n, t_stat, 0.0, True)


def _standard_error(values: np.ndarray) -> float:
    """Standard error of the mean with the unbiased (ddof=1) sample standard deviation."""
    return float(values.std(ddof=1) / math.sqrt(values.size))


def _as_finite_array(values: Sequence[float], name: str) -> np.ndarray:
    """1-D float array; NaN/inf are rejected because they would silently poison the mean and interval."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values: {array.tolist()}")
    return array


def _check_df(df: int) -> None:
    """Degrees of freedom must be positive; 0 would mean no spread estimate at all."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")


def _check_confidence(confidence: float) -> None:
    """Confidence is a probability strictly between 0 and 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly in (0, 1), got {confidence}")
