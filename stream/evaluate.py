"""Window tests of all series of a model at once: one closed window, every series, a few numpy calls.

All series of a model close a window together and share its calendar slot, so the baseline of
every series is a column of the model's series store and every test is an array expression
(stream.detect's ``*_tests``). Python-level work per series is left for the few that have something
to say (a breach, or an alert already open).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .baseline import Batch
from .calendar import SlotKey
from .detect import design_effects, distribution_tests, mean_shift_tests
from .store import SeriesStore
from .volume import pooled_rate_variance, volume_tests

TESTS = ("js_divergence", "mean_shift", "log_volume", "page_hinkley")
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class Alphas(NamedTuple):
    """The false-alarm probability per window each signal's window test may spend."""

    prediction: float
    volume: float
    feature: float


@dataclass
class Found:
    """One signal's verdicts for all series (rows); ``has`` says where there is one."""

    has: Bools
    score: Floats
    threshold: Floats
    z: Floats  # standardised residual (NaN where the test has none)
    test: Ints  # index into TESTS
    col: Ints  # store column of the baseline (-1: none)
    pos: Ints  # place of that key in its chain (0: the preferred slot)
    forced: Bools = field(default_factory=lambda: np.zeros(0, bool))  # breach by an online detector
    feature: Ints = field(default_factory=lambda: np.zeros(0, np.int64))  # top feature (feature signal)
    drifting: Bools = field(default_factory=lambda: np.zeros((0, 0), bool))  # (rows, features) breaches

    @classmethod
    def empty(cls, n: int) -> Found:
        return cls(np.zeros(n, bool), np.zeros(n), np.full(n, np.inf), np.full(n, np.nan), np.zeros(n, np.int64),
                   np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n, bool))

    @property
    def breach(self) -> Bools:
        return self.has & ((self.score > self.threshold) | self.forced)

    @property
    def ratio(self) -> Floats:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.threshold > 0, self.score / self.threshold, 0.0)

    def replace_where(self, mask: Bools, other: Found) -> None:
        """Take ``other``'s verdicts on the rows in ``mask``."""
        for name in ("has", "score", "threshold", "z", "test", "col", "pos", "forced"):
            getattr(self, name)[mask] = getattr(other, name)[mask]
        if len(self.feature):
            self.feature[mask] = other.feature[mask]
            self.drifting[mask] = other.drifting[mask]


def _better(b1: Bools, r1: Floats, b2: Bools, r2: Floats) -> Bools:
    """Where (b2, r2) > (b1, r1), compared as tuples (breach first, then ratio)."""
    return (b2 & ~b1) | ((b2 == b1) & (r2 > r1))


def evaluate(
    store: SeriesStore,
    rows: Ints,
    chain: tuple[SlotKey, ...],
    b: Batch,
    numeric: bool,
    alpha: Alphas,
    min_windows: int,
    min_holiday: int | None,
) -> dict[str, Found]:
    """Prediction (shape and, for numbers, location), feature and volume verdicts of every row."""
    n, k = len(rows), store.k
    out = {s: Found.empty(n) for s in ("prediction", "volume", "feature")}
    nf = len(store.features)
    out["feature"].feature = np.full(n, -1, np.int64)
    out["feature"].drifting = np.zeros((n, nf), bool)
    s = store.scal

    col, pos = store.pick(rows, chain, True, min_windows, min_holiday)
    v = (col >= 0) & b.usable
    if v.any():
        r, c = rows[v], col[v]
        sc = s[r, c].astype(np.float64)
        windows = np.minimum(sc[:, store.N_PRED], k)
        design = (design_effects(b.count[v], sc[:, store.SPREAD], sc[:, store.SAMPLING], sc[:, store.WITHIN], windows)
                  if numeric else None)
        js, js_t = distribution_tests(b.hist[v][:, : store.bins], store.hist[r, c, : store.bins], windows,
                                      sc[:, store.DISP], np.minimum(sc[:, store.DISP_N], k), alpha.prediction / 2,
                                      design)
        p = out["prediction"]
        p.has[v], p.score[v], p.threshold[v], p.col[v], p.pos[v] = True, js, js_t, c, pos[v]
        p.test[v] = 0
        if numeric:
            ms, ms_t, z = mean_shift_tests(b.count[v], b.total[v], b.total_sq[v], sc[:, store.CENTER],
                                           sc[:, store.SPREAD], sc[:, store.SAMPLING], sc[:, store.WITHIN], windows, alpha.prediction / 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                loc = _better(js > js_t, np.where(js_t > 0, js / js_t, 0.0), ms > ms_t, np.where(ms_t > 0, ms / ms_t, 0.0))
            p.score[v] = np.where(loc, ms, js)
            p.threshold[v] = np.where(loc, ms_t, js_t)
            p.test[v] = np.where(loc, 1, 0)
            p.z[v] = z
        if nf and b.feat is not None and b.feat_ok is not None:
            fv = v.copy()
            fv[v] = sc[:, store.N_FEAT] >= 2
            fv &= b.feat_ok.any(axis=1)
            if fv.any():
                r, c = rows[fv], col[fv]
                nfw = np.minimum(s[r, c, store.N_FEAT].astype(np.float64), k)
                fd = store.fdisp[r, c].astype(np.float64)
                # A feature needs two past windows of its own (one dispersion ratio) to be tested.
                ok = b.feat_ok[fv] & (np.asarray(store.fsize) > 0)[None, :] & (fd[..., 1] >= 1)
                m = len(r)
                fs, ft = distribution_tests(
                    b.feat[fv].reshape(m * nf, -1), store.fhist[r, c].reshape(m * nf, -1), np.repeat(nfw, nf),
                    fd[..., 0].reshape(-1), np.minimum(fd[..., 1], k).reshape(-1), alpha.feature,
                )
                fs, ft = fs.reshape(m, nf), ft.reshape(m, nf)
                br = ok & (fs > ft)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rank = np.where(ok, br * 1e12 + np.where(ft > 0, fs / ft, 0.0), -np.inf)
                top = rank.argmax(axis=1)
                tested = ok.any(axis=1)
                f = out["feature"]
                idx = np.flatnonzero(fv)[tested]
                t = top[tested]
                f.has[idx], f.col[idx], f.pos[idx] = True, col[idx], pos[idx]
                f.score[idx], f.threshold[idx] = fs[tested, t], ft[tested, t]
                f.feature[idx] = t
                f.drifting[fv] = br

    col, pos = store.pick(rows, chain, False, min_windows, min_holiday)
    v = col >= 0
    if v.any():
        r, c = rows[v], col[v]
        sc = s[r, c].astype(np.float64)
        # the week-to-week spread of the model's other series in the same slot, for the series
        # whose counts are too few to show their own
        pooled = np.zeros(len(c))
        for col_ in np.unique(c):
            every = s[:, col_].astype(np.float64)
            pooled[c == col_] = pooled_rate_variance(every[:, store.LOG_C], every[:, store.LOG_S],
                                                     np.minimum(every[:, store.N_ALL], k))
        vs, vt, z = volume_tests(b.events[v], sc[:, store.LOG_C], sc[:, store.LOG_S],
                                 np.minimum(sc[:, store.N_ALL], k), alpha.volume, pooled)
        o = out["volume"]
        o.has[v], o.score[v], o.threshold[v], o.z[v], o.test[v], o.col[v], o.pos[v] = True, vs, vt, z, 2, c, pos[v]
    return out


def either_day(main: dict[str, Found], alt: dict[str, Found]) -> Bools:
    """A holiday without history of its own may be kept as a day off or as an ordinary day: it is a
    drift only if it looks like neither (and unknown if either is unknown). Updates ``main`` in
    place; returns, per signal row-stacked, where a breach was vetoed rather than cleared (looking
    like one of two guesses is no evidence that a firing alert is over).

    A day between the two is like neither but no evidence either: the week between Christmas and
    New Year is busier than a Sunday and quieter than a working day, a day half off. Where the
    volume (or the mean prediction, when that is what breached) lies on one side of one guess and
    on the other side of the other, there is no verdict."""
    ambiguous = np.zeros((3, len(main["prediction"].has)), bool)
    for i, signal in enumerate(("prediction", "volume", "feature")):
        mine, other = main[signal], alt[signal]
        guess = mine.has & (mine.pos != 0)
        unknown = guess & ~other.has
        mine.has[unknown] = False
        located = signal == "volume" or signal == "prediction"
        between = (guess & other.has & (np.sign(mine.z) * np.sign(other.z) < 0)
                   & ((mine.test == 1) | (signal == "volume")) & ((other.test == 1) | (signal == "volume"))
                   if located else np.zeros(len(guess), bool))
        swap = guess & other.has & _better(other.breach, other.ratio, mine.breach, mine.ratio)
        ambiguous[i] = (swap & mine.breach) | (between & (mine.breach | other.breach))
        mine.replace_where(swap, other)
        mine.has[between] = False
    return ambiguous
