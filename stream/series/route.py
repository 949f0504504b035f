"""Routing: a batch's records to (model, series), column-wise, with the reason for each one refused.

One router for both decoders: each hands a model's events over as ``Columns`` (the compiled
decoder the whole batch at once, when every record decodes; the Python decoder per model, when its
events' predictions are all of one type), ``_plan`` checks a model's columns clean (nothing to
refuse: no future time, no repeated id, room for its new series) and ``_commit`` routes them. What
is not clean goes event by event (``_route_each``), so that the first failing check names each
refused event's reason. Either way a model's accepted events leave as one ``Routed``: series ids,
times, values, features, in stream order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from ..decode import DeadLetter, Event, Record
from ..typed import Columns, Schema
from ..window import stray_limit
from .tables import ModelState, Output, SeriesCore, segment_key


@dataclass(slots=True)
class Routed:
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
class Plan:
    """A model's decoded events, checked clean, with what routing them will change."""

    cols: Columns
    by_window: list[tuple[int, list[str]]]  # event ids per window they fall in
    late: npt.NDArray[np.bool_]
    new: dict[int, tuple[dict[str, str], str]]  # segment number -> (segment, its key) to look up
    sids: npt.NDArray[np.int64]  # segment number -> series id (-1: not known yet), filled by _commit
    keys: list[Any] | None = None  # segment number -> the Python decoder's key (its cache's)


class RouteStep(SeriesCore):
    """Records to series (see the module's docstring)."""

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


    def _model(self, name: str) -> ModelState | None:
        m = self.models.get(name)
        if m is None and self.d.unknown_models == "register" and len(self.models) < 10_000:
            m = self.models[name] = ModelState(self.config.resolved(name), self.d.baseline_windows)
        return m

    def _route(self, m: ModelState, evs: list[Any], where: Sequence[int], now_ms: int | None,
               out: Output) -> Routed | None:
        """A model's Python-decoded events: as columns through ``_plan`` when they are clean, else
        event by event, with the reason for each one refused."""
        keys = self._keys(m, evs)
        plan = self._python_plan(m, evs, where, keys, now_ms)
        if plan is not None:
            return self._commit(m, plan)
        ts = np.array([e.ts for e in evs], dtype=np.int64)
        ws = m.grid.starts(ts)
        # A late event is dead-lettered at ingest: it must not create a series on its way there
        # (one that never received an event would never expire).
        return self._route_each(m, evs, where, keys, ws, m.windows.late_mask(ws), self._limit(ts, now_ms), now_ms, out)

    def _python_plan(self, m: ModelState, evs: list[Any], where: Sequence[int], keys: list[Any],
                     now_ms: int | None) -> Plan | None:
        """The events as the compiled decoder would hand them over (segments numbered in order of
        first appearance in this batch, series ids from the decoder's cache), then ``_plan``."""
        preds = [e.prediction for e in evs]
        types = set(map(type, preds))
        if types <= {float, int}:
            prediction: npt.NDArray[np.float64] | list[str] = np.array(preds, dtype=np.float64)
        elif types == {str}:
            prediction = preds
        else:
            return None  # mixed, or probability maps: event by event
        first = list(dict.fromkeys(keys))  # each segment once, in order of first appearance
        number = {k: u for u, k in enumerate(first)}
        segment = np.fromiter(map(number.__getitem__, keys), np.int64, len(keys))
        cols = Columns(m.cfg.name, np.asarray(where, dtype=np.int64), np.array([e.ts for e in evs], dtype=np.int64),
                       prediction, types == {str}, [e.features for e in evs], segment, [e.event_id for e in evs],
                       [e.model_version for e in evs] if any(e.model_version is not None for e in evs) else None)
        sids = np.fromiter((m.by_values.get(k, -1) for k in first), np.int64, len(first))

        def describe(u: int) -> tuple[dict[str, str], str]:
            seg = self._segment(m, first[u], first[u])
            return seg, segment_key(seg)

        return self._plan(m, cols, sids, describe, now_ms, first)

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

    def _plans(self, records: Sequence[Record], now_ms: int | None) -> list[tuple[ModelState, Plan]] | None:
        """The batch through the compiled decoder, when it reads every record and every model's
        events are clean; None sends the whole batch to the Python decoder. Changes nothing but
        caches: a batch must not be half routed when one model's part is not clean."""
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
            top = int(c.segment.max()) + 1
            if len(m.native_sids) < top:
                m.native_sids = np.concatenate([m.native_sids, np.full(max(top, 2 * len(m.native_sids)) - len(m.native_sids), -1, np.int64)])
            table = self.typed.native[c.model]

            def describe(u: int, table: Any = table) -> tuple[dict[str, str], str]:
                seg = dict(table.segment(u))
                return seg, segment_key(seg)

            plan = self._plan(m, c, m.native_sids, describe, now_ms)
            if plan is None:
                return None
            plans.append((m, plan))
        return plans

    def _plan(self, m: ModelState, c: Columns, sids: npt.NDArray[np.int64],
              describe: Callable[[int], tuple[dict[str, str], str]], now_ms: int | None,
              keys: list[Any] | None = None) -> Plan | None:
        """A model's columns, checked clean (the checks ``_route_each`` makes one by one), with the
        new series routing them will make; None: not clean. Changes nothing."""
        if m.spec is not None and m.spec.kind != ("categorical" if c.labels else "numeric"):
            return None
        limit = self._limit(c.ts, now_ms)
        if limit is not None and int(c.ts.max()) > limit:
            return None
        rng = m.cfg.prediction_range
        if rng is not None and not c.labels:
            pred = np.asarray(c.prediction, dtype=np.float64)
            if ((pred < rng[0]) | (pred > rng[1])).any():
                return None
        ws = m.grid.starts(c.ts)
        by_window = self._by_window(ws, c.ids)
        if not self._fresh(m, by_window):
            return None
        late = m.windows.late_mask(ws)
        unknown, first = np.unique(c.segment[(sids[c.segment] < 0) & ~late], return_index=True)
        new = {u: describe(u) for u in unknown[np.argsort(first)].tolist()}  # new series in event order
        if len(m.sids) + sum(key not in m.by_segment for _seg, key in new.values()) > self.d.max_series_per_model:
            return None
        return Plan(c, by_window, late, new, sids, keys)

    def _commit(self, m: ModelState, plan: Plan) -> Routed:
        """Route a clean plan: new series made, ids noted, the columns handed on as they are."""
        c = plan.cols
        if m.spec is None:
            m.spec = m.new_spec(not c.labels)
        for u, (seg, key) in plan.new.items():
            sid = m.by_segment.get(key)
            plan.sids[u] = self._new_series(m, seg, key) if sid is None else sid
            if plan.keys is not None:
                m.by_values[plan.keys[u]] = int(plan.sids[u])
        self._note_seen(m, plan.by_window)
        versions = c.versions  # None: no event sent a model_version
        values: Any = c.prediction
        if c.labels and not isinstance(values, list):  # the compiled decoder's label numbers, as text
            values = list(map(self.typed.native[c.model].labels().__getitem__, values.tolist()))
        return Routed(plan.sids[c.segment], c.ts, values, c.where, c.features, plan.late, versions)

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
                    now_ms: int | None, out: Output) -> Routed | None:
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
        return Routed(np.array(sids, dtype=np.int64), ts, vals, np.asarray(where, dtype=np.int64)[idx],
                       [evs[i].features for i in idx], late[idx],
                       _versions([evs[i].model_version for i in idx]))

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
            rng = m.cfg.prediction_range
            if rng is not None and not rng[0] <= pred <= rng[1]:
                return "invalid_event", (f"prediction {pred!r} is outside the declared range [{rng[0]:g}, {rng[1]:g}] "
                                         f"(models.{m.cfg.name}.prediction_range)")
        if m.spec is None:
            m.spec = m.new_spec(kind == "numeric")
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


def _versions(versions: list[str | None]) -> list[str | None] | None:
    """Each event's model_version, or None when none has one."""
    return versions if any(v is not None for v in versions) else None
