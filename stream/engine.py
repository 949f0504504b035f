"""The pure core: a micro-batch of records in; alerts, commands and dead letters out.

No Kafka and no wall clock in here: the service and the replay command feed records and an optional
clock, and publish what comes out. Steps, in order (each in its own module):
decode -> route to (model, segment) -> window (watermark) -> sketch -> on close: calendar slot ->
baseline -> detect -> decide -> dedupe -> act.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from .act import BreakerPolicy
from .baseline import SIGNAL_INDEX, Baseline, Batch, SeriesStore, Window
from .calendar import KIND_OF, Calendar, Slot
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
from .decode import Columns, DeadLetter, Event, Record, Schema, TypedDecoder, decode_batch
from .dedupe import Sent, notify_reason
from .detect import Verdict, page_hinkley
from .evaluate import TESTS, Found, either_day, evaluate
from .features import FeatureSketch, correlated_groups
from .group import Emission, Note, SegmentGrouper
from .metrics import Metrics
from .shadow import Comparison, ShadowTracker
from .sketch import CategoricalSpec, NumericSpec, Spec, histogram_summary
from .window import OpenWindows, Watermark, WindowSums, stray_limit

log = logging.getLogger("driftline.engine")
FOUR_WEEKS_MS = 28 * 86_400_000
_PARTITION = itemgetter(3)  # Record.partition
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


def _take(column: Any, keep: npt.NDArray[np.bool_]) -> Any:
    """The rows of a batch column that ``keep`` marks: an array indexed, a list filtered."""
    if isinstance(column, np.ndarray):
        return column[keep]
    return [v for v, k in zip(column, keep.tolist(), strict=True) if k]


def segment_key(segment: dict[str, str]) -> str:
    """Canonical text of a segment: ``k=v`` pairs sorted by key, ``,``-joined (``""`` for none)."""
    return ",".join(f"{k}={segment[k]}" for k in sorted(segment))


def fingerprint(model: str, segment: str, signal: str) -> str:
    return hashlib.sha256(f"{model}|{segment}|{signal}".encode()).hexdigest()[:16]


class ModelState:
    """Everything the engine keeps for one model."""

    def __init__(self, cfg: ResolvedModel, baseline_windows: int):
        self.cfg = cfg
        # weekly: 168 hours of the week, 48 weekday/weekend hours, and room for three holidays
        self.store = SeriesStore(baseline_windows, slots=288 if cfg.calendar == "weekly" else 8)
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
        self.learn_until: int | None = None  # event time that ends the learning of bin edges
        self.by_values: dict[Any, int] = {}  # segment key as decoded -> series id (a cache)
        # The same cache for the native decoder: its segment number -> series id (-1: not looked up)
        self.native_sids: npt.NDArray[np.int64] = np.full(0, -1, np.int64)
        self.native_table: Any = None  # the native decoder's segment table those numbers refer to
        sc = cfg.shadow
        self.shadow = ShadowTracker(sc.champion, sc.min_events, sc.min_divergence) if sc is not None else None


@dataclass(slots=True)
class _Routed:
    """One model's accepted events of a batch, column-wise and in stream order."""

    sids: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64] | list[Any]
    where: npt.NDArray[np.int64]  # each event's position in the batch (its record, for a dead letter)
    # the events' feature structs (or dicts, for a model without features), or their numeric
    # features as rows of a float matrix (the native decoder's)
    features: list[Any] | npt.NDArray[np.float64]
    late: npt.NDArray[np.bool_]  # its window had closed when it arrived (dead-lettered at ingest)
    versions: list[str | None] | None = None  # model_version of each event, for a model in shadow mode


@dataclass(slots=True)
class _Plan:
    """A model's natively decoded events, checked clean, with what routing them will change."""

    cols: Columns
    by_window: list[tuple[int, list[str]]]  # event ids per window they fall in
    late: npt.NDArray[np.bool_]
    new: dict[int, tuple[dict[str, str], str]]  # native segment number -> (segment, its key) to look up


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
        self.fired_severity: dict[str, str] = {}  # fingerprint -> severity of its firing alert
        self.grouper = SegmentGrouper(self.d.group_min_segments, self.d.repeat_interval)
        self.breakers = BreakerPolicy(
            ttl=self.d.break_ttl, max_open=self.d.max_open_breakers, signing_key=config.commands.key()
        )
        self.stats = Stats()
        self.typed = TypedDecoder(native=self.d.native_decoder)
        self._batch: Sequence[Record] = []  # the batch being processed (records of dead letters come from it)
        self._parts: int | npt.NDArray[np.int64] = 0  # its partition, or each record's

    # ----------------------------------------------------------------- ingest
    def process(self, records: Sequence[Record]) -> Output:
        out = Output()
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_events.observe(len(records))
        if len(self.typed.schemas) != len(self.models):
            for m in self.models.values():
                self._schema(m)
        self._batch = records
        single = getattr(records, "partition", None)
        if single is not None:
            self._parts = int(single)
        else:
            seen = set(map(_PARTITION, records))
            self._parts = seen.pop() if len(seen) == 1 else np.fromiter(map(_PARTITION, records), np.int64, len(records))
        now = self.clock() if self.clock is not None else 0.0
        now_ms = int(now * 1000) if self.clock is not None else None
        # Each model is routed, then ingested, in turn (lazily: dead letters keep that order).
        routed: Iterator[tuple[ModelState, _Routed | None]]
        plans = self._plans(records, now_ms)
        self.metrics.batches_decoded.labels("native" if plans is not None else "python").inc()
        if plans is not None:  # the whole batch decoded into columns, and clean
            routed = ((m, self._commit(m, plan)) for m, plan in plans)
        else:
            dec = decode_batch(records, self.d.max_event_bytes, self.typed)
            for dl in dec.dead:
                self._dead(out, dl)
            routed = ((m, self._route(m, evs, where, now_ms, out))
                      for m, evs, where in self._by_model(dec.events, dec.where, out))
        part_max: dict[int, int] = {}
        for m, cols in routed:
            if cols is None:
                continue
            for p, ts in self._ingest(m, cols, out).items():
                part_max[p] = max(part_max.get(p, ts), ts)
            if m.features is not None and tuple(m.features.kinds()) != self.typed.schemas[m.cfg.name].kinds:
                self._schema(m)  # a feature's kind is now known: type it in the decoder
        for p, ts in part_max.items():
            self.watermark.observe(p, ts, now)
        self._close_due(out, self.watermark.value(now, self.idle_after))
        return out

    def _schema(self, m: ModelState) -> None:
        kinds = m.features.kinds() if m.features is not None else []
        self.typed.set(Schema(m.cfg.name, m.cfg.segment_by, m.cfg.features, kinds))

    def _by_model(self, events: list[Any], where: Sequence[int], out: Output
                  ) -> list[tuple[ModelState, list[Any], Sequence[int]]]:
        """Events grouped by model, in stream order within each: typed events carry their model in
        their type; a generic one is of a model without a schema yet (unknown, or registered now)."""
        types = set(map(type, events))
        if len(types) == 1 and Event not in types:
            return [(self.models[self.typed.model_of[types.pop()]], events, where)]
        groups: dict[str, tuple[list[Any], list[int]]] = {}
        for ev, pos in zip(events, where, strict=True):
            t = type(ev)
            if t is Event:
                m = self._model(ev.model)
                if m is None:
                    self._dead(out, DeadLetter(self._batch[pos], "unknown_model", f"model {ev.model!r} is not configured (known: {', '.join(sorted(self.models))})"))
                    continue
                if m.cfg.name not in self.typed.schemas:
                    self._schema(m)
                name = m.cfg.name
                ev = self.typed.schemas[name].convert(ev)
            else:
                name = self.typed.model_of[t]
            g = groups.get(name)
            if g is None:
                g = groups[name] = ([], [])
            g[0].append(ev)
            g[1].append(pos)
        return [(self.models[name], evs, rs) for name, (evs, rs) in groups.items()]

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

    def reject(self, records: Sequence[Record], reason: str, details: Sequence[str]) -> Output:
        """Dead letters for records that were consumed but never given to ``process`` (the guard's
        culprits), counted as such: consumed = processed + dead-lettered still holds."""
        out = Output()
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        for rec, detail in zip(records, details, strict=True):
            self._dead(out, DeadLetter(rec, reason, detail))
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

    def _route(self, m: ModelState, evs: list[Any], where: Sequence[int], now_ms: int | None,
               out: Output) -> _Routed | None:
        """A model's events to series ids, column-wise, when the batch is clean (no event to reject, all
        of one prediction type, no repeated id); otherwise event by event, with the reason for each."""
        ts = np.array([e.ts for e in evs], dtype=np.int64)
        preds = [e.prediction for e in evs]
        types = set(map(type, preds))
        kind = "numeric" if types <= {float, int} else "categorical" if types == {str} else None
        clean = kind is not None and (m.spec is None or m.spec.kind == kind)
        limit = self._limit(ts, now_ms)
        if clean and limit is not None and int(ts.max()) > limit:
            clean = False
        ws = ts - ts % m.cfg.window
        by_window = self._by_window(ws, [e.event_id for e in evs])
        if clean and not self._fresh(m, by_window):
            clean = False
        keys = self._keys(m, evs)
        # A late event is dead-lettered at ingest: it must not create a series on its way there
        # (one that never received an event would never expire).
        late = m.windows.late_mask(ws)
        if clean:
            sids = list(map(m.by_values.get, keys))
            if None in sids:
                new = {k for k, s, lt in zip(keys, sids, late.tolist(), strict=True) if s is None and not lt}
                if len(m.sids) + len(new) > self.d.max_series_per_model:
                    clean = False
                else:
                    for i, s in enumerate(sids):
                        if s is None:
                            sids[i] = -1 if late[i] else self._series_of(m, keys[i], evs[i].segment)
        if not clean:
            return self._route_each(m, evs, where, keys, ws, late, limit, now_ms, out)
        assert kind is not None
        if m.spec is None:
            m.spec = NumericSpec() if kind == "numeric" else CategoricalSpec()
        self._note_seen(m, by_window)
        values: npt.NDArray[np.float64] | list[Any] = np.array(preds, dtype=np.float64) if kind == "numeric" else preds
        versions = [e.model_version for e in evs] if m.shadow is not None else None
        return _Routed(np.array(sids, dtype=np.int64), ts, values, np.asarray(where, dtype=np.int64),
                       [e.features for e in evs], late, versions)

    @staticmethod
    def _by_window(ws: npt.NDArray[np.int64], ids: list[str]) -> list[tuple[int, list[str]]]:
        if (ws == ws[0]).all():
            return [(int(ws[0]), ids)]
        return [(w, [ids[i] for i in np.flatnonzero(ws == w)]) for w in np.unique(ws).tolist()]

    @staticmethod
    def _fresh(m: ModelState, by_window: list[tuple[int, list[str]]]) -> bool:
        """No event id repeats, within the batch or with one already counted in its window."""
        for w, part in by_window:
            seen = m.seen.get(w)
            if len(set(part)) != len(part) or (seen is not None and not seen.isdisjoint(part)):
                return False
        return True

    @staticmethod
    def _note_seen(m: ModelState, by_window: list[tuple[int, list[str]]]) -> None:
        for w, part in by_window:
            seen = m.seen.get(w)
            if seen is None:
                m.seen[w] = set(part)
            else:
                seen.update(part)

    def _plans(self, records: Sequence[Record], now_ms: int | None) -> list[tuple[ModelState, _Plan]] | None:
        """The batch through the native decoder, when it reads every record and every model's events
        are clean (the checks of ``_route``); None sends the batch the event-by-event way. Changes
        nothing but caches: a batch must not be half routed when one model's part is not clean."""
        for name, table in self.typed.native.items():
            m = self.models[name]
            if m.native_table is not table or len(table) > 2 * self.d.max_series_per_model + 10_000:
                table.clear()  # bounded: segments that never became series are forgotten
                m.native_table, m.native_sids = table, np.full(0, -1, np.int64)
        cols = self.typed.columns(records, self.d.max_event_bytes)
        if cols is None:
            return None
        plans = []
        for c in sorted(cols, key=lambda c: int(c.where[0])):  # models in order of first event, as _by_model
            m = self.models[c.model]
            if m.spec is not None and m.spec.kind != ("categorical" if c.labels else "numeric"):
                return None
            limit = self._limit(c.ts, now_ms)
            if limit is not None and int(c.ts.max()) > limit:
                return None
            ws = c.ts - c.ts % m.cfg.window
            by_window = self._by_window(ws, c.ids)
            if not self._fresh(m, by_window):
                return None
            late = m.windows.late_mask(ws)
            top = int(c.segment.max()) + 1
            if len(m.native_sids) < top:
                m.native_sids = np.concatenate([m.native_sids, np.full(max(top, 2 * len(m.native_sids)) - len(m.native_sids), -1, np.int64)])
            unknown, first = np.unique(c.segment[(m.native_sids[c.segment] < 0) & ~late], return_index=True)
            new: dict[int, tuple[dict[str, str], str]] = {}
            if len(unknown):
                table = self.typed.native[c.model]
                for u in unknown[np.argsort(first)].tolist():  # new series in event order, as _route
                    seg = dict(table.segment(u))
                    new[u] = (seg, segment_key(seg))
                fresh = sum(key not in m.by_segment for _seg, key in new.values())
                if len(m.sids) + fresh > self.d.max_series_per_model:
                    return None
            plans.append((m, _Plan(c, by_window, late, new)))
        return plans

    def _commit(self, m: ModelState, plan: _Plan) -> _Routed:
        """Route a clean plan: new series made, ids noted, the columns handed on as they are."""
        c = plan.cols
        if m.spec is None:
            m.spec = CategoricalSpec() if c.labels else NumericSpec()
        for u, (seg, key) in plan.new.items():
            sid = m.by_segment.get(key)
            m.native_sids[u] = self._new_series(m, seg, key) if sid is None else sid
        self._note_seen(m, plan.by_window)
        versions: list[str | None] | None = None
        if m.shadow is not None:
            versions = c.versions if c.versions is not None else [None] * len(c.ids)
        values: npt.NDArray[np.float64] | list[str] = c.prediction  # type: ignore[assignment]
        if c.labels:  # text predictions, as the sketch takes them
            values = list(map(self.typed.native[c.model].labels().__getitem__, c.prediction.tolist()))
        return _Routed(m.native_sids[c.segment], c.ts, values, c.where, c.features, plan.late, versions)

    def _keys(self, m: ModelState, evs: list[Any]) -> list[Any]:
        """Each event's segment as a hashable key: the typed segment struct, or the sorted pairs."""
        if m.cfg.segment_by is not None:
            return [e.segment for e in evs]
        return [tuple(sorted(e.segment.items())) for e in evs]

    def _series_of(self, m: ModelState, key: Any, segment: Any) -> int:
        """The series of a segment key not in the cache: known under its canonical text, or new."""
        seg = self._segment(m, key, segment)
        skey = segment_key(seg)
        sid = m.by_segment.get(skey)
        if sid is None:
            sid = self._new_series(m, seg, skey)
        m.by_values[key] = sid
        return sid

    def _route_each(self, m: ModelState, evs: list[Any], where: Sequence[int], keys: list[Any],
                    ws: npt.NDArray[np.int64], late: npt.NDArray[np.bool_], limit: int | None,
                    now_ms: int | None, out: Output) -> _Routed | None:
        """Event by event, in stream order: the first failing check names the reason."""
        sids: list[int] = []
        kept: list[int] = []
        values: list[Any] = []
        for i, event in enumerate(evs):
            reason = self._check(m, event, int(ws[i]), limit, now_ms)
            if reason is None:
                pred = event.prediction
                value = max(pred, key=pred.__getitem__) if isinstance(pred, dict) else pred
                sid = m.by_values.get(keys[i])
                if sid is None and late[i]:
                    sid = -1  # dead-lettered as late at ingest, before any series would see it
                elif sid is None:
                    if len(m.sids) >= self.d.max_series_per_model and \
                            m.by_segment.get(segment_key(self._segment(m, keys[i], event.segment))) is None:
                        reason = ("too_many_series", f"model {m.cfg.name!r} already has {len(m.sids)} series")
                    else:
                        sid = self._series_of(m, keys[i], event.segment)
            if reason is not None:
                self._dead(out, DeadLetter(self._batch[where[i]], reason[0], reason[1]))
                continue
            assert sid is not None
            m.seen.setdefault(int(ws[i]), set()).add(event.event_id)
            sids.append(sid)
            kept.append(i)
            values.append(float(value) if m.spec is not None and m.spec.kind == "numeric" else value)
        if not kept:
            return None
        idx = np.array(kept, dtype=np.int64)
        vals: npt.NDArray[np.float64] | list[Any] = (
            np.array(values, dtype=np.float64) if m.spec is not None and m.spec.kind == "numeric" else values)
        ts = np.array([evs[i].ts for i in kept], dtype=np.int64)
        return _Routed(np.array(sids, dtype=np.int64), ts, vals, np.asarray(where, dtype=np.int64)[idx],
                       [evs[i].features for i in idx], late[idx],
                       [evs[i].model_version for i in idx] if m.shadow is not None else None)

    @staticmethod
    def _segment(m: ModelState, key: Any, segment: Any) -> dict[str, str]:
        by = m.cfg.segment_by
        return dict(zip(by, msgspec.structs.astuple(segment), strict=True)) if by is not None else dict(key)

    def _limit(self, ts: npt.NDArray[np.int64], now_ms: int | None) -> int | None:
        """The latest event time these events may have (None: any): ``max_future`` past the clock; or,
        without one (replay), the stream's own time: stray events far after the rest of their batch
        (``defaults.replay_gap``) would close every window and make what follows late."""
        if now_ms is not None:
            return now_ms + self.d.max_future
        return stray_limit(ts, self.d.replay_gap)

    def _check(self, m: ModelState, event: Any, ws: int, limit: int | None, now_ms: int | None
               ) -> tuple[str, str] | None:
        """Why this event cannot be counted (None: it can); the prediction's kind is fixed here."""
        if limit is not None and event.ts > limit:
            if now_ms is not None:
                return "future", f"ts is {(event.ts - now_ms) / 1000:.0f}s ahead of the clock"
            return "future", (f"ts is {(event.ts - limit) / 3_600_000:.1f}h after the rest of its batch (no clock: "
                              f"the stream's own time; more than defaults.replay_gap apart)")
        # A producer retry repeats an event: count it once. Ids are kept while their window is open
        # (an older repeat is late anyway).
        seen = m.seen.get(ws)
        if seen is not None and event.event_id in seen:
            return "duplicate", f"event_id {event.event_id!r} was already counted in this window"
        pred = event.prediction
        if isinstance(pred, str):
            kind = "categorical"
        elif isinstance(pred, dict):
            if not pred:
                return "invalid_event", "prediction: empty probability map"
            kind = "categorical"
        else:
            kind = "numeric"
        if m.spec is None:
            m.spec = NumericSpec() if kind == "numeric" else CategoricalSpec()
        elif m.spec.kind != kind:
            return "prediction_type", f"prediction is {kind} but model {m.cfg.name!r} sends {m.spec.kind} predictions"
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
        late = cols.late
        if late.any():
            for i in np.flatnonzero(late):
                self._dead(out, DeadLetter(self._batch[int(cols.where[i])], "late", "event time is behind the watermark: its window has closed"))
            self.metrics.late.labels(m.cfg.name).inc(int(late.sum()))
            keep = ~late
            sids, ts, ws, where = sids[keep], ts[keep], ws[keep], cols.where[keep]
            values, feats = _take(cols.values, keep), _take(cols.features, keep)
            versions = None if cols.versions is None else _take(cols.versions, keep)
        else:
            values, where, feats, versions = cols.values, cols.where, cols.features, cols.versions
        if len(ts) == 0:
            return {}
        n = len(ts)
        self.stats.processed += n
        self.metrics.processed.labels(m.cfg.name).inc(n)
        part_max = self._partition_max(where, ts)
        spec = m.spec
        assert spec is not None
        if m.shadow is not None and versions is not None:
            v = np.array(versions, dtype=object)
            challenger = (v != None) & (v != m.shadow.champion)  # noqa: E711 - elementwise, not identity
            if challenger.any():
                # A challenger's predictions are not the traffic the model serves: counted for the
                # shadow comparison only, never in the model's own series or its learned bins.
                self._shadow_add(m, sids[challenger], ws[challenger], _take(values, challenger),
                                 v[challenger].tolist())
                keep = ~challenger
                sids, ts, ws = sids[keep], ts[keep], ws[keep]
                values, feats = _take(values, keep), _take(feats, keep)
                if len(ts) == 0:
                    return part_max
        fbins = m.features.bins_of(self._feature_columns(m, feats)) if m.features is not None else None
        if isinstance(spec, CategoricalSpec):
            self._accumulate(m, sids, ws, spec.codes(values), None, fbins)
        else:
            arr = np.asarray(values, dtype=np.float64)
            if spec.frozen:
                self._accumulate(m, sids, ws, spec.bin(arr), spec.clip(arr), fbins)
            else:
                m.pending.append((sids, ws, arr))
                # The edges come from the values before the first event that could close the first
                # window (or the first ``learn_from``), in stream order: the same whatever the batches.
                if m.learn_until is None:
                    m.learn_until = int(ws[0]) + m.cfg.window + self.d.allowed_lateness
                cut = int(np.argmax(ts >= m.learn_until)) if (ts >= m.learn_until).any() else len(ts)
                spec.observe(arr[:cut])
                if cut < len(ts) and not spec.frozen:
                    spec.learn()
                if spec.frozen:
                    self._flush_pending(m)
        return part_max

    def _partition_max(self, where: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> dict[int, int]:
        """The latest event time per input partition among these events (for the watermark)."""
        if isinstance(self._parts, int):
            return {self._parts: int(ts.max())}
        parts = self._parts[where]
        return {int(p): int(ts[parts == p].max()) for p in np.unique(parts)}

    def _shadow_add(self, m: ModelState, sids: npt.NDArray[np.int64], ws: npt.NDArray[np.int64],
                    values: npt.NDArray[np.float64] | list[Any], versions: list[str]) -> None:
        """Challenger events into the shadow histograms, on the model's bins (once they are learned)."""
        spec, shadow = m.spec, m.shadow
        assert spec is not None and shadow is not None
        if isinstance(spec, NumericSpec):
            if not spec.frozen:
                self.metrics.shadow_skipped.labels(m.cfg.name).inc(len(sids))
                return
            bins = spec.bin(np.asarray(values, dtype=np.float64))
        else:
            bins = spec.codes(list(values))
        shadow.add(ws, sids, bins, versions, spec.size)

    def _feature_columns(self, m: ModelState, feats: list[Any] | npt.NDArray[np.float64]) -> list[Any]:
        """The events' monitored features, one column each: a float array when the decoder typed every
        feature as numeric (one conversion for the whole batch), else lists of the values as sent."""
        schema = self.typed.schemas[m.cfg.name]
        if isinstance(feats, np.ndarray):  # the native decoder's matrix: text values by number
            if schema.all_numeric:
                return list(feats.T)
            names = np.array([*self.typed.native[m.cfg.name].feature_labels(), None], dtype=object)
            return [names[np.where(np.isnan(col), len(names) - 1, col).astype(np.int64)].tolist()
                    if kind == "categorical" else col for col, kind in zip(feats.T, schema.kinds, strict=True)]
        if schema.all_numeric:
            x = np.array([msgspec.structs.astuple(f) for f in feats], dtype=np.float64).reshape(len(feats), -1)
            return list(x.T)
        return [list(map(attrgetter(f"f{j}"), feats)) for j in range(len(schema.features))]

    def _flush_pending(self, m: ModelState) -> None:
        assert isinstance(m.spec, NumericSpec)  # only numeric predictions wait for their bins
        if not m.spec.frozen:
            m.spec.learn()
        for sids, ws, arr in m.pending:
            self._accumulate(m, sids, ws, m.spec.bin(arr), m.spec.clip(arr))
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
        """The batch's events into their open windows' sums: a few bincounts per window, no per-event Python."""
        assert m.spec is not None
        st = m.store
        names = m.features.names if m.features is not None else []
        st.ensure(m.spec.size, {n: m.features.max_size for n in names} if m.features is not None else {})
        usids, inv = np.unique(sids, return_inverse=True)
        rows = st.rows_for(usids)[inv.reshape(-1)]
        feats = None
        if feature_bins:
            index = {n: j for j, n in enumerate(st.features)}
            feats = (np.array([index[n] for n in feature_bins], dtype=np.int64),
                     np.stack(list(feature_bins.values()), axis=1))
        shape = (len(st.scal), st.hist.shape[2], st.fhist.shape[2], st.fhist.shape[3])
        m.windows.add(ws, rows, bins, values, feats, shape)

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
            if m.shadow is not None:  # windows only a challenger sent to: no champion to compare with
                for ws in [w for w in m.shadow.open if w + m.cfg.window <= watermark]:
                    del m.shadow.open[ws]

    def _close(self, m: ModelState, ws: int, out: Output) -> None:
        sums = m.windows.pop(ws)
        for old in [w for w in m.seen if w <= ws]:
            del m.seen[old]
        if sums is not None and m.sids:
            rows = m.store.rows_for(m.sids)
            inside = rows < len(sums.count)
            active = np.zeros(len(rows), bool)
            active[inside] = sums.count[rows[inside]] > 0
            for sid in np.asarray(m.sids)[active].tolist():
                self.last_active[sid] = ws
        self._expire(m, ws)
        d = self.d
        slot = m.calendar.slot(ws)
        end = ws + m.cfg.window
        n_tests = len(SIGNALS) + len(m.cfg.features)
        budget = d.false_alarms_per_4_weeks * self.budget_share
        alpha = budget / ((FOUR_WEEKS_MS / m.cfg.window) * max(len(m.sids), 1) * n_tests)
        self.breakers.expire(end)
        notes = self._evaluate(m, sums, ws, slot, end, alpha) if m.sids else []
        if m.shadow is not None:
            self._shadow_close(m, ws, sums, slot, end, alpha, out)
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

    def _evaluate(
        self, m: ModelState, sums: WindowSums | None, ws: int, slot: Slot, end: int, alpha: float
    ) -> list[Note]:
        """Test every series of the model on the closed window, learn it, and step the alerts."""
        d, st = self.d, m.store
        sids = list(m.sids)
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
                      w.feat[:, :nf, :fb].astype(np.float64) if nf else None, feat_ok)

        def window(i: int) -> Window:
            feats = {name: w.feat[i, j, : st.fsize[j]].copy() for j, name in enumerate(st.features)
                     if feat_ok is not None and feat_ok[i, j]}
            return Window(ws, int(w.count[i]), w.hist[i].copy() if w.count[i] else None, float(w.total[i]),
                          float(w.total_sq[i]), feats or None)

        numeric = isinstance(m.spec, NumericSpec)
        found = evaluate(st, rows, slot.chain, batch, numeric, alpha, d.min_baseline_windows, d.min_holiday_windows)
        ambiguous = np.zeros((3, len(sids)), bool)
        if slot.alternative:
            other = evaluate(st, rows, slot.alternative, batch, numeric, alpha, d.min_baseline_windows, d.min_holiday_windows)
            ambiguous = either_day(found, other)
        # Page-Hinkley watches the prediction's residual across windows. Volume residuals of real
        # traffic are autocorrelated (weather, school terms, events): cumulative detectors on them
        # alerted every few days on the NAB and Metro series (BENCHMARKS.md), so volume relies on
        # its window test.
        pred = found["prediction"]
        watch = pred.has & ~np.isnan(pred.z)
        if watch.any():
            state = st.ph[rows[watch]]
            hit = page_hinkley(state, pred.z[watch])
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
        flagged = found["prediction"].breach | found["volume"].breach | firing
        # Evidence: breach, clean (well below the threshold: a firing alert does not resolve on a
        # window that merely lacks the power to confirm it), or neither.
        evidence: dict[str, npt.NDArray[np.int8]] = {}
        for i, signal in enumerate(kinds):
            fs = found[signal]
            ev = np.where(fs.breach, 1, np.where(fs.has & (fs.score <= CLEAN_FRACTION * fs.threshold), 0, -1)).astype(np.int8)
            ev[ambiguous[i]] = -1
            evidence[signal] = ev
        # Prediction first: while the prediction drifts (or is about to fire), feature drift is its
        # evidence, attached to the prediction alert, not an alert of its own.
        evidence["feature"][pred.breach | open_["prediction"]] = -1
        # The few series with something to say (a breach, or an alert not inactive), with their
        # verdicts and baselines as of before this window.
        say = {k: (evidence[k] == 1) | open_[k] for k in kinds}
        todo: list[tuple[int, str, tuple[Verdict, Baseline] | None, bool | None]] = []
        for i in np.flatnonzero(say["prediction"] | say["volume"] | say["feature"]).tolist():
            for signal in kinds:
                if say[signal][i]:
                    said = int(evidence[signal][i])
                    todo.append((i, signal, self._verdict(st, sids[i], found[signal], i, signal), None if said < 0 else bool(said)))
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
            note = self._step(m, sid, signal, verdict, said_, slot, window(i), end)
            if note is not None:
                names = [st.features[j] for j in np.flatnonzero(drifting[i])] if drifting.size else []
                note.payload["features"] = sorted(names) if signal in ("prediction", "feature") else []
                notes.append(note)
        return notes

    # ----------------------------------------------------------------- shadow mode
    def _shadow_close(self, m: ModelState, ws: int, sums: WindowSums | None, slot: Slot, end: int, alpha: float,
                      out: Output) -> None:
        """Compare each challenger with the champion in the closed window; alerts and verdicts."""
        shadow, sc, d = m.shadow, m.cfg.shadow, self.d
        assert shadow is not None and sc is not None
        champion_of: dict[int, npt.NDArray[np.int64]] = {}
        if sums is not None:
            for sid, _version in shadow.open.get(ws, {}):
                r = m.store.rows.get(sid)
                if r is not None and r < len(sums.count):
                    champion_of[sid] = sums.hist[r]
        compared: set[str] = set()
        for c in shadow.close(ws, champion_of, alpha):
            if c.breach is None:
                continue
            compared.add(c.version)
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
            alert = self._shadow_alert(m, c, status, starts, reason, fp, slot, ws, end)
            out.alerts.append(alert)
            self.metrics.alerts.labels(m.cfg.name, alert.severity, alert.status).inc()
        for version in sorted(compared):
            firing = [s for (sid, sg), s in self.alert_states.items()
                      if sg == f"shadow:{version}" and s.status == "firing" and self.series_model[sid] == m.cfg.name]
            verdict = shadow.verdict(version, sc.verdict_after, bool(firing))
            if verdict is None:
                continue
            log.info("shadow verdict for %s %s: %s", m.cfg.name, version, verdict)
            if sc.publish_verdict:
                cmd = self.breakers.verdict(m.cfg.name, version, verdict, end, shadow.compared[version],
                                            shadow.breached.get(version, 0))
                out.commands.append(cmd)
                self.metrics.commands.labels(m.cfg.name, cmd.action).inc()

    def _shadow_alert(self, m: ModelState, c: Comparison, status: str, starts: int, reason: str, fp: str,
                      slot: Slot, ws: int, end: int) -> Alert:
        assert m.spec is not None and m.cfg.shadow is not None
        champion = m.cfg.shadow.champion
        current = Summary(**histogram_summary(c.challenger, m.spec))  # type: ignore[arg-type]
        baseline = Summary(windows=1, **histogram_summary(c.champion, m.spec))  # type: ignore[arg-type]
        ring = m.shadow.recent.get((c.sid, c.version), ()) if m.shadow is not None else ()
        history = History(recent=[ScorePoint(window_start=w, count=n, score=sc, threshold=th) for w, n, sc, th in ring],
                          same_slot=[])
        where = self.series_key[c.sid] or "all traffic"
        verb = "predicts differently from" if status == "firing" else "agrees again with"
        summary = (f"{m.cfg.name} [{where}]: challenger {c.version} {verb} champion {champion} "
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

    @staticmethod
    def _verdict(st: SeriesStore, sid: int, f: Found, i: int, signal: str) -> tuple[Verdict, Baseline] | None:
        if not f.has[i]:
            return None
        test = TESTS[int(f.test[i])]
        detail = st.features[int(f.feature[i])] if signal == "feature" else ""
        if test == "page_hinkley":
            detail = "page_hinkley: sustained shift of the standardised residual over recent windows"
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
            severity=self._severity(fp, e.status, e.reason, severity(signal, verdict.score, verdict.threshold,
                                                                     self.d.feature_severity)),
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

    def _severity(self, fp: str, status: str, reason: str, now: str) -> Any:
        """An alert keeps the severity it fired with through its repeats and its resolution: receivers
        such as Alertmanager tell alerts apart by their labels, severity among them."""
        if status == "firing" and reason == "new":
            self.fired_severity[fp] = now
            return now
        fired = self.fired_severity.get(fp, now)
        if status == "resolved":
            self.fired_severity.pop(fp, None)
        return fired

    @staticmethod
    def _point(p: Any, signal: str) -> ScorePoint:
        i = SIGNAL_INDEX[signal]
        score, threshold = float(p["score"][i]), float(p["threshold"][i])
        start = int(p["start"])
        if score != score:  # NaN: no verdict for this signal in that window
            return ScorePoint(window_start=start, score=None, threshold=None, count=int(p["count"]))
        return ScorePoint(window_start=start, score=score, threshold=threshold, count=int(p["count"]))
