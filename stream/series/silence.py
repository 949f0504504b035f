"""Silence: a series that stops sending while its calendar slot expects events, by processing time.

A window test sees a silent series only when its window closes, and a watermark never moves for a
model that sends nothing (while a busy model keeps every other window closing). So each series'
last arrival is kept by processing time (the service's clock; a replay has none and never judges
silence), and a series whose slot's baseline expects events goes silent when none came for longer
than the baseline's slowest believable rate explains: with at least ``low`` events per window
expected (its log-count mean less three spreads), ``n`` seconds without one has probability
``exp(-low * n / window)``; past ``log(1 / alpha) * window / low`` (and at least ``FLOOR``, the
batching and commit delays), a volume alert says so. It resolves as any volume alert does, at the
close of windows with their usual volume.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ..baseline import Window
from ..detect import Verdict
from ..group import Note
from ..store import SeriesStore
from ..verdict import WindowReport
from .lane import _empty_baseline
from .tables import ModelState, Output, SeriesCore

FLOOR = 60.0  # seconds: never silent sooner (batches, commits and the producers' own lingering)
EVERY = 5.0  # seconds between two looks


class SilenceStep(SeriesCore):
    """Each series' last arrival, and silence alerts."""

    _heard: npt.NDArray[np.float64]  # per series id: processing time of its last event (nan: none yet)
    _looked: float

    def _arrived(self, sids: npt.NDArray[np.int64], now: float) -> None:
        """These series' events came now (-1: a late event of no series yet)."""
        if self.clock is None or len(sids) == 0:
            return
        sids = sids[sids >= 0]
        if len(sids) == 0:
            return
        self._room(int(sids.max()) + 1)
        self._heard[sids] = now

    def _room(self, need: int) -> None:
        """Room for ``need`` series ids in ``_heard`` (doubling; nan: not heard from)."""
        if need > len(self._heard):
            self._heard = np.concatenate([self._heard, np.full(max(need, 2 * len(self._heard)) - len(self._heard), np.nan)])

    def _silence(self, out: Output, now: float) -> None:
        """Look for series gone silent (at most every ``EVERY`` seconds)."""
        if self.clock is None or now - self._looked < EVERY:
            return
        first = self._looked == -math.inf
        self._looked = now
        now_ms = int(now * 1000)
        for m in self.models.values():
            if not m.sids:
                continue
            sids = np.asarray(m.sids, dtype=np.int64)
            self._room(int(sids.max()) + 1)
            heard = self._heard[sids]
            ws = m.grid.start(now_ms)
            if first:  # restored: series active lately count from now
                recent = np.asarray([self.last_active[s] >= ws - 2 * m.cfg.window for s in sids.tolist()])
                self._heard[sids[np.isnan(heard) & recent]] = now
                continue
            quiet = np.where(np.isnan(heard), 0.0, now - heard)
            maybe = quiet > FLOOR
            if not maybe.any():
                continue
            self._judge(m, sids[maybe], quiet[maybe], ws, now_ms, out)

    def _judge(self, m: ModelState, sids: npt.NDArray[np.int64], quiet: npt.NDArray[np.float64], ws: int,
               now_ms: int, out: Output) -> None:
        st = m.store
        rows = st.rows_for(sids)
        slot = m.calendar.slot(ws)
        col, pos = st.pick(rows, slot.chain, False, self.d.min_baseline_windows, self.d.min_holiday_windows)
        ok = col >= 0
        if not ok.any():
            return
        s = st.scal[rows[ok], col[ok]].astype(np.float64)
        low = np.expm1(s[:, SeriesStore.LOG_C] - 3.0 * np.sqrt(np.maximum(s[:, SeriesStore.LOG_S], 0.0)))
        alpha = self._alpha(m, len(m.sids), "silence")
        with np.errstate(divide="ignore"):
            limit = np.maximum(FLOOR, math.log(1.0 / alpha) * (m.cfg.window / 1000.0) / np.where(low > 1.0, low, np.nan))
        silent = (low > 1.0) & (quiet[ok] > np.nan_to_num(limit, nan=np.inf))
        for i in np.flatnonzero(silent).tolist():
            sid = int(sids[ok][i])
            state = self.alert_states.get((sid, "volume"))
            if state is not None and state.status == "firing":
                continue
            detail = (f"silent: no event for {quiet[ok][i]:.0f} s, while its slot expects at least {low[i]:.0f} "
                      f"per window (silent for {limit[i]:.0f} s has probability {alpha:.1g})")
            verdict = Verdict(float(quiet[ok][i]), float(limit[i]), True, detail, "silence", None)
            base = st.baseline_at(sid, int(col[ok][i]), bool(pos[ok][i] == 0), False) if sid in st.rows else \
                _empty_baseline(slot.chain[0], st.hist.shape[2])
            window = Window(ws, 0, None)
            due = self._step(m, sid, "volume", (verdict, base), True, window, now_ms)
            if due is None:
                continue
            status, reason, starts, fp = due
            shown = self._evidence(m, sid, "volume", (verdict, base), slot, window, fp, [])
            # Decided once every partition's watermark reaches this one's (``frontier.key_of``): at
            # once when the whole input is quiet.
            out.reports.append(WindowReport(m.cfg.name, ws, now_ms,
                                            [Note(self.series_key[sid], "volume", status, reason, starts, shown)],
                                            early=max(self._reach - 1, 0)))
            self.metrics.silent.labels(m.cfg.name).inc()
