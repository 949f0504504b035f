"""The pure core: a micro-batch of records in; alerts, commands and dead letters out.

No Kafka and no wall clock in here: the service and the replay command feed records and an optional
clock, and publish what comes out. Steps, in order (each in its own module):
decode -> route to (model, segment) -> window (watermark) -> sketch -> on close: calendar slot ->
baseline -> detect -> decide -> dedupe -> act.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from .act import BreakerPolicy
from .baseline import SIGNAL_INDEX, Baseline, SeriesStore, Window
from .calendar import KIND_OF, Calendar, Slot, SlotKey
from .config import Config, ResolvedModel
from .contract import (
    Alert,
    BaselineInfo,
    Command,
    History,
    ScorePoint,
    Summary,
)
from .decide import AlertState, severity, step
from .decode import DeadLetter, Event, Record, decode_batch
from .dedupe import Sent, notify_reason
from .detect import ResidualDetectors, Verdict, distribution_test, mean_shift_test, volume_test
from .features import FeatureSketch, correlated_groups
from .group import Emission, Note, SegmentGrouper
from .metrics import Metrics
from .sketch import CategoricalSpec, NumericSpec, Spec, grouped_histograms, histogram_summary
from .window import Accumulator, OpenWindows, Watermark

FOUR_WEEKS_MS = 28 * 86_400_000
SIGNALS = ("prediction", "volume")
CLEAN_FRACTION = 0.5


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.alerts += other.alerts
        self.commands += other.commands
        self.dead_letters += other.dead_letters


@dataclass
class Stats:
    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    windows_closed: int = 0


def segment_key(segment: dict[str, str]) -> str:
    """Canonical text of a segment: ``k=v`` pairs sorted by key, ``,``-joined (``""`` for none)."""
    return ",".join(f"{k}={segment[k]}" for k in sorted(segment))


def fingerprint(model: str, segment: str, signal: str) -> str:
    return hashlib.sha256(f"{model}|{segment}|{signal}".encode()).hexdigest()[:16]


def _evidence(v: Verdict) -> bool | None:
    """Breach, clean, or neither: a window counts as clean only well below its threshold.

    The hysteresis keeps a firing alert from resolving on a window that merely lacks the power to
    confirm the drift (a quiet night with few events), while a pending one still needs breaches.
    """
    if v.breach:
        return True
    if v.score <= CLEAN_FRACTION * v.threshold:
        return False
    return None


class ModelState:
    """Everything the engine keeps for one model."""

    def __init__(self, cfg: ResolvedModel, baseline_windows: int):
        self.cfg = cfg
        self.store = SeriesStore(baseline_windows)
        self.calendar = Calendar(
            cfg.timezone,
            cfg.holidays,
            {date.fromisoformat(k): v for k, v in cfg.holiday_dates.items()},
            weekly=cfg.calendar == "weekly",
        )
        self.windows = OpenWindows(cfg.window)
        self.spec: Spec | None = None
        self.sids: list[int] = []
        self.by_segment: dict[str, int] = {}
        self.pending: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
        self.features = FeatureSketch(cfg.features) if cfg.features else None
        self.seen: dict[int, set[str]] = {}  # event ids per open window


@dataclass(slots=True)
class _Routed:
    sids: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)


class Engine:
    """Drift detection over micro-batches of raw records."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
        idle_after: float = 30.0,
        budget_share: float = 1.0,
    ):
        self.config = config
        self.d = config.defaults
        self.metrics = metrics or Metrics()
        self.clock = clock
        # The share of each model's false-alarm budget this engine may spend (one engine per input
        # partition: each gets 1/partitions, so the model's total stays within the budget).
        self.budget_share = budget_share
        self.idle_after = idle_after if clock is not None else float("inf")
        self.watermark = Watermark(self.d.allowed_lateness)
        self.models: dict[str, ModelState] = {name: ModelState(config.resolved(name), self.d.baseline_windows) for name in config.models}
        self.series_model: list[str] = []
        self.series_segment: list[dict[str, str]] = []
        self.series_key: list[str] = []
        self.last_active: list[int] = []  # start of the last window with events, per series
        self.alert_states: dict[tuple[int, str], AlertState] = {}
        self.sent: dict[str, Sent] = {}
        self.online: dict[tuple[int, str], ResidualDetectors] = {}
        self.grouper = SegmentGrouper(self.d.group_min_segments, self.d.repeat_interval)
        self.breakers = BreakerPolicy(
            ttl=self.d.break_ttl, max_open=self.d.max_open_breakers, signing_key=config.commands.key()
        )
        self.stats = Stats()

    # ----------------------------------------------------------------- ingest
    def process(self, records: Sequence[Record]) -> Output:
        out = Output()
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_events.observe(len(records))
        good, bad = decode_batch(records, self.d.max_event_bytes)
        for dl in bad:
            self._dead(out, dl)
        now = self.clock() if self.clock is not None else 0.0
        now_ms = int(now * 1000) if self.clock is not None else None
        routed: dict[str, _Routed] = {}
        part_max: dict[int, int] = {}
        for event, rec in good:
            reason = self._route(event, rec, now_ms, routed)
            if reason is not None:
                self._dead(out, DeadLetter(rec, reason[0], reason[1]))
        for name, cols in routed.items():
            accepted_ts = self._ingest(self.models[name], cols, out)
            for p, ts in accepted_ts.items():
                part_max[p] = max(part_max.get(p, ts), ts)
        for p, ts in part_max.items():
            self.watermark.observe(p, ts, now)
        self._close_due(out, self.watermark.value(now, self.idle_after))
        return out

    def finish(self) -> Output:
        """End of input (replay): close every open window."""
        out = Output()
        self.watermark.flush()
        self._close_due(out, self.watermark.value(0.0, self.idle_after))
        return out

    def tick(self) -> Output:
        """No new records: idle partitions may release the watermark."""
        out = Output()
        now = self.clock() if self.clock is not None else 0.0
        self._close_due(out, self.watermark.value(now, self.idle_after))
        return out

    def _dead(self, out: Output, dl: DeadLetter) -> None:
        out.dead_letters.append(dl)
        self.stats.dead_lettered += 1
        self.metrics.dead_lettered.labels(dl.reason).inc()

    def _model(self, name: str) -> ModelState | None:
        m = self.models.get(name)
        if m is None and self.d.unknown_models == "register" and len(self.models) < 10_000:
            m = self.models[name] = ModelState(self.config.resolved(name), self.d.baseline_windows)
        return m

    def _route(
        self, event: Event, rec: Record, now_ms: int | None, routed: dict[str, _Routed]
    ) -> tuple[str, str] | None:
        m = self._model(event.model)
        if m is None:
            return "unknown_model", f"model {event.model!r} is not configured (known: {', '.join(sorted(self.models))})"
        if now_ms is not None and event.ts > now_ms + self.d.max_future:
            return "future", f"ts is {(event.ts - now_ms) / 1000:.0f}s ahead of the clock"
        # A producer retry repeats an event: count it once. Ids are kept while their window is open
        # (an older repeat is late anyway).
        ws = event.ts - event.ts % m.cfg.window
        seen = m.seen.get(ws)
        if seen is None:
            seen = m.seen[ws] = set()
        elif event.event_id in seen:
            return "duplicate", f"event_id {event.event_id!r} was already counted in this window"
        pred = event.prediction
        value: Any
        if isinstance(pred, str):
            kind, value = "categorical", pred
        elif isinstance(pred, dict):
            if not pred:
                return "invalid_event", "prediction: empty probability map"
            kind, value = "categorical", max(pred, key=pred.__getitem__)
        else:
            kind, value = "numeric", float(pred)
        if m.spec is None:
            m.spec = NumericSpec() if kind == "numeric" else CategoricalSpec()
        elif m.spec.kind != kind:
            return "prediction_type", f"prediction is {kind} but model {m.cfg.name!r} sends {m.spec.kind} predictions"
        seg = event.segment
        if m.cfg.segment_by is not None:
            seg = {k: seg.get(k, "(none)") for k in m.cfg.segment_by}
        skey = segment_key(seg)
        sid = m.by_segment.get(skey)
        if sid is None:
            if len(m.sids) >= self.d.max_series_per_model:
                return "too_many_series", f"model {m.cfg.name!r} already has {len(m.sids)} series"
            sid = self._new_series(m, seg, skey)
        cols = routed.get(m.cfg.name)
        if cols is None:
            cols = routed[m.cfg.name] = _Routed()
        cols.sids.append(sid)
        cols.ts.append(event.ts)
        cols.values.append(value)
        cols.records.append(rec)
        cols.features.append(event.features)
        seen.add(event.event_id)
        return None

    def _new_series(self, m: ModelState, seg: dict[str, str], skey: str) -> int:
        sid = len(self.series_model)
        self.series_model.append(m.cfg.name)
        self.series_segment.append(dict(seg))
        self.series_key.append(skey)
        self.last_active.append(-1)
        m.by_segment[skey] = sid
        m.sids.append(sid)
        self.metrics.series.labels(m.cfg.name).set(len(m.sids))
        return sid

    def _ingest(self, m: ModelState, cols: _Routed, out: Output) -> dict[int, int]:
        """Window, late-check and sketch one model's events of this batch; return max ts per partition."""
        sids = np.asarray(cols.sids, dtype=np.int64)
        ts = np.asarray(cols.ts, dtype=np.int64)
        ws = ts - ts % m.cfg.window
        late = m.windows.late_mask(ws)
        if late.any():
            for i in np.flatnonzero(late):
                self._dead(out, DeadLetter(cols.records[i], "late", "event time is behind the watermark: its window has closed"))
            self.metrics.late.labels(m.cfg.name).inc(int(late.sum()))
            keep = ~late
            sids, ts, ws = sids[keep], ts[keep], ws[keep]
            values = [v for v, k in zip(cols.values, keep, strict=True) if k]
            recs = [r for r, k in zip(cols.records, keep, strict=True) if k]
            feats = [f for f, k in zip(cols.features, keep, strict=True) if k]
        else:
            values, recs, feats = cols.values, cols.records, cols.features
        if len(ts) == 0:
            return {}
        spec = m.spec
        assert spec is not None
        fbins = m.features.bins(feats) if m.features is not None else None
        if isinstance(spec, CategoricalSpec):
            self._accumulate(m, sids, ws, spec.codes(values), None, fbins)
        else:
            arr = np.asarray(values, dtype=np.float64)
            if spec.frozen:
                self._accumulate(m, sids, ws, spec.bin(arr), arr, fbins)
            else:
                m.pending.append((sids, ws, arr))
                spec.observe(arr)
                if spec.frozen:
                    self._flush_pending(m)
        n = len(ts)
        self.stats.processed += n
        self.metrics.processed.labels(m.cfg.name).inc(n)
        part_max: dict[int, int] = {}
        parts = np.fromiter((r.partition for r in recs), dtype=np.int64, count=n)
        for p in np.unique(parts):
            part_max[int(p)] = int(ts[parts == p].max())
        return part_max

    def _flush_pending(self, m: ModelState) -> None:
        assert m.spec is not None
        if not m.spec.frozen:
            m.spec.learn()
        for sids, ws, arr in m.pending:
            self._accumulate(m, sids, ws, m.spec.bin(arr), arr)
        m.pending = []

    def _accumulate(
        self,
        m: ModelState,
        sids: npt.NDArray[np.int64],
        ws: npt.NDArray[np.int64],
        bins: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64] | None,
        feature_bins: dict[str, npt.NDArray[np.int64]] | None = None,
    ) -> None:
        """All histograms (and sums) of this batch in one bincount each, then one add per (series, window)."""
        assert m.spec is not None
        w0 = int(ws.min())
        wi = (ws - w0) // m.cfg.window
        span = int(wi.max()) + 1
        key = sids * span + wi
        groups, inverse = np.unique(key, return_inverse=True)
        hists = grouped_histograms(inverse.reshape(-1), bins, len(groups), m.spec.size)
        counts = hists.sum(axis=1)
        inv = inverse.reshape(-1)
        sums: npt.NDArray[np.float64] = np.zeros(len(groups))
        sqs: npt.NDArray[np.float64] = np.zeros(len(groups))
        if values is not None:
            sums = np.bincount(inv, weights=values, minlength=len(groups)).astype(np.float64)
            sqs = np.bincount(inv, weights=values * values, minlength=len(groups)).astype(np.float64)
        fh: dict[str, npt.NDArray[np.int64]] = {}
        if feature_bins and m.features is not None:
            for name, fb in feature_bins.items():
                fh[name] = grouped_histograms(inv, fb, len(groups), m.features.size(name))
        for g, k in enumerate(groups.tolist()):
            sid, w = divmod(k, span)
            m.windows.add(
                w0 + w * m.cfg.window, sid, int(counts[g]), hists[g], float(sums[g]), float(sqs[g]),
                {name: h[g] for name, h in fh.items()},
            )

    # ----------------------------------------------------------------- close and evaluate
    def _close_due(self, out: Output, watermark: int | None) -> None:
        if watermark is None:
            return
        if watermark < np.iinfo(np.int64).max:
            self.metrics.watermark.set(watermark / 1000)
        for m in self.models.values():
            if m.pending and any(int(ws.min()) + m.cfg.window <= watermark for _, ws, _ in m.pending):
                self._flush_pending(m)
            for ws in m.windows.due(watermark):
                self._close(m, ws, out)

    def _close(self, m: ModelState, ws: int, out: Output) -> None:
        accs = m.windows.pop(ws)
        for old in [w for w in m.seen if w <= ws]:
            del m.seen[old]
        for sid in accs:
            self.last_active[sid] = ws
        self._expire(m, ws)
        d = self.d
        slot = m.calendar.slot(ws)
        end = ws + m.cfg.window
        n_tests = len(SIGNALS) + len(m.cfg.features)
        budget = d.false_alarms_per_4_weeks * self.budget_share
        alpha = budget / ((FOUR_WEEKS_MS / m.cfg.window) * max(len(m.sids), 1) * n_tests)
        size = m.spec.size if m.spec is not None else 1
        self.breakers.expire(end)
        notes: list[Note] = []
        for sid in m.sids:
            acc = accs.get(sid)
            count = acc.count if acc is not None else 0
            hist = acc.hist if acc is not None else np.zeros(size, dtype=np.int64)
            m.store.release(sid, ws - d.adapt_after)
            found, drifting = self._tests(m, sid, slot.chain, ws, acc, hist, count, alpha)
            ambiguous: set[str] = set()
            if slot.alternative:
                # A holiday without history of its own may be kept as a day off or as an ordinary
                # day: it is a drift only if it looks like neither (and unknown if either is unknown).
                other, other_drifting = self._tests(m, sid, slot.alternative, ws, acc, hist, count, alpha)
                for signal, mine in found.items():
                    if mine is None or mine[1].preferred:
                        continue
                    alt = other[signal]
                    if alt is None:
                        found[signal] = None
                    elif (alt[0].breach, alt[0].ratio) < (mine[0].breach, mine[0].ratio):
                        if mine[0].breach:
                            # Vetoed, not cleared: looking like one of two guesses is no evidence
                            # that a firing alert is over.
                            ambiguous.add(signal)
                        found[signal] = alt
                        if signal == "feature":
                            drifting = other_drifting
            # Online detectors watch the prediction's residual. Volume residuals of real traffic are
            # autocorrelated (weather, school terms, events): cumulative detectors on them alerted
            # every few days on the NAB and Metro series (BENCHMARKS.md), so volume relies on its
            # window test.
            f = found["prediction"]
            if f is not None and f[0].z is not None:
                found["prediction"] = (self._online(sid, "prediction", f[0]), f[1])
            window = Window(
                ws, count, hist if count else None,
                acc.total if acc is not None else 0.0, acc.total_sq if acc is not None else 0.0,
                acc.features if acc is not None and acc.features else None,
            )
            scores = {signal: (f[0].score, f[0].threshold) for signal, f in found.items() if f is not None}
            # While an alert fires, its series' windows are not the normal to compare with (until
            # ``adapt_after``), even those that lack the power to breach on their own.
            flagged = any(f is not None and f[0].breach and signal != "feature" for signal, f in found.items()) or any(
                (st := self.alert_states.get((sid, s))) is not None and st.status == "firing" for s in SIGNALS
            )
            usable = count >= d.min_window_events
            if flagged:
                m.store.hold(sid, slot.store, window, usable)
            else:
                m.store.fold(sid, slot.store, window, usable)
            m.store.note(sid, slot.chain[0], ws, count, scores)
            pred = found["prediction"]
            pred_state = self.alert_states.get((sid, "prediction"))
            # Prediction first: while the prediction drifts (or is about to fire), feature drift is its
            # evidence, attached to the prediction alert, not an alert of its own.
            inhibited = (pred is not None and pred[0].breach) or (pred_state is not None and pred_state.status != "inactive")
            for signal, f in found.items():
                evidence = _evidence(f[0]) if f is not None and signal not in ambiguous else None
                if signal == "feature" and inhibited:
                    evidence = None
                note = self._step(m, sid, signal, f, evidence, slot, window, end)
                if note is not None:
                    note.payload["features"] = drifting if signal in ("prediction", "feature") else []
                    notes.append(note)
        for emission in self.grouper.apply(m.cfg.name, notes, end):
            alert = self._alert(m, emission, end)
            out.alerts.append(alert)
            self.metrics.alerts.labels(m.cfg.name, alert.severity, alert.status).inc()
            limited = self.breakers.rate_limited
            for cmd in self.breakers.on_alert(alert, m.cfg.action):
                out.commands.append(cmd)
                self.metrics.commands.labels(m.cfg.name, cmd.action).inc()
            self.metrics.breakers_rate_limited.inc(self.breakers.rate_limited - limited)
        self.stats.windows_closed += 1
        self.metrics.windows_closed.labels(m.cfg.name).inc()
        self.metrics.breakers_open.set(len(self.breakers.open))

    def _expire(self, m: ModelState, now: int) -> None:
        """Forget series that sent nothing for ``series_ttl``: their history, detectors and alerts."""
        ttl = self.d.series_ttl
        stale = [sid for sid in m.sids if 0 <= self.last_active[sid] < now - ttl]
        if not stale:
            return
        for sid in stale:
            m.sids.remove(sid)
            m.by_segment.pop(self.series_key[sid], None)
            m.store.drop(sid)
            self.last_active[sid] = -2  # expired; a new event makes it a new series
            for signal in (*SIGNALS, "feature"):
                self.alert_states.pop((sid, signal), None)
                self.online.pop((sid, signal), None)
        self.metrics.series.labels(m.cfg.name).set(len(m.sids))

    def _tests(
        self,
        m: ModelState,
        sid: int,
        chain: tuple[SlotKey, ...],
        ws: int,
        acc: Accumulator | None,
        hist: npt.NDArray[np.int64],
        count: int,
        alpha: float,
    ) -> tuple[dict[str, tuple[Verdict, Baseline] | None], list[str]]:
        """Window tests of one series against the baselines that ``chain`` picks."""
        d = self.d
        found: dict[str, tuple[Verdict, Baseline] | None] = {"prediction": None, "volume": None, "feature": None}
        drifting: list[str] = []
        if count >= d.min_window_events:
            pb = m.store.baseline(sid, chain, True, d.min_baseline_windows, d.min_holiday_windows)
            if pb is not None:
                found["prediction"] = (self._prediction_test(m, acc, hist, count, pb, alpha), pb)
                if acc is not None and acc.features and pb.features:
                    fv = self._feature_tests(acc, pb, alpha)
                    if fv:
                        drifting = sorted(f for f, v in fv.items() if v.breach)
                        top = max(fv.items(), key=lambda kv: (kv[1].breach, kv[1].ratio))
                        found["feature"] = (replace(top[1], detail=top[0]), pb)
        vb = m.store.baseline(sid, chain, False, d.min_baseline_windows, d.min_holiday_windows)
        if vb is not None:
            found["volume"] = (volume_test(count, vb.log_center, vb.log_spread, vb.inv_count, vb.windows, alpha), vb)
        return found, drifting

    @staticmethod
    def _prediction_test(
        m: ModelState, acc: Accumulator | None, hist: npt.NDArray[np.int64], count: int, base: Baseline, alpha: float
    ) -> Verdict:
        """Shape (Jensen-Shannon) and, for numbers, location (mean shift); the budget split between them."""
        if len(hist) != len(base.hist):
            return Verdict(0.0, float("inf"), False, "bins changed", "js_divergence")
        shape = distribution_test(hist, base.hist, base.windows, base.dispersion, base.ratios, alpha / 2)
        if not isinstance(m.spec, NumericSpec) or acc is None:
            return shape
        loc = mean_shift_test(
            count, acc.total, acc.total_sq, base.center, base.spread, base.sampling, base.within, base.windows,
            alpha / 2,
        )
        best = max((shape, loc), key=lambda v: (v.breach, v.ratio))
        return replace(best, z=loc.z)

    def _online(self, sid: int, signal: str, verdict: Verdict) -> Verdict:
        """Feed the window's residual to the series' online detectors; a detection is a breach."""
        key = (sid, signal)
        det = self.online.get(key)
        if det is None:
            det = self.online[key] = ResidualDetectors()
        name = det.update(verdict.z) if verdict.z is not None else None
        if name is None or verdict.breach:
            return verdict
        return replace(verdict, breach=True, test=name,
                       detail=f"{name}: sustained shift of the standardised residual over recent windows")

    @staticmethod
    def _feature_tests(acc: Accumulator, base: Baseline, alpha: float) -> dict[str, Verdict]:
        """Each feature's histogram (null bin included) against the same baseline windows."""
        out = {}
        for name, cur in acc.features.items():
            fb = base.features.get(name) if base.features else None
            if fb is not None and len(fb[0]) == len(cur):
                out[name] = distribution_test(cur, fb[0], fb[3], fb[1], fb[2], alpha)
        return out

    def _step(
        self,
        m: ModelState,
        sid: int,
        signal: str,
        found: tuple[Verdict, Baseline] | None,
        evidence: bool | None,
        slot: Slot,
        window: Window,
        end: int,
    ) -> Note | None:
        """Lifecycle and dedupe of one series and signal; a Note when a notification is due."""
        d = self.d
        key = (sid, signal)
        before = self.alert_states.get(key, AlertState())
        after, transition = step(
            before, evidence, window.start,
            pending_windows=d.pending_windows, resolve_windows=d.resolve_windows,
            # A strong window, or an online detection (evidence accumulated over many windows already),
            # needs no second window to confirm it.
            strong=evidence is True and found is not None
            and (found[0].score >= 2.0 * found[0].threshold or found[0].test in ("page_hinkley", "adwin")),
        )
        if after.status == "inactive":
            self.alert_states.pop(key, None)
        else:
            self.alert_states[key] = after
        if found is None:
            return None
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
        return Note(sid, signal, status, reason, starts, {"found": found, "slot": slot, "window": window, "fp": fp})

    def _alert(self, m: ModelState, e: Emission, end: int) -> Alert:
        lead = max(e.notes, key=lambda n: n.payload["found"][0].ratio)
        verdict, base = lead.payload["found"]
        window: Window = lead.payload["window"]
        slot: Slot = lead.payload["slot"]
        sid, signal = lead.sid, e.signal
        spec = m.spec
        features = sorted({f for n in e.notes for f in n.payload["features"]})
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
        history = History(recent=[self._point(p, signal) for p in recent], same_slot=[self._point(p, signal) for p in same])
        info = BaselineInfo(
            slot=m.calendar.label_for_key(base.key),
            kind=KIND_OF[str(base.key[0])],  # type: ignore[arg-type]
            windows=base.windows,
            confidence="high" if base.preferred else "low",
        )
        groups: list[list[str]] = []
        if features and m.features is not None:
            index = {n: i for i, n in enumerate(m.features.names)}
            groups = correlated_groups(features, index, m.features.correlation())
        what = {"prediction": "prediction distribution", "volume": "event volume",
                "feature": "features " + "; ".join(", ".join(g) for g in groups)}.get(signal, signal)
        verb = "drifted" if e.status == "firing" else "is back to normal"
        if e.kind == "group":
            fp = fingerprint(m.cfg.name, "*", signal)
            segments = [self.series_segment[s] for s in (e.members or [n.sid for n in e.notes])]
            where = f"{len(segments)} segments" if e.status == "firing" else "all segments"
            segment: dict[str, str] = {}
        else:
            fp = lead.payload["fp"]
            segments = None
            where = self.series_key[sid] or "all traffic"
            segment = self.series_segment[sid]
        evidence = f"; features drifting with it: {', '.join(features)}" if features and signal == "prediction" else ""
        summary = (
            f"{m.cfg.name} [{where}]: {what} {verb} ({verdict.test} {verdict.score:.4f}, threshold "
            f"{verdict.threshold:.4f}) against {info.windows} past {info.slot} windows{evidence}"
        )
        return Alert(
            alert_id="a-" + hashlib.sha256(f"{fp}|{e.starts}".encode()).hexdigest()[:16],
            fingerprint=fp,
            status=e.status,  # type: ignore[arg-type]
            severity=severity(signal, verdict.score, verdict.threshold, self.d.feature_severity),
            model=m.cfg.name,
            segment=segment,
            segments=segments,
            signal=signal,  # type: ignore[arg-type]
            features=features,
            feature_groups=groups,
            test=verdict.test,
            context=slot.label,
            window_start=window.start,
            window_end=end,
            starts_at=e.starts,
            ends_at=end if e.status == "resolved" else None,
            score=verdict.score,
            threshold=verdict.threshold,
            baseline=baseline,
            current=current,
            baseline_info=info,
            history=history,
            notify_reason=e.reason,  # type: ignore[arg-type]
            summary=summary,
        )

    @staticmethod
    def _point(p: Any, signal: str) -> ScorePoint:
        i = SIGNAL_INDEX[signal]
        score, threshold = float(p["score"][i]), float(p["threshold"][i])
        start = int(p["start"])
        if score != score:  # NaN: no verdict for this signal in that window
            return ScorePoint(window_start=start, score=None, threshold=None, count=int(p["count"]))
        return ScorePoint(window_start=start, score=score, threshold=threshold, count=int(p["count"]))
