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


def _grid(df: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Degrees of freedom rounded down (exact up to 30, then to a 2% geometric grid): quantiles
    hardly move there, rounding down only widens a threshold, and the few values recur in a cache."""
    df = np.maximum(np.floor(df), 1.0)
    big = df > 30
    if big.any():
        df = df.copy()
        df[big] = np.floor(30.0 * 1.02 ** np.floor(np.log(df[big] / 30.0) / math.log(1.02)))
    return df


def _cached(fn: object, *cols: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Apply a cached scalar quantile function to each distinct row of ``cols``."""
    keys = np.stack(cols, axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    vals = np.array([fn(*(int(x) if x == x and abs(x) < 1e18 else float(x) for x in row)) for row in uniq])  # type: ignore[operator]
    return vals[inverse.reshape(-1)]


def t_two_sided(alpha: float, df: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Two-sided Student t critical values (normal beyond 1000 degrees of freedom)."""
    out = np.full(len(df), _NORMAL.inv_cdf(1.0 - alpha / 2.0))
    small = df <= 1000
    if small.any():
        out[small] = _cached(lambda d: t_quantile(1.0 - alpha / 2.0, d), _grid(df[small]))
    return out


def design_effects(
    n: npt.ArrayLike, spread: npt.ArrayLike, sampling: npt.ArrayLike, within: npt.ArrayLike, windows: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """How many times sampling noise a window's histogram varies by when its events are not
    independent draws: ``1 + (n - 1) ICC``, the intra-window correlation ``ICC`` from the slot's
    moments (the spread of its window means beyond what their sampling explains, against the
    spread within a window). A demand forecast that predicts the same number for every event of
    an hour is one draw per window, not ``n``: ``n`` times the noise a multinomial allows, which
    the histogram's learned dispersion cannot see when the values fall in one bin week after
    week. The excess spread is taken at a lower bound (two standard errors of the estimate below
    it), so independent predictions keep a design effect of 1 and their full power.

    ``spread`` is the (population) variance of ``windows`` window means, ``sampling`` their mean
    within-window variance over count, ``within`` their mean within-window variance; ``n`` the
    current window's events.

    >>> design_effects([200], [0.04], [0.0], [0.0], [8]).tolist()  # one value per window: one draw
    [200.0]
    >>> design_effects([200], [0.0002], [0.0002], [0.04], [8]).tolist()  # independent draws
    [1.0]
    """
    n_, sp, sa, wi, k = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (n, spread, sampling, within, windows))
    k = np.maximum(k, 2.0)
    tau2 = np.maximum(sp * k / (k - 1) - sa * (1.0 + 2.0 * np.sqrt(2.0 / (k - 1))), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        icc = np.where(tau2 > 0, tau2 / (tau2 + np.maximum(wi, 0.0)), 0.0)
    return 1.0 + np.maximum(n_ - 1.0, 0.0) * icc


def distribution_tests(
    current: npt.ArrayLike, mean: npt.ArrayLike, windows: npt.ArrayLike, dispersion: npt.ArrayLike,
    ratios: npt.ArrayLike, alpha: float, design: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Scores and thresholds of many windows (rows) at once; see ``distribution_test``. ``design``:
    each window's design effect (``design_effects``), a floor under its dispersion."""
    cur = np.atleast_2d(np.asarray(current, dtype=np.float64))
    k = np.asarray(windows, dtype=np.float64).reshape(-1)
    pooled = np.atleast_2d(np.asarray(mean, dtype=np.float64)) * k[:, None]
    n, m = cur.sum(axis=1), pooled.sum(axis=1)
    ok = (n > 0) & (m > 0)
    score = np.zeros(len(cur))
    threshold = np.full(len(cur), np.inf)
    if not ok.any():
        return score, threshold
    cur, pooled, n, m = cur[ok], pooled[ok], n[ok], m[ok]
    df = np.maximum(((pooled + cur) > 0).sum(axis=1) - 1, 1).astype(np.float64)
    r = np.asarray(ratios, dtype=np.float64).reshape(-1)[ok]
    phi = np.where(r > 0, np.maximum(1.0, np.asarray(dispersion, dtype=np.float64).reshape(-1)[ok]), 1.0)
    if design is not None:
        # Known from the moments, not estimated from the windows' divergences: no F widening for it.
        deff = np.broadcast_to(np.asarray(design, dtype=np.float64).reshape(-1), ok.shape)[ok]
        r = np.where(deff > phi, np.inf, r)
        phi = np.maximum(phi, deff)
    score[ok] = js_rows(cur / n[:, None], pooled / m[:, None])
    # Sampling noise (dispersion 1) is known; only the excess over it is estimated from the
    # windows, so the denominator degrees of freedom grow as the excess shrinks (Satterthwaite).
    excess = phi - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        dfd = np.where(excess > 1e-9, np.maximum(r, 1.0) * df * (phi / excess) ** 2, np.inf)
    critical = np.empty(len(df))
    chi = dfd > 1e5
    if chi.any():
        critical[chi] = _cached(lambda d: chi2_quantile(1.0 - alpha, d), df[chi])
    if (~chi).any():
        critical[~chi] = df[~chi] * _cached(lambda a, b: f_quantile(1.0 - alpha, a, b), df[~chi], _grid(dfd[~chi]))
    threshold[ok] = phi * critical * (1.0 / n + 1.0 / m) / (8.0 * _LN2)
    return score, threshold


def distribution_test(
    current: npt.ArrayLike, mean: npt.ArrayLike, windows: int, dispersion: float, ratios: int, alpha: float
) -> Verdict:
    """Compare a window's histogram with its baseline: the per-window mean histogram of ``windows``
    windows, whose own windows strayed ``dispersion`` times as far as sampling noise predicts
    (learned from ``ratios`` windows). ``alpha`` is the per-test false-alarm rate.
    """
    score, threshold = distribution_tests(current, mean, [windows], [dispersion], [ratios], alpha)
    sc, th = float(score[0]), float(threshold[0])
    return Verdict(sc, th, sc > th, f"dispersion {max(dispersion, 1.0) if ratios else 1.0:.2f}", "js_divergence")


def mean_shift_tests(
    n: npt.ArrayLike, total: npt.ArrayLike, total_sq: npt.ArrayLike, center: npt.ArrayLike, spread: npt.ArrayLike,
    sampling: npt.ArrayLike, within: npt.ArrayLike, windows: npt.ArrayLike, alpha: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(|z|, critical value, z) of many windows at once; see ``mean_shift_test``."""
    n_, tot, sq, c, sp, sa, wi, k = (np.asarray(x, dtype=np.float64).reshape(-1)
                                     for x in (n, total, total_sq, center, spread, sampling, within, windows))
    k = np.maximum(k, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_cur = tot / n_
        within_cur = np.where(n_ > 1, np.maximum(sq / n_ - mean_cur**2, 0.0), wi)
        sample_spread = np.where(k > 1, sp * k / (k - 1), 0.0)
        tau2 = np.maximum(sample_spread - sa, 0.0)
        known = np.maximum(within_cur, wi) / n_ + sa / k
        estimated = tau2 * (1.0 + 1.0 / k)
        var_d = known + estimated
        z = np.where(var_d > 0, (mean_cur - c) / np.sqrt(var_d), 0.0)
        df = np.where(estimated > 0, var_d**2 / (estimated**2 / np.maximum(k - 1, 1)), np.inf)
    crit = np.where(var_d > 0, t_two_sided(alpha, df), np.inf)
    return np.abs(z), crit, z


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
    score, crit, z = mean_shift_tests(n, total, total_sq, center, spread, sampling, within, windows, alpha)
    sc, cr = float(score[0]), float(crit[0])
    return Verdict(sc, cr, sc > cr, f"baseline mean {center:.4g}", "mean_shift", float(z[0]))


def js_rows(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Jensen-Shannon divergence (bits) along the last axis of two stacks of probability vectors."""
    m = 0.5 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = np.where(a > 0, a * np.log2(a / m), 0.0).sum(axis=-1)
        kb = np.where(b > 0, b * np.log2(b / m), 0.0).sum(axis=-1)
    return np.maximum(0.0, 0.5 * (ka + kb))
