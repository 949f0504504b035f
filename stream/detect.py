"""Scores and learned thresholds: how far a window is from its same-slot baseline, and how far is too far.

Distribution signals are scored with the Jensen-Shannon divergence (base 2, 0..1) between the
window's histogram and the pooled baseline. Under "nothing changed", ``8 ln2 JSD / (1/n + 1/m)``
is close to chi-square with ``bins - 1`` degrees of freedom, which gives the sample-size correction.
Real windows of the same slot differ by more than sampling noise, so the baseline's own windows are
scored against the rest of the baseline (leave one out) to learn an over-dispersion factor. As that
factor's excess over pure sampling noise is estimated from k windows, the threshold uses the F
distribution with Satterthwaite denominator degrees of freedom rather than the chi-square: few or
uneven baseline windows mean a wider threshold. Nobody sets a bound by hand.

>>> rng = np.random.default_rng(7)
>>> base = np.stack([np.bincount(rng.integers(0, 10, 500), minlength=10) for _ in range(8)])
>>> same = np.bincount(rng.integers(0, 10, 500), minlength=10)
>>> shifted = np.bincount(np.clip(rng.integers(0, 10, 500) + 3, 0, 9), minlength=10)
>>> d_same, d_shift = distribution_test(same, base, 1e-4), distribution_test(shifted, base, 1e-4)
>>> d_same.breach, d_shift.breach
(False, True)
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
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


def _js_rows(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Row-wise Jensen-Shannon divergence (bits) of two stacks of probability vectors."""
    m = 0.5 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = np.where(a > 0, a * np.log2(a / m), 0.0).sum(axis=1)
        kb = np.where(b > 0, b * np.log2(b / m), 0.0).sum(axis=1)
    return np.maximum(0.0, 0.5 * (ka + kb))


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


def distribution_test(current: npt.ArrayLike, baseline: npt.ArrayLike, alpha: float) -> Verdict:
    """Compare a window's histogram with the stacked histograms of its baseline windows.

    ``baseline`` has one row per baseline window. ``alpha`` is the per-test false-alarm rate.
    """
    cur = np.asarray(current, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    pooled = base.sum(axis=0)
    n, m = float(cur.sum()), float(pooled.sum())
    support = int(((pooled + cur) > 0).sum())
    df = max(support - 1, 1)
    # Learn over-dispersion from the baseline's own windows, each against the rest (all at once).
    ks = base.sum(axis=1)
    rest = pooled[None, :] - base
    rest_n = rest.sum(axis=1)
    ok = (ks > 0) & (rest_n > 0)
    ratios = []
    if ok.any():
        jsd = _js_rows(base[ok] / ks[ok, None], rest[ok] / rest_n[ok, None])
        ratios = (jsd / ((1.0 / ks[ok] + 1.0 / rest_n[ok]) / (8.0 * _LN2)) / df).tolist()
    phi = max(1.0, sum(ratios) / len(ratios)) if ratios else 1.0
    score = js_divergence(cur, pooled)
    # Sampling noise (dispersion 1) is known; only the excess over it is estimated from the k
    # windows, so the denominator degrees of freedom grow as the excess shrinks (Satterthwaite).
    excess = phi - 1.0
    dfd = max(len(ratios), 1) * df * (phi / excess) ** 2 if excess > 1e-9 else float("inf")
    if dfd > 1e5:
        critical = chi2_quantile(1.0 - alpha, df)
    else:
        critical = df * f_quantile(1.0 - alpha, df, max(int(dfd), 1))
    threshold = phi * critical * _null_scale(n, m)
    return Verdict(score, float(threshold), score > threshold, f"dispersion {phi:.2f}, df {df}", "js_divergence")


def mean_shift_test(
    n: float, total: float, total_sq: float, baseline: Sequence[Sequence[float]], alpha: float
) -> Verdict:
    """Has the window's mean moved, given how the baseline windows' means vary?

    ``baseline`` rows are (count, sum, sum of squares) of the baseline windows. The variance of the
    difference has a part known from sampling (within-window variance over counts) and a part
    estimated from k windows (the week-to-week spread beyond sampling); Welch-Satterthwaite degrees
    of freedom turn that into a t quantile, so a baseline that varies a lot, or has few windows,
    asks for more evidence.

    >>> base = [(500, 500 * m, 500 * (m * m + 0.04)) for m in (0.30, 0.31, 0.29, 0.30, 0.305)]
    >>> mean_shift_test(500, 500 * 0.30, 500 * (0.09 + 0.04), base, 1e-4).breach
    False
    >>> v = mean_shift_test(500, 500 * 0.36, 500 * (0.36**2 + 0.04), base, 1e-4); v.breach, round(v.z, 1)
    (True, 6.0)
    """
    rows = [(float(c), float(s), float(q)) for c, s, q in baseline]
    k = len(rows)
    means = [s / c for c, s, _q in rows]
    within = [max(q / c - mu * mu, 0.0) for (c, _s, q), mu in zip(rows, means, strict=True)]
    pooled_within = sum(w * c for w, (c, _s, _q) in zip(within, rows, strict=True)) / sum(c for c, _s, _q in rows)
    mean_cur = total / n
    within_cur = max(total_sq / n - mean_cur**2, 0.0) if n > 1 else pooled_within
    sampling = sum(w / c for w, (c, _s, _q) in zip(within, rows, strict=True)) / k
    center = sum(means) / k
    spread = sum((mu - center) ** 2 for mu in means) / (k - 1) if k > 1 else 0.0
    tau2 = max(spread - sampling, 0.0)
    known = max(within_cur, pooled_within) / n + sampling / k
    estimated = tau2 * (1.0 + 1.0 / k)
    var_d = known + estimated
    if var_d <= 0:
        return Verdict(0.0, float("inf"), False, "no variance", "mean_shift", 0.0)
    z = (mean_cur - center) / math.sqrt(var_d)
    df = (var_d**2) / (estimated**2 / max(k - 1, 1)) if estimated > 0 else float("inf")
    crit = two_sided_quantile(alpha, df)
    return Verdict(abs(z), crit, abs(z) > crit, f"baseline mean {center:.4g}, df {min(df, 1e9):.0f}", "mean_shift", z)


def volume_test(count: float, baseline_counts: Sequence[float], alpha: float) -> Verdict:
    """Compare a window's event count with the counts of its baseline windows on a log scale.

    The score is the absolute log ratio to the baseline median; the threshold is a two-sided
    quantile times a spread with two parts: Poisson noise (known from the counts) and the baseline's
    week-to-week variation beyond it (estimated from k windows, never taken below 5%). The t
    quantile's degrees of freedom follow Welch-Satterthwaite: few windows matter only as much as
    the estimated part of the spread does.

    >>> volume_test(1000, [980, 1010, 1005, 990], 1e-4).breach
    False
    >>> volume_test(200, [980, 1010, 1005, 990], 1e-4).breach
    True
    """
    # Plain floats: k is a dozen at most, and numpy's per-call overhead dominated this per window.
    counts = [float(c) for c in baseline_counts]
    base = [math.log1p(c) for c in counts]
    center = statistics.median(base)
    k = len(base)
    mu = sum(base) / k
    spread2 = sum((b - mu) ** 2 for b in base) / (k - 1) if k > 1 else 0.0
    poisson2 = 1.0 / max(math.expm1(center), 1.0)
    extra2 = max(spread2 - sum(1.0 / max(c, 1.0) for c in counts) / k, 0.0)
    floor2 = 0.05**2
    known = poisson2 + (floor2 if extra2 < floor2 else 0.0)
    estimated = extra2 if extra2 >= floor2 else 0.0
    var = (known + estimated) * (1.0 + 1.0 / max(k, 1))
    scale = math.sqrt(var)
    df = (known + estimated) ** 2 / (estimated**2 / max(k - 1, 1)) if estimated > 0 else float("inf")
    z = two_sided_quantile(alpha, df)
    residual = math.log1p(count) - center
    threshold = z * scale
    return Verdict(
        abs(residual), threshold, abs(residual) > threshold, f"baseline median {math.expm1(center):.0f}",
        "log_volume", residual / scale,
    )


class ResidualDetectors:
    """River's PageHinkley and ADWIN over one series' per-window standardised residuals.

    The window tests judge one window at a time; these accumulate evidence across windows, so a
    drift too slow or too small for any single window is still caught, while the weekly pattern is
    not (the residual is taken against the same-slot baseline). Their settings are for a residual
    that is standard normal when nothing changes, calibrated once (seeded simulation, heavy-tailed
    t(3) noise: under 3e-5 false detections per window; a sustained shift of 1 standard deviation
    detected after about 50 windows, of 2 after about 17) rather than per stream by a user.

    >>> det = ResidualDetectors()
    >>> rng = np.random.default_rng(1)
    >>> calm = [det.update(float(z)) for z in rng.normal(0, 1, 300)]
    >>> any(calm)
    False
    >>> drifting = [det.update(float(z)) for z in rng.normal(1.5, 1, 200)]
    >>> next(i for i, d in enumerate(drifting) if d), next(d for d in drifting if d)
    (29, 'page_hinkley')
    """

    __slots__ = ("ph", "adwin", "history")
    KEEP = 1000  # residuals kept to rebuild the detectors after a restore

    def __init__(self) -> None:
        from river.drift import ADWIN, PageHinkley

        self.ph = PageHinkley(min_instances=20, delta=0.5, threshold=25.0, mode="both")
        self.adwin = ADWIN(delta=1e-5)
        self.history: deque[float] = deque(maxlen=self.KEEP)

    def replay(self, zs: list[float]) -> None:
        """Rebuild from saved residuals (exact while fewer than KEEP windows were seen)."""
        for z in zs:
            self.update(z)

    def update(self, z: float) -> str | None:
        """Feed one window's residual; the name of the detector that saw a change, if any."""
        z = min(max(z, -10.0), 10.0)  # one wild window must not count as a trend
        self.history.append(z)
        self.ph.update(z)
        self.adwin.update(z)
        if self.ph.drift_detected:
            return "page_hinkley"
        if self.adwin.drift_detected:
            return "adwin"
        return None
