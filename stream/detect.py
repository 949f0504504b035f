"""Scores and learned thresholds: how far a window is from its same-slot baseline, and how far is too far.

Distribution signals are scored with the Jensen-Shannon divergence (base 2, 0..1) between the
window's histogram and the pooled baseline. Under "nothing changed", ``8 ln2 JSD / (1/n + 1/m)``
is close to chi-square with ``bins - 1`` degrees of freedom, which gives the sample-size correction.
Real windows of the same slot differ by more than sampling noise, so each window is scored against
its slot before it is folded in (stream.baseline) to learn an over-dispersion factor. As that
factor's excess over pure sampling noise is estimated from k windows, the threshold uses the F
distribution with Satterthwaite denominator degrees of freedom rather than the chi-square: few or
uneven baseline windows mean a wider threshold. Nobody sets a bound by hand.

>>> rng = np.random.default_rng(7)
>>> base = np.stack([np.bincount(rng.integers(0, 10, 500), minlength=10) for _ in range(8)])
>>> same = np.bincount(rng.integers(0, 10, 500), minlength=10)
>>> shifted = np.bincount(np.clip(rng.integers(0, 10, 500) + 3, 0, 9), minlength=10)
>>> mean = base.mean(axis=0)
>>> d_same, d_shift = (distribution_test(h, mean, 8, 1.0, 8, 1e-4) for h in (same, shifted))
>>> d_same.breach, d_shift.breach
(False, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy import stats

_LN2 = math.log(2.0)
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Verdict:
    """A score, its learned threshold, whether the score breaches it, and which test said so.

    ``z`` is the window's signed, standardised residual against its baseline (when the test has
    one): the input of the online change detectors.
    """

    score: float
    threshold: float
    breach: bool
    detail: str = ""
    test: str = "js_divergence"
    z: float | None = None

    @property
    def ratio(self) -> float:
        return self.score / self.threshold if self.threshold > 0 else 0.0


def js_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon divergence in bits between two count vectors (normalised here).

    >>> js_divergence([1, 0], [0, 1]), js_divergence([3, 1], [6, 2])
    (1.0, 0.0)
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        return 0.0
    a = a / sa
    b = b / sb
    m = 0.5 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = np.where(a > 0, a * np.log2(a / m), 0.0).sum()
        kb = np.where(b > 0, b * np.log2(b / m), 0.0).sum()
    return float(max(0.0, 0.5 * (ka + kb)))


@lru_cache(maxsize=4096)
def f_quantile(p: float, dfn: int, dfd: int) -> float:
    """Quantile of the F distribution (cached: the same few (alpha, df) pairs recur).

    >>> round(f_quantile(0.95, 10, 80), 2)
    1.95
    """
    return float(stats.f.ppf(p, dfn, dfd))


@lru_cache(maxsize=4096)
def chi2_quantile(p: float, df: int) -> float:
    """Quantile of the chi-square distribution."""
    return float(stats.chi2.ppf(p, df))


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t."""
    return float(stats.t.ppf(p, df))


def two_sided_quantile(alpha: float, df: float) -> float:
    """Two-sided critical value: Student's t with ``df`` degrees of freedom (normal beyond 1000)."""
    if df > 1000:
        return _NORMAL.inv_cdf(1.0 - alpha / 2.0)
    return t_quantile(1.0 - alpha / 2.0, max(int(df), 1))


def _null_scale(n: float, m: float) -> float:
    """JSD (bits) per unit of chi-square for samples of size n and m."""
    return (1.0 / n + 1.0 / m) / (8.0 * _LN2)


def distribution_test(
    current: npt.ArrayLike, mean: npt.ArrayLike, windows: int, dispersion: float, ratios: int, alpha: float
) -> Verdict:
    """Compare a window's histogram with its baseline: the per-window mean histogram of ``windows``
    windows, whose own windows strayed ``dispersion`` times as far as sampling noise predicts
    (learned from ``ratios`` windows). ``alpha`` is the per-test false-alarm rate.
    """
    cur = np.asarray(current, dtype=np.float64)
    pooled = np.asarray(mean, dtype=np.float64) * windows
    n, m = float(cur.sum()), float(pooled.sum())
    if n <= 0 or m <= 0:
        return Verdict(0.0, float("inf"), False, "empty", "js_divergence")
    support = int(((pooled + cur) > 0).sum())
    df = max(support - 1, 1)
    phi = max(1.0, dispersion) if ratios else 1.0
    score = js_divergence(cur, pooled)
    # Sampling noise (dispersion 1) is known; only the excess over it is estimated from the
    # windows, so the denominator degrees of freedom grow as the excess shrinks (Satterthwaite).
    excess = phi - 1.0
    dfd = max(ratios, 1) * df * (phi / excess) ** 2 if excess > 1e-9 else float("inf")
    if dfd > 1e5:
        critical = chi2_quantile(1.0 - alpha, df)
    else:
        critical = df * f_quantile(1.0 - alpha, df, max(int(dfd), 1))
    threshold = phi * critical * _null_scale(n, m)
    return Verdict(score, float(threshold), score > threshold, f"dispersion {phi:.2f}, df {df}", "js_divergence")


def mean_shift_test(
    n: float, total: float, total_sq: float, center: float, spread: float, sampling: float, within: float,
    windows: int, alpha: float,
) -> Verdict:
    """Has the window's mean moved, given how the baseline windows' means vary?

    The baseline is ``windows`` windows whose means average ``center`` with (population) variance
    ``spread``; ``within`` is their mean within-window variance and ``sampling`` their mean of
    within-window variance over count. The variance of the difference has a part known from
    sampling and a part estimated from the windows (the week-to-week spread beyond sampling);
    Welch-Satterthwaite degrees of freedom turn that into a t quantile, so a baseline that varies a
    lot, or has few windows, asks for more evidence.

    >>> import statistics
    >>> means = [0.30, 0.31, 0.29, 0.30, 0.305]
    >>> base = (statistics.fmean(means), statistics.pvariance(means), 0.04 / 500, 0.04, len(means))
    >>> mean_shift_test(500, 500 * 0.30, 500 * (0.09 + 0.04), *base, 1e-4).breach
    False
    >>> v = mean_shift_test(500, 500 * 0.36, 500 * (0.36**2 + 0.04), *base, 1e-4); v.breach, round(v.z, 1)
    (True, 6.0)
    """
    k = max(windows, 1)
    mean_cur = total / n
    within_cur = max(total_sq / n - mean_cur**2, 0.0) if n > 1 else within
    sample_spread = spread * k / (k - 1) if k > 1 else 0.0
    tau2 = max(sample_spread - sampling, 0.0)
    known = max(within_cur, within) / n + sampling / k
    estimated = tau2 * (1.0 + 1.0 / k)
    var_d = known + estimated
    if var_d <= 0:
        return Verdict(0.0, float("inf"), False, "no variance", "mean_shift", 0.0)
    z = (mean_cur - center) / math.sqrt(var_d)
    df = (var_d**2) / (estimated**2 / max(k - 1, 1)) if estimated > 0 else float("inf")
    crit = two_sided_quantile(alpha, df)
    return Verdict(abs(z), crit, abs(z) > crit, f"baseline mean {center:.4g}, df {min(df, 1e9):.0f}", "mean_shift", z)


def volume_test(count: float, log_center: float, log_spread: float, inv_count: float, windows: int, alpha: float) -> Verdict:
    """Compare a window's event count with its baseline windows' counts on a log scale.

    The baseline's log1p counts have mean ``log_center`` and (population) variance ``log_spread``;
    ``inv_count`` is their mean of 1/count. The score is the absolute log ratio to the baseline;
    the threshold is a two-sided quantile times a spread with two parts: Poisson noise (known from
    the counts) and the week-to-week variation beyond it (estimated from the windows, never taken
    below 5%). The t quantile's degrees of freedom follow Welch-Satterthwaite: few windows matter
    only as much as the estimated part of the spread does.

    >>> import statistics
    >>> logs = [math.log1p(c) for c in (980, 1010, 1005, 990)]
    >>> base = (statistics.fmean(logs), statistics.pvariance(logs), 1 / 1000, 4)
    >>> volume_test(1000, *base, 1e-4).breach, volume_test(200, *base, 1e-4).breach
    (False, True)
    """
    k = max(windows, 1)
    spread2 = log_spread * k / (k - 1) if k > 1 else 0.0
    poisson2 = 1.0 / max(math.expm1(log_center), 1.0)
    extra2 = max(spread2 - inv_count, 0.0)
    floor2 = 0.05**2
    known = poisson2 + (floor2 if extra2 < floor2 else 0.0)
    estimated = extra2 if extra2 >= floor2 else 0.0
    var = (known + estimated) * (1.0 + 1.0 / k)
    scale = math.sqrt(var)
    df = (known + estimated) ** 2 / (estimated**2 / max(k - 1, 1)) if estimated > 0 else float("inf")
    z = two_sided_quantile(alpha, df)
    residual = math.log1p(count) - log_center
    threshold = z * scale
    return Verdict(
        abs(residual), threshold, abs(residual) > threshold, f"baseline {math.expm1(log_center):.0f} events",
        "log_volume", residual / scale,
    )


class ResidualDetectors:
    """Page-Hinkley over one series' per-window standardised residuals, in seven numbers.

    The window tests judge one window at a time; this accumulates evidence across windows, so a
    drift too slow or too small for any single window is still caught, while the weekly pattern is
    not (the residual is taken against the same-slot baseline). Its settings are for a residual
    that is standard normal when nothing changes, calibrated once (seeded simulation, heavy-tailed
    t(3) noise) rather than per stream by a user. The update is river's ``PageHinkley`` (two-sided,
    forgetting factor 1 - 1e-4) with its state in plain numbers, so a snapshot is seven floats
    instead of the residuals needed to replay it (tests/test_detect.py checks both agree).

    >>> det = ResidualDetectors()
    >>> rng = np.random.default_rng(1)
    >>> calm = [det.update(float(z)) for z in rng.normal(0, 1, 300)]
    >>> any(calm)
    False
    >>> drifting = [det.update(float(z)) for z in rng.normal(1.5, 1, 200)]
    >>> next(i for i, d in enumerate(drifting) if d), next(d for d in drifting if d)
    (29, 'page_hinkley')
    """

    __slots__ = ("state",)
    MIN_INSTANCES, DELTA, THRESHOLD, FORGET = 20, 0.5, 25.0, 1 - 0.0001

    def __init__(self, state: list[float] | None = None) -> None:
        # n, mean, sum of increases, sum of decreases, min of the first (1e300: none yet, JSON has no
        # infinity), max of the second, detected
        self.state = list(state) if state is not None else [0.0, 0.0, 0.0, 0.0, 1e300, -1.0, 0.0]
        if len(self.state) != 7:
            raise ValueError("a Page-Hinkley state has 7 numbers")

    def update(self, z: float) -> str | None:
        """Feed one window's residual; ``"page_hinkley"`` when it saw a change."""
        z = min(max(z, -10.0), 10.0)  # one wild window must not count as a trend
        n, mean, inc, dec, min_inc, max_dec, detected = self.state
        if detected:
            n, mean, inc, dec, min_inc, max_dec = 0.0, 0.0, 0.0, 0.0, 1e300, -1.0
        n += 1
        mean += (z - mean) / n
        dev = z - mean
        inc = self.FORGET * inc + dev - self.DELTA
        dec = self.FORGET * dec + dev + self.DELTA
        min_inc = min(min_inc, inc)
        max_dec = max(max_dec, dec)
        hit = n >= self.MIN_INSTANCES and (inc - min_inc > self.THRESHOLD or max_dec - dec > self.THRESHOLD)
        self.state = [n, mean, inc, dec, min_inc, max_dec, 1.0 if hit else 0.0]
        return "page_hinkley" if hit else None
