"""Shadow mode, series side: each challenger against the champion on the same traffic, per series.

In a closed window every (series, challenger) pair with enough events on both sides is compared
(``ShadowTracker.close``); each pair's alert lifecycle steps here and its alert is built whole
(shadow alerts are never grouped). Whether each version breached anywhere goes in the report: the
verdict (promote or reject) is the model stage's, once per model (``model/shadow.py``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from ..calendar import Slot
from ..contract import Alert, BaselineInfo, History, ScorePoint, Summary
from ..decide import AlertState, step
from ..dedupe import Sent, notify_reason
from ..shadow import Comparison, ShadowTracker
from ..sketch import histogram_summary
from ..verdict import MIN_SHARE, WindowReport
from ..window import WindowSums
from .tables import ModelState, SeriesCore, fingerprint


class ShadowStep(SeriesCore):
    """Challengers compared in a closed window."""

    def _canary_close(self, m: ModelState, ws: int, sums: WindowSums | None, slot: Slot, end: int, alpha: float,
                      report: WindowReport) -> None:
        """A release's canary against the incumbent in the closed window: its alerts (the model
        stage rolls the release back on one). Then the incumbent for the next windows: the version
        that served first, until it no longer serves."""
        canary = m.canary
        assert canary is not None
        if m.incumbent is not None and canary.open.get(ws):
            canary.champion = m.incumbent
            self._shadow_close(m, ws, sums, slot, end, alpha, report, canary)
        canary.open.pop(ws, None)
        total = sum(report.versions.values())
        if total and report.versions.get(m.incumbent or "", 0) < MIN_SHARE * total:
            m.incumbent = max(report.versions, key=lambda v: (report.versions[v], v))

    def _shadow_close(self, m: ModelState, ws: int, sums: WindowSums | None, slot: Slot, end: int, alpha: float,
                      report: WindowReport, tracker: ShadowTracker | None = None) -> None:
        """Compare each challenger (or the canary in ``tracker``) with the champion in the closed
        window: its alerts, and per version whether any series breached (the model stage counts
        those windows and gives the verdict)."""
        shadow, d = tracker or m.shadow, self.d
        assert shadow is not None
        canary = tracker is not None
        champion_of: dict[int, npt.NDArray[np.int64]] = {}
        if sums is not None:
            width = sums.hist.shape[1]
            others: dict[int, npt.NDArray[np.int64]] = {}
            if canary:  # the series counted every version: the incumbent's is what the others leave
                for (sid, _version), counts in shadow.open.get(ws, {}).items():
                    o = others.setdefault(sid, np.zeros(width, np.int64))
                    o[: min(width, len(counts))] += counts[:width]
            for sid, _version in shadow.open.get(ws, {}):
                r = m.store.rows.get(sid)
                if r is not None and r < len(sums.count):
                    champion_of[sid] = sums.hist[r] - others[sid] if sid in others else sums.hist[r]
        compared = report.shadow_compared if not canary else {}
        for c in shadow.close(ws, champion_of, alpha):
            if c.breach is None:
                continue
            compared[c.version] = compared.get(c.version, False) or c.breach
            key = (c.sid, f"shadow:{c.version}")
            before = self.alert_states.get(key, AlertState())
            after, transition = step(before, c.breach, ws, pending_windows=d.pending_windows,
                                     resolve_windows=d.resolve_windows, strong=c.breach and c.score >= 2.0 * c.threshold)
            if after.status == "inactive":
                self.alert_states.pop(key, None)
            else:
                self.alert_states[key] = after
            if after.status == "firing":
                status, starts = "firing", after.starts_at
            elif transition == "resolved":
                status, starts = "resolved", before.starts_at
            else:
                continue
            assert starts is not None
            fp = fingerprint(m.cfg.name, self.series_key[c.sid], f"shadow:{c.version}")
            reason = notify_reason(self.sent.get(fp), status, end, d.repeat_interval)
            if reason is None:
                continue
            self.sent[fp] = Sent(status, end)  # type: ignore[arg-type]
            alert = self._shadow_alert(m, c, status, starts, reason, fp, slot, ws, end, shadow, canary)
            report.shadow_alerts.append(alert)

    def _shadow_alert(self, m: ModelState, c: Comparison, status: str, starts: int, reason: str, fp: str,
                      slot: Slot, ws: int, end: int, tracker: ShadowTracker, canary: bool) -> Alert:
        assert m.spec is not None
        champion = tracker.champion
        current = Summary(**histogram_summary(c.challenger, m.spec))  # type: ignore[arg-type]
        baseline = Summary(windows=1, **histogram_summary(c.champion, m.spec))  # type: ignore[arg-type]
        ring = tracker.recent.get((c.sid, c.version), ())
        history = History(recent=[ScorePoint(window_start=w, count=n, score=sc, threshold=th) for w, n, sc, th in ring],
                          same_slot=[])
        where = self.series_key[c.sid] or "all traffic"
        verb = "predicts differently from" if status == "firing" else "agrees again with"
        who, whom = (f"release {c.version}", f"{champion}, the version serving before it") if canary \
            else (f"challenger {c.version}", f"champion {champion}")
        summary = (f"{m.cfg.name} [{where}]: {who} {verb} {whom} "
                   f"(js_divergence {c.score:.4f}, threshold {c.threshold:.4f}) on the same traffic")
        return Alert(
            alert_id="a-" + hashlib.sha256(f"{fp}|{starts}".encode()).hexdigest()[:16],
            fingerprint=fp, status=status, severity="warning", model=m.cfg.name,  # type: ignore[arg-type]
            model_version=c.version, segment=self.series_segment[c.sid], signal="shadow",
            test="js_divergence_g_test", context=slot.label, window_start=ws, window_end=end, starts_at=starts,
            ends_at=end if status == "resolved" else None, score=c.score, threshold=c.threshold,
            baseline=baseline, current=current,
            baseline_info=BaselineInfo(slot=f"champion {champion} in the same window", kind="recent", windows=1,
                                       confidence="high"),
            history=history, notify_reason=reason, summary=summary,  # type: ignore[arg-type]
        )
