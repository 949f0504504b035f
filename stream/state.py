"""Engine state as explicit data (numbers, strings, lists): snapshot and restore, never pickle.

The state is input too (it comes back from a changelog topic), so it is plain JSON-compatible data
with a version, validated on the way in by construction. What is kept: per model the sketch specs,
feature sketches, open windows, unfrozen values and recent event ids; per series the window
history by calendar slot; alert lifecycles, notification log, open model-level groups, breakers,
the watermark and counters. Online detectors are rebuilt by feeding them the residuals they saw
(kept with them, bounded).

>>> from stream.config import Config, ModelConfig
>>> e = Engine(Config(models={"m": ModelConfig()}))
>>> again = restore(Config(models={"m": ModelConfig()}), orjson.loads(orjson.dumps(snapshot(e))))
>>> again.stats == e.stats
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from .baseline import SeriesHistory, WindowRecord
from .config import Config
from .decide import AlertState
from .dedupe import Sent
from .detect import ResidualDetectors
from .engine import Engine, ModelState, Stats, segment_key
from .features import FeatureSketch
from .group import _Group
from .metrics import Metrics
from .sketch import CategoricalSpec, NumericSpec, Spec
from .window import Accumulator

VERSION = 1


class StateError(ValueError):
    """A snapshot that cannot be restored (wrong version or shape)."""


def _spec_out(spec: Spec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    if isinstance(spec, NumericSpec):
        return {"kind": "numeric", "bins": spec.n_bins, "learn_from": spec.learn_from, "frozen": spec.frozen,
                "edges": spec.edges.tolist(), "seen": [a.tolist() for a in spec._seen]}
    return {"kind": "categorical", "max": spec.max_labels, "labels": list(spec.labels)}


def _spec_in(d: dict[str, Any] | None) -> Spec | None:
    if d is None:
        return None
    if d["kind"] == "numeric":
        s = NumericSpec(bins=d["bins"], learn_from=d["learn_from"])
        s.frozen = d["frozen"]
        s.edges = np.asarray(d["edges"], dtype=np.float64)
        s._seen = [np.asarray(a, dtype=np.float64) for a in d["seen"]]
        s._seen_n = sum(len(a) for a in s._seen)
        return s
    c = CategoricalSpec(max_labels=d["max"])
    for label in d["labels"]:
        c.codes([label])
    return c


def _arr(a: Any) -> list[Any]:
    return np.asarray(a).tolist()


def _features_out(fs: FeatureSketch | None) -> dict[str, Any] | None:
    if fs is None:
        return None
    return {"specs": {n: _spec_out(s) for n, s in fs.specs.items()}, "cross": _arr(fs._cross), "cnt": _arr(fs._cnt),
            "sumpair": _arr(fs._sumpair), "sqpair": _arr(fs._sqpair)}


def _features_in(fs: FeatureSketch | None, d: dict[str, Any] | None) -> None:
    if fs is None or d is None:
        return
    for n, s in d["specs"].items():
        if n in fs.specs:
            fs.specs[n] = _spec_in(s)
    fs._cross, fs._cnt = np.asarray(d["cross"], float), np.asarray(d["cnt"], float)
    fs._sumpair, fs._sqpair = np.asarray(d["sumpair"], float), np.asarray(d["sqpair"], float)


def _record_out(r: WindowRecord) -> list[Any]:
    return [r.start, r.count, None if r.hist is None else r.hist.tolist(), r.total, r.total_sq,
            {k: list(v) for k, v in r.scores.items()}, r.flagged,
            None if r.features is None else {k: v.tolist() for k, v in r.features.items()}]


def _record_in(x: list[Any]) -> WindowRecord:
    start, count, hist, total, total_sq, scores, flagged, feats = x
    return WindowRecord(
        start, count, None if hist is None else np.asarray(hist, dtype=np.int32), total, total_sq,
        {k: (v[0], v[1]) for k, v in scores.items()}, flagged,
        None if feats is None else {k: np.asarray(v, dtype=np.int32) for k, v in feats.items()},
    )


def _history_out(h: SeriesHistory) -> dict[str, Any]:
    table: dict[int, int] = {}
    records: list[list[Any]] = []

    def ref(r: WindowRecord) -> int:
        i = table.get(id(r))
        if i is None:
            i = table[id(r)] = len(records)
            records.append(_record_out(r))
        return i

    slots = [[list(key), [ref(r) for r in dq]] for key, dq in h.slots.items()]
    recent = [ref(r) for r in h.recent]
    return {"keep": h.keep, "records": records, "slots": slots, "recent": recent}


def _history_in(d: dict[str, Any]) -> SeriesHistory:
    h = SeriesHistory(keep=d["keep"])
    records = [_record_in(x) for x in d["records"]]
    for key, refs in d["slots"]:
        h.slots[tuple(key)] = deque((records[i] for i in refs), maxlen=h.keep)
    h.recent.extend(records[i] for i in d["recent"])
    return h


def _acc_out(a: Accumulator) -> list[Any]:
    return [a.count, a.hist.tolist(), a.total, a.total_sq, {k: v.tolist() for k, v in a.features.items()}]


def _acc_in(x: list[Any]) -> Accumulator:
    count, hist, total, total_sq, feats = x
    return Accumulator(count, np.asarray(hist, dtype=np.int64), total, total_sq,
                       {k: np.asarray(v, dtype=np.int64) for k, v in feats.items()})


def _model_out(m: ModelState) -> dict[str, Any]:
    return {
        "spec": _spec_out(m.spec),
        "features": _features_out(m.features),
        "closed_upto": m.windows.closed_upto,
        "open": [[ws, [[sid, _acc_out(a)] for sid, a in per.items()]] for ws, per in m.windows._open.items()],
        "sids": list(m.sids),
        "pending": [[s.tolist(), w.tolist(), v.tolist()] for s, w, v in m.pending],
        "seen": [[ws, sorted(ids)] for ws, ids in m.seen.items()],
    }


def _model_in(m: ModelState, d: dict[str, Any], series_key: list[str]) -> None:
    m.spec = _spec_in(d["spec"])
    _features_in(m.features, d["features"])
    m.windows.closed_upto = d["closed_upto"]
    m.windows._open = {ws: {sid: _acc_in(a) for sid, a in per} for ws, per in d["open"]}
    m.sids = list(d["sids"])
    m.by_segment = {series_key[sid]: sid for sid in m.sids}
    m.pending = [(np.asarray(s, np.int64), np.asarray(w, np.int64), np.asarray(v, np.float64)) for s, w, v in d["pending"]]
    m.seen = {ws: set(ids) for ws, ids in d["seen"]}


def snapshot(engine: Engine) -> dict[str, Any]:
    """The engine's whole state as JSON-compatible data."""
    wm = engine.watermark
    return {
        "version": VERSION,
        "models": {name: _model_out(m) for name, m in engine.models.items()},
        "series": [[engine.series_model[i], engine.series_segment[i], _history_out(engine.history[i]),
                    engine.last_active[i]] for i in range(len(engine.series_model))],
        "alert_states": [[sid, sig, s.status, s.breaches, s.clean, s.starts_at] for (sid, sig), s in engine.alert_states.items()],
        "sent": [[fp, s.status, s.at] for fp, s in engine.sent.items()],
        "online": [[sid, sig, list(det.history)] for (sid, sig), det in engine.online.items()],
        "groups": [[model, sig, sorted(g.members), g.starts, g.last_sent] for (model, sig), g in engine.grouper.groups.items()],
        "breakers": [[model, sorted(b.alerts), b.expires_at] for model, b in engine.breakers.open.items()],
        "rate_limited": engine.breakers.rate_limited,
        "watermark": {"max": [[p, v] for p, v in wm._max.items()], "last": wm._last},
        "stats": [engine.stats.consumed, engine.stats.processed, engine.stats.dead_lettered, engine.stats.windows_closed],
    }


def restore(
    config: Config,
    data: dict[str, Any],
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    budget_share: float = 1.0,
) -> Engine:
    """A new engine that continues exactly where the snapshot's engine stood."""
    from .act import Breaker

    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StateError(f"unsupported state version {data.get('version') if isinstance(data, dict) else data!r}")
    engine = Engine(config, metrics, clock=clock, budget_share=budget_share)
    for model, seg, hist, last_active in data["series"]:
        engine.series_model.append(model)
        engine.last_active.append(last_active)
        engine.series_segment.append(dict(seg))
        engine.series_key.append(segment_key(seg))
        engine.history.append(_history_in(hist))
    for name, md in data["models"].items():
        m = engine.models.get(name) or engine._model(name)
        if m is None:
            continue  # a model no longer configured: its state is dropped
        _model_in(m, md, engine.series_key)
    engine.alert_states = {(sid, sig): AlertState(status, b, c, starts) for sid, sig, status, b, c, starts in data["alert_states"]}
    engine.sent = {fp: Sent(status, at) for fp, status, at in data["sent"]}
    for sid, sig, zs in data["online"]:
        det = engine.online[(sid, sig)] = ResidualDetectors()
        det.replay(zs)
    for model, sig, members, starts, last_sent in data["groups"]:
        engine.grouper.groups[(model, sig)] = _Group(set(members), starts, last_sent, {})
    for model, alerts, expires in data["breakers"]:
        engine.breakers.open[model] = Breaker(set(alerts), expires)
    engine.breakers.rate_limited = data["rate_limited"]
    engine.watermark._max = {p: v for p, v in data["watermark"]["max"]}
    engine.watermark._seen_at = {p: float("-inf") for p in engine.watermark._max}
    engine.watermark._last = data["watermark"]["last"]
    engine.stats = Stats(*data["stats"])
    return engine


def dumps(engine: Engine) -> bytes:
    return orjson.dumps(snapshot(engine))


def loads(
    config: Config,
    raw: bytes,
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    budget_share: float = 1.0,
) -> Engine:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"state is not JSON: {exc}") from None
    try:
        return restore(config, data, metrics, clock, budget_share)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"state cannot be restored: {exc!r}") from None
