"""The volume test: is a window's event count far from its same-slot baseline's?

Many events a window are judged on the log scale (a normal approximation, the week-to-week spread
estimated from the slot's windows). A few events a window are judged by the count's own tail: a
Poisson count at a rate that varies from week to week, which the log scale gets wrong exactly where
small series live (one event where eight are usual is not a 4 sd event). Split from
``stream.detect``, whose quantile helpers it shares.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from .detect import Verdict, t_two_sided


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
        ke, pe, se2 = k[exact], poisson2[exact], spread2[exact]
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
                total = se2[at] * max(d - 1.0, 1.0) / qj
                own = np.where(quiet[at], floor2, np.maximum(total - pe[at], floor2)) / slope2[at]
                log_var = np.maximum(own, borrowed[at]) * (1.0 + 1.0 / d) + centre_var[at]
                lj, hj = count_tails(cnt[exact][at], centre_rate[at], log_var)
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
