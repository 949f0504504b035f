"""Judging a closed window: every series of the model tested against its calendar slot's baseline.

The window tests and the online detector (``evaluate``, ``residual.step``) give each series and
signal a verdict; the window is folded into its slot's baseline (or held out while an alert fires);
each series' alert lifecycle steps on its own evidence (``decide.step``, dedupe by ``notify_reason``).
A notification due becomes a ``Note`` whose payload is the ``Evidence`` its alert shows, summarised
here, where the sketches are, so the model stage needs none of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import residual
from ..baseline import SIGNAL_INDEX, Baseline, Batch, Window
from ..calendar import KIND_OF, Slot
from ..contract import BaselineInfo, History, ScorePoint, Summary
from ..decide import AlertState, step
from ..dedupe import Sent, notify_reason
from ..detect import Verdict
from ..evaluate import TESTS, Alphas, Found, either_day, evaluate
from ..group import Note
from ..sketch import NumericSpec, histogram_summary
from ..store import SeriesStore
from ..verdict import Evidence
from ..window import WindowSums
from .tables import CLEAN_FRACTION, SIGNALS, ModelState, SeriesCore, fingerprint

#: Tests whose breach fires at once: online detectors and the fast lane.
STRONG_TESTS = ("page_hinkley", "adwin", "sequential", "invalid")


class JudgeStep(SeriesCore):
    """A closed window's per-series verdicts, lifecycle and evidence."""

    def _evaluate(
        self, m: ModelState, sums: WindowSums | None, ws: int, slot: Slot, end: int, alpha: Alphas,
        sids: list[int],
    ) -> list[Note]:
        """Test the model's series on the closed window, learn it, and step the alerts."""
        d, st = self.d, m.store
        sids = list(sids)
        st.ensure(m.spec.size if m.spec is not None else 1, {})
        rows = st.rows_for(sids)
        for sid in list(st.held):
            st.release(sid, ws - d.adapt_after)  # flagged windows count again once adapt_after old
        fb = st.fhist.shape[3]
        w = sums.take(rows) if sums is not None else WindowSums.zeros(len(rows), st.hist.shape[2], len(st.features), fb)
        if w.feat.shape[1] < len(st.features) or w.feat.shape[2] < fb:
            w.fit(len(st.features), fb)  # opened under a config with fewer features
        counts = w.count.astype(np.float64)
        nf = len(st.features)
        fsize = np.asarray(st.fsize[:nf], dtype=np.int64)
        for j, name in enumerate(st.features):  # a feature's bins are fixed once it is ready
            if fsize[j] == 0 and m.features is not None and name in m.features.specs and m.features.ready(name):
                st.fsize[j] = fsize[j] = m.features.size(name)
        feat_ok = w.fseen[:, :nf] & (fsize > 0)[None, :] if nf else None
        batch = Batch(counts, w.hist[:, : st.hist.shape[2]].astype(np.float64), w.total, w.total_sq,
                      (counts >= d.min_window_events) & (counts > 0),
                      w.feat[:, :nf, :fb].astype(np.float64) if nf else None, feat_ok, w.invalid.astype(np.float64))

        def window(i: int) -> Window:
            feats = {name: w.feat[i, j, : st.fsize[j]].copy() for j, name in enumerate(st.features)
                     if feat_ok is not None and feat_ok[i, j]}
            return Window(ws, int(w.count[i]), w.hist[i].copy() if w.count[i] else None, float(w.total[i]),
                          float(w.total_sq[i]), feats or None, int(w.invalid[i]))

        numeric = isinstance(m.spec, NumericSpec)
        found = evaluate(st, rows, slot.chain, batch, numeric, alpha, d.min_baseline_windows, d.min_holiday_windows)
        ambiguous = np.zeros((3, len(sids)), bool)
        # A holiday judged without history of its own (against Sundays, or an ordinary day) is a
        # guess: its residual is not one of the series' own, and Page-Hinkley does not take it in.
        guessed = found["prediction"].pos != 0 if slot.alternative else np.zeros(len(sids), bool)
        if slot.alternative:
            other = evaluate(st, rows, slot.alternative, batch, numeric, alpha, d.min_baseline_windows, d.min_holiday_windows)
            ambiguous = either_day(found, other)
        # Page-Hinkley watches the prediction's residual across windows. Volume residuals of real
        # traffic are autocorrelated (weather, school terms, events): cumulative detectors on them
        # alerted every few days on the NAB and Metro series (BENCHMARKS.md), so volume relies on
        # its window test.
        pred = found["prediction"]
        watch = pred.has & ~np.isnan(pred.z) & ~guessed
        if watch.any():
            state = st.ph[rows[watch]]
            hit = residual.step(state, pred.z[watch], self._alpha(m, len(sids), "page_hinkley"))
            st.ph[rows[watch]] = state
            online = np.zeros(len(sids), bool)
            online[watch] = hit
            online &= ~pred.breach
            pred.test[online] = 3
            pred.forced[online] = True
        # Alert states are few: find their series with one isin per question, not a loop over all series.
        sid_arr = np.asarray(sids, dtype=np.int64)
        kinds = ("prediction", "volume", "feature")
        open_ = {k: np.isin(sid_arr, [sid for (sid, sg), _a in self.alert_states.items() if sg == k]) for k in kinds}
        firing = np.isin(sid_arr, [sid for (sid, sg), a in self.alert_states.items() if sg in SIGNALS and a.status == "firing"])
        lane = w.crossed.astype(bool)  # the fast lane crossed in this window: the prediction breached
        flagged = found["prediction"].breach | found["volume"].breach | firing | lane
        # Evidence: breach, clean (well below the threshold: a firing alert does not resolve on a
        # window that merely lacks the power to confirm it), or neither.
        evidence: dict[str, npt.NDArray[np.int8]] = {}
        for i, signal in enumerate(kinds):
            fs = found[signal]
            ev = np.where(fs.breach, 1, np.where(fs.has & (fs.score <= CLEAN_FRACTION * fs.threshold), 0, -1)).astype(np.int8)
            ev[ambiguous[i]] = -1
            evidence[signal] = ev
        evidence["prediction"][lane] = 1
        # Prediction first: while the prediction drifts (or is about to fire), feature drift is its
        # evidence, attached to the prediction alert, not an alert of its own.
        evidence["feature"][pred.breach | lane | open_["prediction"]] = -1
        # The few series with something to say (a breach, or an alert not inactive), with their
        # verdicts and baselines as of before this window.
        say = {k: (evidence[k] == 1) | open_[k] for k in kinds}
        todo: list[tuple[int, str, tuple[Verdict, Baseline] | None, bool | None]] = []
        for i in np.flatnonzero(say["prediction"] | say["volume"] | say["feature"]).tolist():
            for signal in kinds:
                if say[signal][i]:
                    said = int(evidence[signal][i])
                    verdict = self._verdict(st, sids[i], found[signal], i, signal)
                    if signal == "prediction" and lane[i] and (verdict is None or not verdict[0].breach):
                        verdict = self._lane_verdict(m, sids[i], ws, w, i)  # the window's evidence is the lane's
                    todo.append((i, signal, verdict, None if said < 0 else bool(said)))
        keep = ~flagged
        if keep.any():
            st.fold_many(rows[keep], slot.store, batch.take(keep))
        for j in np.flatnonzero(flagged).tolist():
            # While an alert fires, its series' windows are not the normal to compare with (until
            # ``adapt_after``), even those that lack the power to breach on their own.
            st.hold(sids[j], slot.store, window(j), bool(batch.usable[j]))
        scores = np.stack([np.where(found[k].has, found[k].score, np.nan) for k in kinds], axis=1)
        thresholds = np.stack([np.where(found[k].has, found[k].threshold, np.nan) for k in kinds], axis=1)
        st.note_many(rows, slot.chain[0], ws, counts, scores, thresholds)
        notes: list[Note] = []
        drifting = found["feature"].drifting
        for i, signal, verdict, said_ in todo:
            sid = sids[i]
            win = window(i)
            due = self._step(m, sid, signal, verdict, said_, win, end)
            if due is not None and verdict is not None:
                status, reason, starts, fp = due
                names = [st.features[j] for j in np.flatnonzero(drifting[i])] if drifting.size else []
                features = sorted(names) if signal in ("prediction", "feature") else []
                shown = self._evidence(m, sid, signal, verdict, slot, win, fp, features)
                notes.append(Note(self.series_key[sid], signal, status, reason, starts, shown))
        return notes

    def _lane_verdict(self, m: ModelState, sid: int, ws: int, w: WindowSums, i: int) -> tuple[Verdict, Baseline]:
        """The fast lane's verdict on a closed window it crossed in (a window may have no verdict of
        its own: all its predictions invalid)."""
        hist = w.hist[i].astype(np.int64)
        found, _win = self._lane_found(m, sid, ws, w, i, float(w.lane[i]), -math.log(self._alpha(m, len(m.sids), "lane")),
                                       int(w.count[i]), int(w.invalid[i]), hist)
        return found

    @staticmethod
    def _verdict(st: SeriesStore, sid: int, f: Found, i: int, signal: str) -> tuple[Verdict, Baseline] | None:
        if not f.has[i]:
            return None
        test = TESTS[int(f.test[i])]
        detail = st.features[int(f.feature[i])] if signal == "feature" else ""
        if test == "page_hinkley":
            detail = ("page_hinkley: a sustained shift of the residual over recent windows, beyond what its own "
                      "spread and autocorrelation explain")
        z = float(f.z[i])
        verdict = Verdict(float(f.score[i]), float(f.threshold[i]), bool(f.breach[i]), detail, test,
                          None if z != z else z)
        return verdict, st.baseline_at(sid, int(f.col[i]), bool(f.pos[i] == 0), signal != "volume")


    def _step(
        self,
        m: ModelState,
        sid: int,
        signal: str,
        found: tuple[Verdict, Baseline] | None,
        evidence: bool | None,
        window: Window,
        end: int,
    ) -> tuple[str, str, int, str] | None:
        """Lifecycle and dedupe of one series and signal: (status, reason, starts, fingerprint) when a
        notification is due."""
        d = self.d
        key = (sid, signal)
        before = self.alert_states.get(key, AlertState())
        if before.status != "inactive" and before.starts_at is not None and window.start < before.starts_at:
            # A window older than the alert, closing after a newer window's fast lane fired it (a
            # batch that spans windows): its evidence is not about this alert.
            return None
        after, transition = step(
            before, evidence, window.start,
            pending_windows=d.pending_windows, resolve_windows=d.resolve_windows,
            # A strong window, an online detection (evidence accumulated over many windows already) or
            # the fast lane's (anytime-valid: confirmed by construction) needs no second window.
            strong=evidence is True and found is not None
            and (found[0].score >= 2.0 * found[0].threshold or found[0].test in STRONG_TESTS),
        )
        if after.status == "inactive":
            self.alert_states.pop(key, None)
        else:
            self.alert_states[key] = after
        if found is None:
            return None
        if after.status == "firing" and transition is None and evidence is not True:
            return None  # a firing alert repeats on bad evidence only (a repeat renews its breaker)
        if after.status == "firing":
            status, starts = "firing", after.starts_at
        elif transition == "resolved":
            status, starts = "resolved", before.starts_at
        else:
            return None
        assert starts is not None
        fp = fingerprint(m.cfg.name, self.series_key[sid], signal)
        reason = notify_reason(self.sent.get(fp), status, end, d.repeat_interval)
        if reason is None:
            return None
        self.sent[fp] = Sent(status, end)  # type: ignore[arg-type]
        return status, reason, starts, fp

    def _evidence(self, m: ModelState, sid: int, signal: str, found: tuple[Verdict, Baseline], slot: Slot,
                  window: Window, fp: str, features: list[str]) -> Evidence:
        """What an alert on this series shows: the window and its baseline summarised, the history."""
        verdict, base = found
        spec = m.spec
        if signal == "feature":
            name = verdict.detail
            spec_f = m.features.specs.get(name) if m.features is not None else None
            cur_h = window.features.get(name) if window.features else None
            fb = base.features.get(name) if base.features else None
            if spec_f is not None and cur_h is not None and fb is not None:
                current = Summary(**histogram_summary(cur_h[:-1].astype(np.float64), spec_f))  # type: ignore[arg-type]
                baseline = Summary(windows=fb[3], **histogram_summary(fb[0][:-1].astype(np.float64), spec_f))  # type: ignore[arg-type]
            else:
                current, baseline = Summary(count=window.count), Summary(count=0, windows=base.windows)
        elif signal == "prediction" and spec is not None and window.hist is not None:
            current = Summary(**histogram_summary(window.hist.astype(np.float64), spec))  # type: ignore[arg-type]
            baseline = Summary(windows=base.windows, **histogram_summary(base.hist.astype(np.float64), spec))  # type: ignore[arg-type]
            if window.count and isinstance(spec, NumericSpec):
                current.mean = window.total / window.count
                baseline.mean = base.center
        else:
            typical = float(math.expm1(base.log_center))
            current = Summary(count=window.count)
            baseline = Summary(count=typical, windows=base.windows, mean=typical)
        recent, same = m.store.history(sid, slot.chain[0])
        history = History(recent=[_point(p, signal) for p in recent], same_slot=[_point(p, signal) for p in same])
        info = BaselineInfo(
            slot=m.calendar.label_for_key(base.key),
            kind=KIND_OF[str(base.key[0])],  # type: ignore[arg-type]
            windows=base.windows,
            confidence="high" if base.preferred else "low",
        )
        return Evidence(verdict, fp, dict(self.series_segment[sid]), self.series_key[sid], window.start, slot.label,
                        current, baseline, info, history, features)


def _point(p: Any, signal: str) -> ScorePoint:
    i = SIGNAL_INDEX[signal]
    score, threshold = float(p["score"][i]), float(p["threshold"][i])
    start = int(p["start"])
    if score != score:  # NaN: no verdict for this signal in that window
        return ScorePoint(window_start=start, score=None, threshold=None, count=int(p["count"]))
    return ScorePoint(window_start=start, score=score, threshold=threshold, count=int(p["count"]))

