"""Page-Hinkley on a series' window residuals, in units of their own spread and inside the budget.

The window tests judge one window at a time; this accumulates evidence across windows, so a drift
too slow or too small for any single window is still caught, while the weekly pattern is not (the
residual ``z`` is taken against the same-slot baseline). Why not river's fixed constants (delta
0.5, threshold 25 on the raw ``z``): real residuals are neither unit-variance nor independent. On
AR(1) residuals with rho 0.8, a healthy series' cumulative sum wanders three times as far as the
constants assume, and the detector fired about once per series per four weeks; on residuals whose
spread is below one it was needlessly deaf.

So each series learns its residual's level, spread and lag-one autocorrelation (exponentially
weighted over about ``MEMORY`` windows, frozen while a change is suspected so that the change is
not learned as noise), and the cumulative sums run on ``(z - level) / long_run_sd`` with
``long_run_sd = sd * sqrt((1 + rho) / (1 - rho))``: the spread a sum of the residuals really has.
The threshold comes from the false-alarm probability per window ``alpha`` that the series' budget
gives this test (``tables.SeriesCore._alpha``), through Siegmund's approximation of a CUSUM's
average run length, ``ARL = (exp(2 d b) - 1 - 2 d b) / (2 d^2)`` with ``b = h + 1.166``, per side.
tests/test_residual.py measures the false alarms on independent, heavy-tailed and autocorrelated
healthy residuals against ``alpha``.

>>> rng = np.random.default_rng(1)
>>> det = ResidualDetectors(alpha=1e-4)
>>> calm = [det.update(float(z)) for z in 0.8 * rng.normal(0, 1, 300)]
>>> any(calm)
False
>>> drifting = [det.update(float(z)) for z in 0.8 * rng.normal(1.5, 1, 200)]
>>> next(i for i, d in enumerate(drifting) if d), next(d for d in drifting if d)
(6, 'page_hinkley')
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

#: Windows learned before the detector may fire; windows the spread statistics remember; the drift
#: (in long-run standard deviations) the cumulative sums allow per window; the most
#: autocorrelation believed (rho 0.9 is a long-run spread 4.4 times the window's); the least
#: spread (in the residual's own units: below this, shifts too small to matter would fire).
WARMUP, MEMORY, DRIFT, RHO_MAX, SD_FLOOR = 20, 500, 0.5, 0.9, 0.5
#: Each window's step, in long-run sds, is at most this.
CLIP = 3.0
#: Columns: windows since (re)start, level, the upward and downward cumulative sums (each the
#: Page-Hinkley sum less its running extreme), detected, variance, lag-one covariance, previous
#: residual, spread windows learned.
N, LEVEL, UP, DOWN, HIT, VAR, COV, PREV, LEARNED = range(9)
WIDTH = 9
START = (0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


def threshold(alpha: float) -> float:
    """The cumulative-sum threshold (long-run sds) whose two sides together fire with probability
    about ``alpha`` per window on a healthy series."""
    arl = 2.0 / max(alpha, 1e-300)  # each side's share
    d2 = 2.0 * DRIFT
    b = math.log1p(DRIFT * d2 * arl) / d2
    for _ in range(3):  # solve exp(2db) - 1 - 2db = 2 d^2 ARL
        b = math.log1p(DRIFT * d2 * arl + d2 * b) / d2
    return max(b - 1.166, 1.0)


def step(state: npt.NDArray[np.float64], z: npt.NDArray[np.float64], alpha: float) -> npt.NDArray[np.bool_]:
    """One window per row of ``state`` (n, ``WIDTH``), in place, with residuals ``z``; which rows
    detected a change. After a detection a row learns its level again; its spread it keeps."""
    if state.shape[1] != WIDTH:
        raise ValueError(f"residual state has {state.shape[1]} columns, expected {WIDTH}")
    h = threshold(alpha)
    u = np.clip(z, -10.0, 10.0)  # one wild window must not count as a trend
    again = state[:, HIT] > 0
    for col in (N, UP, DOWN, HIT):
        state[again, col] = 0.0
    state[:, N] += 1
    n = state[:, N]
    warm = n <= WARMUP
    suspect = ~warm & (np.maximum(state[:, UP], state[:, DOWN]) > h / 2)
    # the level: the plain mean while warming up, then slowly following the residual
    learn = ~suspect
    w = 1.0 / np.minimum(n, MEMORY)  # the plain mean until MEMORY windows
    level = np.where(learn, state[:, LEVEL] + w * (u - state[:, LEVEL]), state[:, LEVEL])
    # spread and autocorrelation around the level (the first window has no previous one)
    dev, prev = u - level, state[:, PREV] - level
    learned = state[:, LEARNED]
    ws = 1.0 / np.minimum(learned + 1.0, MEMORY)
    first = learned < 1
    state[:, VAR] = np.where(learn, np.where(first, dev * dev, (1 - ws) * state[:, VAR] + ws * dev * dev), state[:, VAR])
    has_prev = learn & (learned >= 1)
    wc = 1.0 / np.minimum(learned, MEMORY).clip(min=1.0)
    state[:, COV] = np.where(has_prev, (1 - wc) * state[:, COV] + wc * dev * prev, state[:, COV])
    state[:, LEARNED] = np.where(learn, learned + 1, learned)
    state[:, LEVEL] = level
    state[:, PREV] = u
    # few windows underestimate autocorrelation (by about (1 + 3 rho) / n): allowed for, as is
    # the level's own error (its sd is a long-run sd over sqrt(n)), so a young series is not louder
    seen = np.maximum(state[:, LEARNED], 1.0)
    rho = state[:, COV] / np.maximum(state[:, VAR], 1e-12)
    rho = np.clip(rho + (1 + 3 * np.maximum(rho, 0.0)) / seen, 0.0, RHO_MAX)
    drift = DRIFT + 1.0 / np.sqrt(np.minimum(n, MEMORY))
    var = np.maximum(state[:, VAR], SD_FLOOR**2)
    # winsorised: a heavy-tailed residual's single wild window must not pass for a trend
    x = np.clip(dev / np.sqrt(var * (1 + rho) / (1 - rho)), -CLIP, CLIP)
    run = ~warm
    state[:, UP] = np.where(run, np.maximum(state[:, UP] + x - drift, 0.0), 0.0)
    state[:, DOWN] = np.where(run, np.maximum(state[:, DOWN] - x - drift, 0.0), 0.0)
    hit: npt.NDArray[np.bool_] = run & (np.maximum(state[:, UP], state[:, DOWN]) > h)
    state[:, HIT] = hit
    return hit


def restored(old: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """State saved by an older version (river's seven numbers on the raw residual) starts again."""
    if old.ndim == 2 and old.shape[1] == WIDTH:
        return old
    return np.tile(np.asarray(START), (len(old), 1))


class ResidualDetectors:
    """One series' view of ``step``: feed a window's residual, hear ``"page_hinkley"`` on a change."""

    __slots__ = ("state", "alpha")

    def __init__(self, alpha: float) -> None:
        self.state = np.array([START], dtype=np.float64)
        self.alpha = alpha

    def update(self, z: float) -> str | None:
        """Feed one window's residual; ``"page_hinkley"`` when it saw a change."""
        return "page_hinkley" if step(self.state, np.array([z]), self.alpha)[0] else None
