"""Window close: the watermark closes a model's due windows; each closed window is judged and reported.

A closed window's series are judged (``judge.py``) and compared with challengers (``shadow.py``);
what comes out is one ``WindowReport`` per model window, for the model stage. Series that sent
nothing for ``series_ttl`` are forgotten here, their row reused.
"""

from __future__ import annotations

import numpy as np

from ..verdict import WindowReport, note_order
from .tables import SIGNALS, ModelState, Output, SeriesCore


class CloseStep(SeriesCore):
    """Due windows to reports."""

    def _close_due(self, out: Output, watermark: int | None) -> None:
        """Close what the watermark passed, each model's windows in order; the fast lane steps the
        events its partition read before each close, then the rest (``lane.py``)."""
        if watermark is None:
            for m in self.models.values():
                self._run_lane(m, None, out)
            return
        if watermark < np.iinfo(np.int64).max:
            self.metrics.watermark.set(watermark / 1000)
        for m in self.models.values():
            if m.pending and any(m.grid.end(m.grid.start(int(p[1].min()))) <= watermark for p in m.pending):
                if not self.shared_edges or m.params is not None:
                    self._flush_pending(m)
                else:
                    self._hold(m, watermark, out)
            for ws in m.windows.due(watermark):
                self._run_lane(m, m.grid.end(ws), out)
                self._close(m, ws, out)
            self._run_lane(m, None, out)
            if m.shadow is not None:  # windows only a challenger sent to: no champion to compare with
                for ws in [w for w in m.shadow.open if m.grid.end(w) <= watermark]:
                    del m.shadow.open[ws]


    def _hold(self, m: ModelState, watermark: int, out: Output) -> None:
        """Due windows of a model whose shared parameters have not come yet: closed to late events now,
        as they would have been, and judged once the edges come, on the series they had now."""
        self._propose(m, out)
        due = sorted({int(w) for p in m.pending for w in np.unique(m.grid.starts(p[1])).tolist()
                      if m.grid.end(int(w)) <= watermark})
        for ws in due:
            m.held.setdefault(ws, list(m.sids))
        end = m.grid.end(due[-1])
        m.windows.closed_upto = end if m.windows.closed_upto is None else max(m.windows.closed_upto, end)

    def held(self) -> int | None:
        """The end of the first window due and held back (its model waits for shared edges)."""
        ends = [m.grid.end(min(m.held)) for m in self.models.values() if m.held]
        return min(ends) if ends else None

    def _close(self, m: ModelState, ws: int, out: Output) -> None:
        held = m.held.pop(ws, None)  # a held window: judged on the series it had when it was due
        sids = m.sids if held is None else held
        sums = m.windows.pop(ws)
        for old in [w for w in m.seen if w <= ws]:
            del m.seen[old]
        if sums is not None and sids:
            rows = m.store.rows_for(sids)
            inside = rows < len(sums.count)
            active = np.zeros(len(rows), bool)
            active[inside] = sums.count[rows[inside]] > 0
            for sid in np.asarray(sids)[active].tolist():
                self.last_active[sid] = ws
        self._expire(m, ws)
        if held is not None:
            live = set(m.sids)
            sids = [sid for sid in held if sid in live]
        slot = m.calendar.slot(ws)
        end = m.grid.end(ws)
        alpha = self._alphas(m, len(sids))
        report = WindowReport(m.cfg.name, ws, end, versions=m.versions.pop(ws, {}))
        for old in [w for w in m.versions if w < ws]:  # none (windows close in order): never kept
            del m.versions[old]
        report.notes = sorted(self._evaluate(m, sums, ws, slot, end, alpha, sids), key=note_order) if sids else []
        if m.shadow is not None:  # a declared challenger is a signal of its own
            self._shadow_close(m, ws, sums, slot, end, self._alpha(m, len(sids), "shadow"), report)
        elif m.canary is not None:  # a release's canary: within the prediction window test's share
            self._canary_close(m, ws, sums, slot, end, alpha.prediction, report)
        names = sorted({f for n in report.notes for f in n.payload.features})
        if names and m.features is not None:
            index = {n: i for i, n in enumerate(m.features.names)}
            corr = m.features.correlation()
            report.features = names
            report.correlation = [[float(corr[index[a], index[b]]) for b in names] for a in names]
        out.reports.append(report)
        self.stats.windows_closed += 1
        self.metrics.windows_closed.labels(m.cfg.name).inc()

    def _expire(self, m: ModelState, now: int) -> None:
        """Forget series that sent nothing for ``series_ttl``: their history, detectors and alerts."""
        ttl = self.d.series_ttl
        stale = [sid for sid in m.sids if 0 <= self.last_active[sid] < now - ttl]
        if not stale:
            return
        # A series with events in a window still open is not stale (and its row must not be reused
        # while that window holds its counts).
        busy = {int(r) for sums in m.windows._open.values() for r in np.flatnonzero(sums.count > 0)}
        stale = [sid for sid in stale if m.store.rows.get(sid) not in busy]
        if not stale:
            return
        m.by_values.clear()
        m.native_sids = np.full(0, -1, np.int64)
        for sid in stale:
            m.sids.remove(sid)
            m.by_segment.pop(self.series_key[sid], None)
            m.store.drop(sid)
            self.last_active[sid] = -2  # expired; a new event makes it a new series
            for signal in (*SIGNALS, "feature"):
                self.alert_states.pop((sid, signal), None)
        gone = set(stale)
        for key in [k for k in self.alert_states if k[0] in gone]:  # shadow states, by version
            del self.alert_states[key]
        self.metrics.series.labels(m.cfg.name).set(len(m.sids))

