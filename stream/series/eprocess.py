"""The fast lane's statistic, pure numpy: a CUSUM of log e-values per series over a chunk of events,
against per-category ceilings, with a decayed-count plug-in (stream.series.lane says why this
statistic and how its ceilings are set). ``lane_values`` is the one-event-at-a-time reference the
vectorised ``cusum`` follows (tests/test_lane.py holds them equal)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

DECAY = 2.0 ** (-1 / 32)  # the alternative's memory: an event weighs half as much 32 events later
SLOW = 2.0 ** (-1 / 1024)  # the second statistic's: half as much 1,024 events later


def lane_values(recent: npt.NDArray[np.float64], lane: float, xs: npt.NDArray[np.int64],
                log_ceil: npt.NDArray[np.float64], decay: float = DECAY) -> npt.NDArray[np.float64]:
    """One series' test statistic after each of the events ``xs`` (categories), from the decayed
    counts ``recent`` and the statistic ``lane`` before them, one event at a time: the reference
    that the vectorised ``cusum`` follows."""
    k = len(recent)
    d = recent.astype(np.float64).copy()
    out = np.empty(len(xs))
    value = lane
    for i, x in enumerate(xs.tolist()):
        value = max(value, 0.0) + math.log((d[x] + 0.5) / (d.sum() + k / 2)) - log_ceil[x]
        out[i] = value
        d[x] += 1.0
        d *= decay
    return out


def cusum(recent: npt.NDArray[np.float64], lane: npt.NDArray[np.float64], decay: float,
           r: npt.NDArray[np.int64], c: npt.NDArray[np.int64], ceil: npt.NDArray[np.float32],
           ranks: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.int64],
                        npt.NDArray[np.bool_]]) -> npt.NDArray[np.float64]:
    """One statistic over a chunk of events (rows ``r``, categories ``c``), in stream order per
    series (``order``): its value after each event, and ``recent`` (the decayed counts, in place)
    after them all. The plug-in is the counts before each event, decayed by ``decay`` per event."""
    rank_r, order, start, order_c, start_c = ranks
    k = recent.shape[1]
    wgt = decay ** -rank_r.astype(np.float64)
    before_r = _exclusive(wgt, order, start)
    before_c = _exclusive(wgt, order_c, start_c)
    scale = decay ** rank_r.astype(np.float64)
    d_c = scale * (recent[r, c] + before_c)
    d = scale * (recent.sum(axis=1)[r] + before_r)
    inc = np.log((d_c + 0.5) / (d + k / 2.0)) - ceil[r, c].astype(np.float64)
    # CUSUM per series, in stream order: the best log e-value over every starting event.
    rs = r[order]
    run_start = np.flatnonzero(start)
    run_of = np.cumsum(start) - 1
    p = np.cumsum(inc[order])
    p -= np.concatenate([[0.0], p[run_start[1:] - 1]])[run_of]  # prefix sums within each series
    big = (np.abs(p).max(initial=0.0) + np.abs(lane[rs]).max(initial=0.0) + 1.0) * 4.0
    prev = np.empty(len(p))
    prev[1:] = p[:-1]
    prev[run_start] = -np.maximum(lane[rs[run_start]], 0.0)
    low = np.minimum.accumulate(prev - run_of * big) + run_of * big
    run_end = np.concatenate([run_start[1:], [len(rs)]]) - 1
    urow = rs[run_start]
    ukey = np.unique(r * k + c)
    totals = np.bincount(np.searchsorted(ukey, r * k + c), weights=wgt, minlength=len(ukey))
    dec = np.ones(len(recent))
    dec[urow] = decay ** (run_end - run_start + 1).astype(np.float64)
    add = np.zeros_like(recent)
    np.add.at(add, (ukey // k, ukey % k), totals)
    recent[urow] = dec[urow, None] * (recent[urow] + add[urow])
    value: npt.NDArray[np.float64] = p - low
    return value


def _exclusive(x: npt.NDArray[np.float64], order: npt.NDArray[np.int64], start: npt.NDArray[np.bool_]
               ) -> npt.NDArray[np.float64]:
    """For each element, the sum of the ``x`` before it among its equal keys (``order``, ``start``
    as ``ranks`` gives them), in stream order."""
    xs = x[order]
    cs = np.cumsum(xs) - xs
    run_of = np.cumsum(start) - 1
    cs -= cs[np.flatnonzero(start)][run_of]
    out = np.empty(len(x))
    out[order] = cs
    return out


def ranks(keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Each element's rank among the equal keys before it (stream order), the stable order by key,
    and where each run of equal keys starts in that order."""
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    start = np.ones(len(ks), bool)
    start[1:] = ks[1:] != ks[:-1]
    pos = np.arange(len(ks))
    first = np.maximum.accumulate(np.where(start, pos, 0))
    rank = np.empty(len(ks), np.int64)
    rank[order] = pos - first
    return rank, order, start
