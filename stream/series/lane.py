"""The fast lane: every series' open window tested event by event, so a broken model breaks in seconds.

A window test waits for the window to close (an hour, or a day). The fast lane is an anytime-valid
sequential test of the window so far against its calendar slot's baseline, updated with every
event in stream order, so a severe break (predictions null or NaN, one constant value, a shift far
beyond the slot's normal variation) fires at once, and a healthy window spends no more than its
share of the false-alarm budget however often it is looked at.

The test is an e-process (Shin, Ramdas and Rinaldo 2022) over the window's categories: the
prediction's bins and one more for invalid predictions (null, NaN, wrong type, out of range). Its
null hypothesis is a *ceiling*, not a point: no category is more frequent than the slot's history
allows (its mean share, plus its window-to-window spread and the baseline's own estimation error,
plus a slack for the variation inside a window; for the invalid share, its history or 0.1%). Under
any distribution below the ceiling, ``prod q_t(x_t) / ceil(x_t)`` is a supermartingale for any
predictable ``q_t``, here the running counts of the window with a half count per category
(Krichevsky-Trofimov, the multinomial mixture of Lindon and Malek 2022): so by Ville's inequality
each of them crosses ``1 / alpha`` with probability at most ``alpha``. ``alpha`` is one test's
share of the model's budget, like each window test's (``tables.SeriesCore._alpha``: e-values per
series and window, Bonferroni across them as Dandapanthula and Ramdas 2025 do for e-detectors).

The plug-in ``q_t`` is what the series sent lately: its categories' counts decayed by half every
32 events (with half a count each), so the test adapts within a few dozen events of a break however
long its window has run. A memory that short has a price: with twenty bins its plug-in's own error
costs a few tenths of a nat per event, and against a loose ceiling (a slot measured from few or
small windows) that is all a moderate shift earns. A second statistic runs beside it with a memory
of 1,024 events (``SLOW``): slower to turn, nearly free of that cost (on a 1 sd shift against 1.7
times each bin's share it climbs three times as fast: tests/test_lane.py). Each of the two spends
half the lane's ``alpha``. The statistic is the CUSUM of the log e-values, the best over every
starting event, so a window's healthy start does not make a later break climb out of a hole; its
threshold pays for the starting points it looks at: ``log(2 n (1 + log n)^2 / alpha)`` after ``n``
events (start ``s`` is held to ``alpha / (2 s (1 + log s)^2)``, and those sum to at most ``alpha``).

The events are stepped in stream order per series with a few sorts per batch and no per-event
Python (``stream.series.eprocess``: the statistic, with ``lane_values`` its one-at-a-time
reference), so the crossing is found at the exact
event whatever the batches.

>>> import numpy as np
>>> from stream.series.eprocess import lane_values
>>> ceil = np.log(np.array([0.6, 0.6, 0.001]))  # two bins seen about half and half, invalid very rare
>>> healthy = lane_values(np.zeros(3), 0.0, np.array([0, 1] * 50), ceil)
>>> bool(healthy.max() < 3)  # a CUSUM: it keeps falling back to zero
True
>>> broken = lane_values(np.array([20.0, 20.0, 0.0]), 0.0, np.array([2] * 8), ceil)
>>> [round(float(v), 1) for v in broken]  # eight invalid predictions in a row
[2.5, 6.1, 10.1, 14.5, 19.1, 24.0, 28.9, 34.0]
"""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import orjson

from ..baseline import Baseline, Window
from ..contract import _to_epoch_ms
from ..decode import DeadLetter
from ..detect import Verdict, t_two_sided
from ..group import Note
from ..sketch import NumericSpec, bin_centers
from ..store import SeriesStore
from ..verdict import WindowReport
from ..window import WindowSums
from . import eprocess
from .eprocess import DECAY, SLOW, cusum
from .tables import ModelState, Output, SeriesCore, segment_key

#: Dead-letter reasons that are a model's broken prediction (the event's series can still be read).
REFUSED = frozenset({"invalid_event", "prediction_type", "malformed_json"})
Z = 4.0  # standard deviations of a category's share the ceiling allows
TAIL = 2.0 * NormalDist().cdf(-Z)  # the two-sided tail beyond Z
SLACK = 0.25  # relative slack per hour of window: a partial window is not the whole window's average
INVALID_FLOOR = 0.001  # an invalid share no ceiling goes below (a stray bad event is not a break)
HOUR_MS = 3_600_000
CHUNK = 20_000  # events of one window stepped at once (DECAY ** -CHUNK stays a finite float)



class LaneStep(SeriesCore):
    """Events (valid, and refused for their prediction) into the open windows' sequential tests."""

    _refused: list[DeadLetter]

    def _lane(self, m: ModelState, rows: npt.NDArray[np.int64], ws: npt.NDArray[np.int64],
              cats: npt.NDArray[np.int64], ts: npt.NDArray[np.int64] | None, out: Output,
              where: npt.NDArray[np.int64] | None = None, reach: npt.NDArray[np.int64] | None = None) -> None:
        """Queue these events for the sequential tests of their windows: ``cats`` are bins, the
        spec's size for an invalid event; ``ts`` the event times (None: their window's start);
        ``where`` their places in the batch, or ``reach`` (events that waited for the shared bin
        edges) the partition's latest event time at each. They are stepped by ``_run_lane``, in
        event-time order with the window closes (``close.py``), so that what a test sees is the
        same whatever the batches: a window closes when the partition's watermark passes its end,
        and the lane steps an event when the partition has read it."""
        if not self.d.fast_lane or m.spec is None or len(rows) == 0:
            return
        t = ts if ts is not None else ws.copy()
        if reach is None:
            reach = np.maximum(self._prefix[where], t) if where is not None and self._prefix is not None \
                else np.maximum(t, self._reach)
        m.lane_queue.append((rows, ws, cats, t, reach))

    def _run_lane(self, m: ModelState, upto: int | None, out: Output) -> None:
        """Step the queued events the partition had read before its watermark reached ``upto`` (the
        end of the window about to close; None: all of them)."""
        if not m.lane_queue:
            return
        rows, ws, cats, ts, reach = (np.concatenate(a) for a in zip(*m.lane_queue, strict=True))
        order = np.argsort(reach, kind="stable")
        rows, ws, cats, ts, reach = rows[order], ws[order], cats[order], ts[order], reach[order]
        n = len(rows) if upto is None else int(np.searchsorted(reach - self.d.allowed_lateness, upto, side="left"))
        m.lane_queue = [(rows[n:], ws[n:], cats[n:], ts[n:], reach[n:])] if n < len(rows) else []
        if n == 0:
            return
        shape = self._shape(m)
        for w in np.unique(ws[:n]).tolist():
            if w not in m.windows._open:
                continue  # closed already: these events were late by the time the partition read them
            sel = ws[:n] == w
            sums = m.windows.sums(w, shape)
            r = rows[:n][sel]
            sums.room(int(r.max()) + 1)
            self._step_window(m, w, sums, r, cats[:n][sel], ts[:n][sel], reach[:n][sel], out)

    def _shape(self, m: ModelState) -> tuple[int, int, int, int]:
        assert m.spec is not None
        st = m.store
        names = m.features.names if m.features is not None else []
        st.ensure(m.spec.size, {n: m.features.max_size for n in names} if m.features is not None else {})
        return (len(st.scal), st.hist.shape[2], st.fhist.shape[2], st.fhist.shape[3])

    def _step_window(self, m: ModelState, w: int, sums: WindowSums, r: npt.NDArray[np.int64],
                     c: npt.NDArray[np.int64], t: npt.NDArray[np.int64], reach: npt.NDArray[np.int64],
                     out: Output) -> None:
        urows = np.unique(r)
        todo = urows[sums.ready[urows] == 0]
        if len(todo):
            self._ceilings(m, w, sums, todo)
        alpha = self._alpha(m, len(m.sids), "lane")
        for lo in range(0, len(r), CHUNK):  # (the decay's weights stay finite)
            hi = lo + CHUNK
            self._step_chunk(m, w, sums, r[lo:hi], c[lo:hi], t[lo:hi], reach[lo:hi], alpha, out)

    def _step_chunk(self, m: ModelState, w: int, sums: WindowSums, r: npt.NDArray[np.int64],
                    c: npt.NDArray[np.int64], t: npt.NDArray[np.int64], reach: npt.NDArray[np.int64],
                    alpha: float, out: Output) -> None:
        k = sums.seen.shape[1]
        rank_r, order, start = eprocess.ranks(r)
        _rank_c, order_c, start_c = eprocess.ranks(r * k + c)
        ranks = (rank_r, order, start, order_c, start_c)
        rs = r[order]
        run_start = np.flatnonzero(start)
        run_end = np.concatenate([run_start[1:], [len(rs)]]) - 1
        seen_n = sums.seen.sum(axis=1)
        n = seen_n[rs] + rank_r[order] + 1.0
        # each of the two statistics spends half of the lane's alpha
        threshold = np.log(2.0 * n * (1.0 + np.log(n)) ** 2 / (alpha / 2.0))
        fast = cusum(sums.recent, sums.lane, DECAY, r, c, sums.ceil, ranks)
        slow = cusum(sums.slow_recent, sums.slow, SLOW, r, c, sums.ceil, ranks)
        value = np.maximum(fast, slow)
        hit = (value >= threshold) & ~sums.crossed[rs]
        urow = rs[run_start]
        sums.lane[urow] = fast[run_end]
        sums.slow[urow] = slow[run_end]
        np.add.at(sums.seen, (r, c), 1)
        if not hit.any():
            return
        for i in [int(i) for i in np.flatnonzero(hit)]:
            row = int(rs[i])
            if sums.crossed[row]:
                continue  # its first crossing here is the one
            sums.crossed[row] = True
            j = int(order[i])
            seen = sums.seen[row] - np.bincount(c[order[i + 1:]][rs[i + 1:] == row], minlength=k)  # up to the crossing
            self._crossed(m, w, sums, row, seen, float(value[i]), float(threshold[i]), int(t[j]), int(reach[j]), out)

    def _ceilings(self, m: ModelState, w: int, sums: WindowSums, rows: npt.NDArray[np.int64]) -> None:
        """The ceiling of each category for these series in this window, from its slot's baseline.
        On a holiday, from both its own chain (past holidays, then Sundays) and the ordinary day's,
        the higher of the two, and only where both have one: which of them a holiday is like is
        what the window test judges (``either_day``), not the lane.

        A window longer than an hour is not stepped through in a random order: its first hours can
        look like the window before it (a 06:00-12:00 window opens at night). Its ceiling is the
        highest over the windows of the same local day, so that any part of it that looks like one
        of them is no evidence; only the slot's own baseline decides whether the lane runs at all."""
        st, d = m.store, self.d
        bins = sums.hist.shape[1]
        slot = m.calendar.slot(w)
        slack = SLACK * max(1.0, m.cfg.window / HOUR_MS)
        ceil = np.full((len(rows), bins + 1), -np.inf)
        inval = np.zeros(len(rows))
        have = np.ones(len(rows), bool)
        edges = m.spec.edges if isinstance(m.spec, NumericSpec) and m.spec.frozen else None
        if edges is not None and len(edges) + 1 != bins:
            edges = None
        chains = [(slot.chain, True), (slot.alternative, True)]
        if m.cfg.window > HOUR_MS:
            chains += [(m.calendar.slot(o).chain, False) for o in _same_day(m, w)]
        for chain, own in chains:
            if not chain:
                continue
            col, _pos = st.pick(rows, chain, True, d.min_baseline_windows, d.min_holiday_windows)
            ok = col >= 0
            if ok.any():
                hist = st.hist[rows[ok], col[ok], :bins].astype(np.float64)
                s = st.scal[rows[ok], col[ok]].astype(np.float64)
                n_w = np.maximum(hist.sum(axis=1), 1.0)
                p = hist / n_w[:, None]
                k_eff = np.clip(s[:, SeriesStore.N_PRED], 1.0, st.k)
                excess = np.maximum(s[:, SeriesStore.DISP], 1.0) - 1.0
                var = p * (1.0 - p) * ((excess + 1.0 / k_eff) / n_w)[:, None]
                up = p * (1.0 + slack) + Z * np.sqrt(var) + (3.0 / (k_eff * n_w))[:, None]
                if edges is not None:
                    spread = np.maximum(s[:, SeriesStore.SPREAD], 0.0)
                    # where a new window's mean may fall, from k of them (Student's t, not Z: three
                    # windows say little about how far the next one can be)
                    sample = spread * k_eff / np.maximum(k_eff - 1.0, 1.0) * (1.0 + 1.0 / k_eff)
                    ahead = t_two_sided(TAIL, np.maximum(k_eff - 1.0, 1.0)) * np.sqrt(sample)
                    up = _moved(up, edges, Z * np.sqrt(spread), np.sqrt(np.maximum(s[:, SeriesStore.WITHIN], 0.0)),
                                ahead)
                ceil[ok, :bins] = np.maximum(ceil[ok, :bins], np.log(np.minimum(up, 1.0)))
            if not own:
                continue
            have &= ok
            col, _pos = st.pick(rows, chain, False, 1)
            ok = col >= 0
            if ok.any():
                s = st.scal[rows[ok], col[ok]].astype(np.float64)
                share = np.maximum(s[:, SeriesStore.INVALID], 0.0)
                n_w = np.maximum(np.expm1(s[:, SeriesStore.LOG_C]), 1.0)
                inval[ok] = np.maximum(inval[ok], share * (1.0 + slack) + Z * np.sqrt(share / n_w))
        ceil[~have, :bins] = 0.0  # no baseline: the valid predictions are no evidence either way
        ceil[:, bins] = np.log(np.minimum(np.maximum(inval, INVALID_FLOOR), 1.0))
        sums.ceil[rows] = ceil
        sums.ready[rows] = np.where(have, 1, -1)

    def _crossed(self, m: ModelState, w: int, sums: WindowSums, row: int, seen: npt.NDArray[np.int64],
                 value: float, threshold: float, at: int, reach: int, out: Output) -> None:
        """A series' test crossed at event time ``at``: its prediction alert fires now (an early
        report, decided by the model stage once every partition read as far as ``reach``),
        unless it fires already."""
        sid = next((s for s, rr in m.store.rows.items() if rr == row), None)
        if sid is None:
            return
        bins = sums.hist.shape[1]
        hist = seen[:bins].astype(np.int64)
        invalid = int(seen[bins])
        count = int(hist.sum())
        found, window = self._lane_found(m, sid, w, sums, row, value, threshold, count, invalid, hist)
        due = self._step(m, sid, "prediction", found, True, window, at)
        self.metrics.lane_crossings.labels(m.cfg.name).inc()
        if due is None:
            return
        status, reason, starts, fp = due
        shown = self._evidence(m, sid, "prediction", found, m.calendar.slot(w), window, fp, [])
        report = WindowReport(m.cfg.name, w, at, [Note(self.series_key[sid], "prediction", status, reason, starts, shown)],
                              early=reach, versions=dict(m.versions.get(w, {})))
        out.reports.append(report)

    def _lane_found(self, m: ModelState, sid: int, w: int, sums: WindowSums, row: int, value: float,
                    threshold: float, count: int, invalid: int, hist: npt.NDArray[np.int64]
                    ) -> tuple[tuple[Verdict, Baseline], Window]:
        """The lane's verdict on a series' window so far, with the baseline it was tested against."""
        bins = sums.hist.shape[1]
        n = max(count + invalid, 1)
        share_ceiling = float(np.exp(sums.ceil[row, bins]))
        lately = sums.recent[row]  # what the series sent lately (what the test found)
        if lately[bins] > share_ceiling * max(float(lately.sum()), 1.0) or invalid / n > share_ceiling:
            test = "invalid"
            detail = (f"invalid predictions: {invalid} of {n} events in the open window (null, NaN, wrong type "
                      f"or out of range; at most {share_ceiling:.2%} expected)")
        else:
            test = "sequential"
            detail = f"sequential test of the open window ({n} events) against its slot's ceiling"
        verdict = Verdict(value, threshold, True, detail, test, None)
        slot = m.calendar.slot(w)
        base = m.store.baseline(sid, slot.chain, True, self.d.min_baseline_windows, self.d.min_holiday_windows)
        if base is None and slot.alternative:
            base = m.store.baseline(sid, slot.alternative, True, self.d.min_baseline_windows, self.d.min_holiday_windows)
        # The window so far as its sums hold it (the events the test has stepped may be fewer: the
        # rest of the batch is counted already, and its total with them; a mean of one over the
        # other's count was ten times the values).
        n_all = int(sums.count[row])
        window = Window(w, n_all, sums.hist[row].astype(np.int64) if base is not None and n_all else None,
                        float(sums.total[row]), float(sums.total_sq[row]), None, int(sums.invalid[row]))
        if base is None:
            base = _empty_baseline(slot.chain[0], bins)
        return (verdict, base), window

    def _count_refused(self, out: Output) -> None:
        """The events of this batch refused for their prediction, counted for their series (those
        whose model and segment can be read, of a series that exists, in an open window) and stepped
        through the fast lane."""
        refused, self._refused = self._refused, []
        by_model: dict[str, tuple[list[int], list[int], list[int]]] = {}
        place = {rec.offset: i for i, rec in enumerate(self._batch)} if self._prefix is not None else {}
        for dl in refused:
            got = self._series_of_refused(dl)
            if got is not None:
                m, sid, ts = got
                sids, tss, pos = by_model.setdefault(m.cfg.name, ([], [], []))
                sids.append(sid)
                tss.append(ts)
                pos.append(place.get(dl.record.offset, len(self._batch) - 1))
        for name, (sids, tss, pos) in by_model.items():
            m = self.models[name]
            self.metrics.invalid.labels(name).inc(len(sids))
            if m.spec is None or not m.spec.frozen or m.pending:
                continue  # nothing to count them with yet (its bins are still being learned)
            times = np.array(tss, dtype=np.int64)
            starts = m.grid.starts(times)
            keep = ~m.windows.late_mask(starts)
            if not keep.any():
                continue
            self._arrived(np.array(sids, dtype=np.int64), self.clock() if self.clock is not None else 0.0)
            rows = m.store.rows_for(np.array(sids, dtype=np.int64)[keep])
            m.windows.add_invalid(starts[keep], rows, self._shape(m))
            self._lane(m, rows, starts[keep], np.full(len(rows), m.spec.size, np.int64), times[keep], out,
                       np.array(pos, dtype=np.int64)[keep])

    def _series_of_refused(self, dl: DeadLetter) -> tuple[ModelState, int, int] | None:
        """The model, series and event time of a refused event, when they can be read."""
        raw = dl.record.value
        try:
            d = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            # Python's json writes NaN and Infinity as bare words by default: a model server's
            # broken prediction, not an unreadable record (its json reads them back).
            try:
                d = json.loads(raw) if raw else None
            except (ValueError, UnicodeDecodeError, RecursionError):
                return None
        if not isinstance(d, dict) or not isinstance(d.get("model"), str):
            return None
        m = self.models.get(d["model"])
        seg = d.get("segment", {})
        if m is None or not isinstance(seg, dict):
            return None
        by = m.cfg.segment_by
        values = {k: seg.get(k, "(none)") for k in by} if by is not None else dict(seg)
        if not all(isinstance(v, str) for v in values.values()):
            return None
        ts: int | None
        try:
            ts = _to_epoch_ms(d.get("ts"))
        except (ValueError, TypeError):
            ts = m.last_ts
        if ts is None:
            return None
        # Only a series that exists: a refused record must not make one (nor grow the model's
        # series, and with them every threshold, out of garbage).
        sid = m.by_segment.get(segment_key(values))
        if sid is None:
            return None
        return m, sid, int(ts)


def _empty_baseline(key: tuple[object, ...], bins: int) -> Baseline:
    """What an alert on a series without history shows as its baseline: nothing yet."""
    return Baseline(key, 0, False, np.zeros(bins, np.float32), 1.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _same_day(m: ModelState, w: int) -> list[int]:
    """The other windows of window ``w``'s local day (its neighbours, for the lane's ceiling)."""
    day = m.calendar.slot(w).local_start.date()
    out: list[int] = []
    prev = w
    while len(out) < 96:
        prev = m.grid.start(prev - 1)
        if m.calendar.slot(prev).local_start.date() != day:
            break
        out.append(prev)
    nxt = m.grid.end(w)
    while len(out) < 96 and m.calendar.slot(nxt).local_start.date() == day:
        out.append(nxt)
        nxt = m.grid.end(nxt)
    return out


def _moved(up: npt.NDArray[np.float64], edges: npt.NDArray[np.float64], reach: npt.NDArray[np.float64],
           within: npt.NDArray[np.float64], ahead: npt.NDArray[np.float64] | None = None) -> npt.NDArray[np.float64]:
    """Numbers are ordered: a window of a slot whose location moves from week to week by about
    ``reach / Z`` (the spread of its window means) may hold its mass anywhere that far from where
    the baseline's was. Each bin's ceiling is the highest of the bins whose middles are within
    ``reach`` of it. Where the slot's predictions are tighter than a bin within a window
    (``within``, their standard deviation, under the typical gap between bin middles: a forecast
    that is the same for every event of an hour, one bin, a different one each week), a value
    moves from bin to bin by crossing edges, not middles: every bin whose nearest point is within
    ``ahead`` (where a new window's mean may fall; ``reach`` when not given) is in reach, and the next bin always is (edges learned from a few such values can
    be a sliver apart: 83.67 and 83.83, with a bin between them that no week's value falls in), so
    where an edge falls is no evidence of a break. Spread predictions do not get that: for them it
    would cost a 1 sd shift five sixths of its evidence per event (0.30 nats against 0.05 on a
    Beta(2, 5) in 20 bins), and the live bench's +1 sd shift went unbroken for 900 s.

    >>> edges = np.array([0.5, 1.5, 2.5])  # bins: below 0.5, 0.5-1.5, 1.5-2.5, above 2.5
    >>> up = np.array([[0.1, 0.7, 0.1, 0.1]])
    >>> _moved(up, edges, np.array([0.0]), np.array([1.5])).tolist()  # spread: as it was
    [[0.1, 0.7, 0.1, 0.1]]
    >>> _moved(up, edges, np.array([0.0]), np.array([0.1])).tolist()  # tight: the next bin too
    [[0.7, 0.7, 0.7, 0.1]]
    >>> _moved(up, edges, np.array([2.0]), np.array([1.5])).tolist()  # a slot that moves by 2
    [[0.7, 0.7, 0.7, 0.7]]
    >>> sliver = np.array([0.5, 1.5, 1.52, 2.5])  # a bin 0.02 wide between the second and the fourth
    >>> _moved(np.array([[0.1, 0.7, 0.0, 0.1, 0.1]]), sliver, np.array([0.1]), np.array([0.01])).tolist()
    [[0.7, 0.7, 0.7, 0.7, 0.1]]
    """
    lo = np.concatenate(([-np.inf], edges))
    hi = np.concatenate((edges, [np.inf]))
    centers = bin_centers(edges)
    dist = np.abs(centers[:, None] - centers[None, :])  # (bins, bins)
    near = dist[None, :, :] <= reach[:, None, None]
    gaps = np.diff(centers)
    gap = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 0.0
    with np.errstate(invalid="ignore"):
        apart = np.maximum(np.maximum(lo[None, :] - hi[:, None], lo[:, None] - hi[None, :]), 0.0)  # nearest points
    idx = np.arange(len(centers))
    ahead = reach if ahead is None else ahead
    crossing = (apart[None, :, :] <= ahead[:, None, None]) | (np.abs(idx[:, None] - idx[None, :]) <= 1)[None, :, :]
    near |= crossing & (within < gap)[:, None, None]
    return np.where(near, up[:, None, :], 0.0).max(axis=2)

