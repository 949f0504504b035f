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
from scipy import special, stats

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


@lru_cache(maxsize=1)
def _poisson_log_table() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``Var log1p(N)`` for ``N ~ Poisson(r)`` on a grid of rates (log scale), summed exactly."""
    rates = np.logspace(-3, 4, 281)
    out = np.empty_like(rates)
    for i, r in enumerate(rates):
        k = np.arange(int(r + 12 * math.sqrt(r) + 40))
        p = stats.poisson.pmf(k, r)
        lg = np.log1p(k)
        m = float(p @ lg)
        out[i] = float(p @ (lg - m) ** 2)
    return np.log(rates), out


def poisson_log_variance(rate: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The variance Poisson noise alone gives ``log1p`` of a count at a rate: ``1/r`` for large
    rates, but far less at a few events (0.20 at 4, not 0.25 nor the 0.34 a mean of ``1/count``
    gives), which is the part of a baseline's log spread that is not week-to-week variation.

    >>> [round(float(v), 3) for v in poisson_log_variance([4.0, 100.0])]
    [0.201, 0.01]
    """
    r = np.asarray(rate, dtype=np.float64)
    lr, var = _poisson_log_table()
    big = r > 1e4
    with np.errstate(divide="ignore"):
        out = np.interp(np.log(np.maximum(r, 1e-300)), lr, var)
    return np.where(big, r / (1.0 + r) ** 2, out)


def slot_rate(log_center: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The Poisson rate whose counts average ``log_center`` on the log1p scale (a fixed point:
    ``expm1`` of the mean alone is low by half the Poisson variance there).

    >>> [round(float(r), 2) for r in slot_rate(np.array([1.5194, 4.6102]))]  # Poisson(4), Poisson(100)
    [4.05, 100.01]
    """
    rate = np.expm1(log_center)
    for _ in range(3):
        rate = np.expm1(log_center + 0.5 * poisson_log_variance(rate))
    return rate


@lru_cache(maxsize=64)
def _chi2_nodes(nu: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Nodes and weights for an expectation over chi-square with ``nu`` degrees of freedom, evenly
    spaced in its logarithm from the 1e-14 to the 1 - 1e-14 quantile: the small values, which set
    the tails a small alpha asks about, are as well covered as the middle (a t tail to 1e-10 within
    1% with 16 nodes at 7 degrees of freedom)."""
    lo, hi = math.log(float(stats.chi2.ppf(1e-14, nu))), math.log(float(stats.chi2.isf(1e-14, nu)))
    q = np.exp(np.linspace(lo, hi, 16))
    w = stats.chi2.pdf(q, nu) * q
    return q, w / w.sum()


def _trigamma_inverse(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The gamma shape whose log has variance ``v`` (Newton on the log of the shape)."""
    v = np.maximum(v, 1e-8)
    a = 1.0 / v + 0.5
    for _ in range(6):
        f = special.polygamma(1, a) - v
        a = np.maximum(a * np.exp(-f / (a * special.polygamma(2, a))), 0.05)
    return a


def count_tails(
    count: npt.ArrayLike, rate: npt.ArrayLike, log_var: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(P(N <= count), P(N >= count))`` for a Poisson count at a gamma-distributed rate whose
    log has mean ``log(rate)`` and variance ``log_var`` (a negative binomial, exact in the count):
    a window of 1 event where 8 are usual is as rare as it is (0.003), not as rare as a normal
    approximation on the log scale makes it (1e-5).

    >>> lo, hi = count_tails([1.0, 20.0], [8.0, 8.0], [0.0, 0.0])
    >>> round(float(lo[0]), 4), round(float(hi[1]), 5)
    (0.003, 0.00025)
    """
    c = np.asarray(count, dtype=np.float64)
    shape = _trigamma_inverse(np.asarray(log_var, dtype=np.float64))
    scale = np.asarray(rate, dtype=np.float64) * np.exp(-special.digamma(shape))
    p = 1.0 / (1.0 + scale)
    lo = special.betainc(shape, c + 1.0, p)
    hi = np.where(c > 0, special.betainc(np.maximum(c, 1e-300), shape, 1.0 - p), 1.0)
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


def volume_tests(
    count: npt.ArrayLike, log_center: npt.ArrayLike, log_spread: npt.ArrayLike, windows: npt.ArrayLike, alpha: float,
    pooled: npt.ArrayLike | float = 0.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(|log residual|, threshold, standardised residual) of many windows at once; see ``volume_test``.

    ``pooled``: the week-to-week variance of the log rate that the model's other series show in
    the same slot (``pooled_rate_variance``), for series whose counts are too few to show their own.
    """
    cnt, lc, ls, k = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (count, log_center, log_spread, windows))
    k = np.maximum(k, 1.0)
    spread2 = np.where(k > 1, ls * k / np.maximum(k - 1, 1), 0.0)
    rate = slot_rate(lc)
    poisson2 = poisson_log_variance(rate)
    extra2 = np.maximum(spread2 - poisson2, 0.0)
    floor2 = 0.05**2
    varies = extra2 >= floor2
    known = poisson2 + np.where(varies, 0.0, floor2)
    estimated = np.where(varies, extra2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(varies, (known + estimated) ** 2 / (estimated**2 / np.maximum(k - 1, 1)), np.inf)
    crit = t_two_sided(alpha, df)
    residual = np.log1p(cnt) - lc
    score = np.abs(residual)
    # Many events a window: a normal approximation on the log scale, the week-to-week part of the
    # spread estimated (Welch-Satterthwaite t) or, below its 5% floor, taken as known.
    scale = np.sqrt((known + estimated) * (1.0 + 1.0 / k))
    threshold, z = crit * scale, residual / scale
    # A few events a window (where that approximation made an hour of 1 event where 6 are usual a
    # 4 sd event, and any false alert of a small series a volume alert): the count's own tail.
    # The count is Poisson at a gamma rate (a negative binomial) whose log varies by the slot's
    # week-to-week spread, averaged over the total log spread its k windows allow (the scaled
    # inverse chi-square of a t test's predictive), with the centre's own Poisson error; the
    # p value meets alpha itself.
    exact = (rate < 100) & (np.abs(z) > 1.0)
    if exact.any():
        # log1p flattens the log rate's variation at a few events (slope r / (1 + r)), so the
        # spread seen on that scale is the rate's own spread times the slope squared
        slope2 = np.maximum((rate[exact] / (1.0 + rate[exact])) ** 2, 0.25)
        ke, pe, te_ = k[exact], poisson2[exact], spread2[exact]
        # A slot that saw next to no events cannot show how much its rate varies (four empty
        # windows have no spread at any variation): the share of its log spread that Poisson
        # noise would explain at one event or more is the share taken from the model's other series.
        pe1 = poisson_log_variance(np.maximum(rate[exact], 1.0))
        blind = pe1 / (pe1 + extra2[exact])
        # as on the log scale, a spread that Poisson noise explains is taken at its floor
        quiet = ~varies[exact]
        borrowed = np.broadcast_to(np.asarray(pooled, dtype=np.float64), cnt.shape)[exact] * blind
        # the centre is known to the baseline's Poisson precision: about k r events in all, so
        # its rate is Gamma(k r + 1/2, k) (Jeffreys; exactly the Poisson-gamma predictive when
        # the rate does not vary), which keeps a slot that saw no event in four windows from
        # calling the first few events of a night impossible
        events = ke * rate[exact]
        centre_rate = np.exp(special.digamma(events + 0.5)) / ke
        centre_var = special.polygamma(1, events + 0.5)
        lo, hi = np.zeros(len(ke)), np.zeros(len(ke))
        for d in np.unique(ke):
            at = ke == d
            q, w = _chi2_nodes(max(int(d) - 1, 1))
            for qj, wj in zip(q, w, strict=True):
                # a total log spread the k windows allow, and the week-to-week part it leaves
                total = te_[at] * max(d - 1.0, 1.0) / qj
                own = np.where(quiet[at], floor2, np.maximum(total - pe[at], floor2)) / slope2[at]
                varies = np.maximum(own, borrowed[at]) * (1.0 + 1.0 / d) + centre_var[at]
                lj, hj = count_tails(cnt[exact][at], centre_rate[at], varies)
                lo[at] += wj * lj
                hi[at] += wj * hj
        ze = np.where(lo < hi, special.ndtri(np.maximum(lo, 1e-300)), -special.ndtri(np.maximum(hi, 1e-300)))
        ze = np.where(np.minimum(lo, hi) >= 0.5, 0.0, ze)
        normal = t_two_sided(alpha, np.array([np.inf]))[0]
        se = score[exact]
        # the score's threshold for this side: the log ratio at which the same evidence per unit
        # of log ratio reaches the critical value (breach exactly when |z| does)
        with np.errstate(divide="ignore", invalid="ignore"):
            te = np.where(np.abs(ze) >= 1.0, se * normal / np.abs(ze), np.maximum(threshold[exact], se * normal))
        threshold[exact], z[exact] = te, ze
    return score, threshold, z


def pooled_rate_variance(log_center: npt.ArrayLike, log_spread: npt.ArrayLike, windows: npt.ArrayLike) -> float:
    """The median week-to-week variance of the log rate over series of one slot that have enough
    events (3 a window) and windows (3) to show it; 0 when fewer than 5 do.

    >>> rng = np.random.default_rng(1)
    >>> counts = rng.poisson(np.exp(np.log(20.0) + 0.4 * rng.standard_normal((200, 8))))
    >>> logs = np.log1p(counts)
    >>> round(pooled_rate_variance(logs.mean(axis=1), logs.var(axis=1), np.full(200, 8)), 2)
    0.15
    """
    lc, ls, k = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (log_center, log_spread, windows))
    ok = (k >= 3) & (np.expm1(lc) >= 3.0)
    if ok.sum() < 5:
        return 0.0
    lc, ls, k = lc[ok], ls[ok], k[ok]
    rate = slot_rate(lc)
    extra = np.maximum(ls * k / (k - 1) - poisson_log_variance(rate), 0.0) / (rate / (1.0 + rate)) ** 2
    return float(np.median(extra))


def volume_test(count: float, log_center: float, log_spread: float, windows: int, alpha: float) -> Verdict:
    """Compare a window's event count with its baseline windows' counts.

    The baseline's log1p counts have mean ``log_center`` and (population) variance ``log_spread``.
    The count is Poisson at a rate that varies from week to week: the part of the log spread that
    Poisson noise does not explain (never taken below 5%) is that variation, and the rate's centre
    is known only to the baseline's precision. The count's tail under that model is exact, so a
    quiet hour of a small series is judged as rare as it is. The score is the absolute log ratio
    to the baseline and the threshold the log ratio at which the evidence reaches a two-sided
    quantile whose degrees of freedom follow Welch-Satterthwaite: few windows matter only as much
    as the estimated part of the spread does.

    >>> import statistics
    >>> logs = [math.log1p(c) for c in (980, 1010, 1005, 990)]
    >>> base = (statistics.fmean(logs), statistics.pvariance(logs), 4)
    >>> volume_test(1000, *base, 1e-4).breach, volume_test(200, *base, 1e-4).breach
    (False, True)

    A series of about 8 events a window: 1 event is no drift at a small alpha, 40 are.

    >>> small = [math.log1p(c) for c in (7, 9, 8, 6, 10, 8, 9, 7)]
    >>> base = (statistics.fmean(small), statistics.pvariance(small), 8)
    >>> volume_test(1, *base, 1e-4).breach, volume_test(40, *base, 1e-4).breach
    (False, True)
    """
    score, threshold, z = volume_tests(count, log_center, log_spread, windows, alpha)
    sc, th = float(score[0]), float(threshold[0])
    return Verdict(sc, th, sc > th, f"baseline {math.expm1(log_center):.0f} events", "log_volume", float(z[0]))


def js_rows(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Jensen-Shannon divergence (bits) along the last axis of two stacks of probability vectors."""
    m = 0.5 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = np.where(a > 0, a * np.log2(a / m), 0.0).sum(axis=-1)
        kb = np.where(b > 0, b * np.log2(b / m), 0.0).sum(axis=-1)
    return np.maximum(0.0, 0.5 * (ka + kb))
