"""Engine state as explicit data (numbers, strings, lists): snapshot and restore, never pickle.

The state is input too (it comes back from a changelog topic), so it is plain JSON-compatible data
with a version, validated on the way in by construction. What is kept: per model the sketch specs,
feature sketches, open windows, unfrozen values, recent event ids and the series store (slot
statistics as arrays, stored as base64 of their little-endian bytes with dtype and shape, checked on
the way in); alert lifecycles, notification log, open model-level groups,
breakers, the watermark and counters.

>>> from stream.config import Config, ModelConfig
>>> e = Engine(Config(models={"m": ModelConfig()}))
>>> again = restore(Config(models={"m": ModelConfig()}), orjson.loads(orjson.dumps(snapshot(e))))
>>> again.stats == e.stats
True
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from . import store_records
from .config import Config
from .decide import AlertState
from .dedupe import Sent
from .engine import Engine, ModelState, Stats, segment_key
from .features import FeatureSketch
from .framing import StateError
from .metrics import Metrics
from .model.frontier import key_of
from .model.state import task_in, task_out
from .model.task import ModelTask
from .series.tables import FeatureColumns
from .series.task import SeriesTask
from .sketch import CategoricalSpec, NumericSpec, Spec
from .store_records import array_in, array_out
from .verdict import Params, report_in, report_out
from .window import WindowSums

VERSION = 2
MAGIC = b"DLS\x02"


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
        e = s.edges
        if e.ndim != 1 or (s.frozen and (not len(e) or not np.isfinite(e).all() or (np.diff(e) <= 0).any())):
            raise ValueError("sketch edges must be finite and increasing")
        s._seen = [np.asarray(a, dtype=np.float64) for a in d["seen"]]
        s._seen_n = sum(len(a) for a in s._seen)
        return s
    c = CategoricalSpec(max_labels=d["max"])
    for label in d["labels"]:
        c.codes([label])
    return c


def _arr(a: Any) -> list[Any]:
    return np.asarray(a).tolist()


def _kept_out(kept: FeatureColumns | None, parts: list[bytes] | None) -> list[Any] | None:
    return None if kept is None else [[array_out(f, parts), array_out(c, parts)] for f, c in kept]


def _kept_in(d: list[Any] | None, parts: list[memoryview] | None) -> FeatureColumns | None:
    if d is None:
        return None
    return [(array_in(f, parts).astype(np.float64).reshape(-1), array_in(c, parts).astype(np.int64).reshape(-1)) for f, c in d]


def _features_out(fs: FeatureSketch | None) -> dict[str, Any] | None:
    if fs is None:
        return None
    return {"specs": {n: _spec_out(s) for n, s in fs.specs.items()}, "names": list(fs.names),
            "first_kind": fs.first_kind, "sample": {n: sp.sample.tolist() for n, sp in fs.sample.items()},
            "vocab": {n: v.labels for n, v in fs.vocab.items()},
            "cross": _arr(fs._cross), "cnt": _arr(fs._cnt),
            "sumpair": _arr(fs._sumpair), "sqpair": _arr(fs._sqpair)}


def _features_in(fs: FeatureSketch | None, d: dict[str, Any] | None) -> None:
    if fs is None or d is None:
        return
    for n, s in d["specs"].items():
        if n in fs.specs:
            fs.specs[n] = _spec_in(s)
    for n, kind in (d.get("first_kind") or {}).items():
        if n in fs.first_kind:
            fs.first_kind[n] = None if kind is None else "numeric" if kind == "numeric" else "categorical"
    for n, values in (d.get("sample") or {}).items():
        if n in fs.first_kind:
            fs.sample[n] = NumericSpec(bins=fs.n_bins, learn_from=fs.learn_from)
            fs.sample[n].observe(np.asarray(values, dtype=np.float64), freeze=False)
    for n, labels in (d.get("vocab") or {}).items():
        if n in fs.first_kind:
            fs.vocab[n] = CategoricalSpec(max_labels=fs.max_labels)
            fs.vocab[n].codes([str(x) for x in labels])
    sums = [np.asarray(d[k], float) for k in ("cross", "cnt", "sumpair", "sqpair")]
    old = list(d.get("names") or fs.names)  # snapshots before names were kept: the config's order
    if any(a.shape != (len(old), len(old)) for a in sums):
        raise ValueError("feature correlation sums do not match their features")
    # The features may have changed in the config since: carry the pairs both know, by name.
    new = {n: i for i, n in enumerate(fs.names)}
    keep = [(j, new[n]) for j, n in enumerate(old) if n in new]
    src, dst = [j for j, _ in keep], [i for _, i in keep]
    for target, a in zip(("_cross", "_cnt", "_sumpair", "_sqpair"), sums, strict=True):
        out = np.zeros((len(fs.names), len(fs.names)))
        out[np.ix_(dst, dst)] = a[np.ix_(src, src)]
        setattr(fs, target, out)


_SUMS = WindowSums.FIELDS


def _open_out(m: ModelState, parts: list[bytes] | None) -> list[Any]:
    """Open windows' sums, by store row."""
    rows = np.arange(m.store.n_rows)
    out = []
    for ws, sums in m.windows._open.items():
        t = sums.take(rows)
        out.append([ws, {n: array_out(getattr(t, n), parts) for n in _SUMS}])
    return out


def _open_in(m: ModelState, d: list[Any], parts: list[memoryview] | None) -> None:
    n = m.store.n_rows
    for ws, arrays in d:
        # A window written before the fast lane lacks its arrays: they start at zero.
        sums = WindowSums(**{k: array_in(arrays[k], parts) for k in _SUMS if k in arrays})
        if any(len(getattr(sums, k)) != n for k in _SUMS) or sums.ceil.shape[1:] != (sums.hist.shape[1] + 1,) \
                or sums.seen.shape != sums.ceil.shape or sums.recent.shape != sums.ceil.shape \
                or sums.slow_recent.shape != sums.ceil.shape:
            raise ValueError("open window sums disagree with the number of series")
        m.windows._open[int(ws)] = sums


def _model_out(m: ModelState, parts: list[bytes] | None) -> dict[str, Any]:
    return {
        "spec": _spec_out(m.spec),
        "features": _features_out(m.features),
        "closed_upto": m.windows.closed_upto,
        "open": _open_out(m, parts),
        "sids": list(m.sids),
        "pending": [[s.tolist(), w.tolist(), v.tolist(), _kept_out(kept, parts), r.tolist()] for s, w, v, kept, r in m.pending],
        "seen": [[ws, sorted(ids)] for ws, ids in m.seen.items()],
        "learn_until": m.learn_until,
        "params": None if m.params is None else m.params.to_dict(),
        "proposed": m.proposed,
        "held": [[ws, sids] for ws, sids in m.held.items()],
        "versions": [[ws, sorted(per.items())] for ws, per in sorted(m.versions.items())],
        "shadow_pending": [[s.tolist(), w.tolist(), v.tolist(), list(ver)] for s, w, v, ver in m.shadow_pending],
        "store": store_records.meta(m.store, parts),
        "shadow": m.shadow.snapshot() if m.shadow is not None else None,
        "incumbent": m.incumbent,
        "canary": m.canary.snapshot() if m.canary is not None else None,
    }


def _check_shapes(m: ModelState) -> None:
    """What the engine takes for granted of a restored model: its open windows and its store count
    on the bins of its sketch (a state that restores must also run)."""
    spec = m.spec
    if spec is None or not spec.frozen:
        if m.windows._open and spec is None:
            raise ValueError("open windows without a sketch")
        return
    if m.store.hist.shape[2] > spec.size:
        raise ValueError(f"series store has {m.store.hist.shape[2]} bins, its sketch {spec.size}")
    for ws, sums in m.windows._open.items():
        if sums.hist.shape[1] != spec.size:
            raise ValueError(f"open window {ws} has {sums.hist.shape[1]} bins, its sketch {spec.size}")


def _model_in(m: ModelState, d: dict[str, Any], series_key: list[str], parts: list[memoryview] | None) -> None:
    m.spec = _spec_in(d["spec"])
    _features_in(m.features, d["features"])
    m.windows.closed_upto = d["closed_upto"]
    m.sids = list(d["sids"])
    m.by_segment = {series_key[sid]: sid for sid in m.sids}
    # Older states: no features kept (then waiting for the edges alone), no reach (then the event times).
    m.pending = [(np.asarray(s, np.int64), np.asarray(w, np.int64), np.asarray(v, np.float64),
                  _kept_in(rest[0] if rest else None, parts), np.asarray(rest[1] if len(rest) > 1 else w, np.int64))
                 for s, w, v, *rest in d["pending"]]
    if any(not (len(s) == len(w) == len(v) == len(r)) or (kept is not None and (m.features is None or len(kept) != len(m.features.names)
           or any(len(f) != len(s) or len(c) != len(s) for f, c in kept))) for s, w, v, kept, r in m.pending):
        raise ValueError("pending events disagree in length or in features")
    m.seen = {ws: set(ids) for ws, ids in d["seen"]}
    m.learn_until = d["learn_until"]
    shared = d.get("shared_edges")  # a state from before features were shared: the edges alone
    m.params = Params.from_dict(d["params"]) if d.get("params") else None if shared is None else Params(m.cfg.name, shared)
    m.proposed = bool(d.get("proposed", False))
    m.held = {int(ws): [int(s) for s in sids] for ws, sids in d.get("held", [])}
    m.versions = {int(ws): {str(v): int(n) for v, n in per} for ws, per in d.get("versions", [])}
    m.shadow_pending = [(np.asarray(s, np.int64), np.asarray(w, np.int64), np.asarray(v, np.float64),
                         [str(x) for x in ver]) for s, w, v, ver in d.get("shadow_pending", [])]
    if any(not (len(s) == len(w) == len(v) == len(ver)) for s, w, v, ver in m.shadow_pending):
        raise ValueError("pending challenger events disagree in length")
    if not set(s for sids in m.held.values() for s in sids) <= set(m.sids):
        raise ValueError("held windows name series the model does not have")
    m.store = store_records.from_meta(d["store"], parts)
    _open_in(m, d["open"], parts)
    _check_shapes(m)
    if m.shadow is not None and d.get("shadow"):
        m.shadow.restore(d["shadow"])
    m.incumbent = None if d.get("incumbent") is None else str(d["incumbent"])
    if m.canary is not None and d.get("canary"):
        m.canary.restore(d["canary"])


def snapshot(engine: SeriesTask, parts: list[bytes] | None = None) -> dict[str, Any]:
    """The engine's whole state as JSON-compatible data; arrays go to ``parts`` when given (else inline)."""
    wm = engine.watermark
    # A series task of the two-stage pipeline has no model task of its own: its part is empty.
    decisions = engine.decisions if isinstance(engine, Engine) else ModelTask(engine.config)
    return {
        "version": VERSION,
        "models": {name: _model_out(m, parts) for name, m in engine.models.items()},
        "series": [[engine.series_model[i], engine.series_segment[i], engine.last_active[i]]
                   for i in range(len(engine.series_model))],
        "alert_states": [[sid, sig, s.status, s.breaches, s.clean, s.starts_at] for (sid, sig), s in engine.alert_states.items()],
        "sent": [[fp, s.status, s.at] for fp, s in engine.sent.items()],
        "accepted": list(engine.accepted),
        **task_out(decisions),
        "watermark": {"max": [[p, v] for p, v in wm._max.items()], "last": wm._last},
        "stats": [engine.stats.consumed, engine.stats.processed, engine.stats.dead_lettered, engine.stats.windows_closed],
        "reach": engine._reach,
        # an engine's own frontier: the fast lane's reports waiting for its watermark
        "frontier": [report_out(r) for r in engine.frontier.pending.values()] if isinstance(engine, Engine) else [],
    }


def restore(
    config: Config,
    data: dict[str, Any],
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    budget_share: float = 1.0,
    parts: list[memoryview] | None = None,
    cls: type[SeriesTask] = Engine,
) -> SeriesTask:
    """A new engine that continues exactly where the snapshot's engine stood."""

    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StateError(f"unsupported state version {data.get('version') if isinstance(data, dict) else data!r}")
    engine = cls(config, metrics, clock=clock, budget_share=budget_share)
    for model, seg, last_active in data["series"]:
        engine.series_model.append(model)
        engine.last_active.append(last_active)
        engine.series_segment.append(dict(seg))
        engine.series_key.append(segment_key(seg))
    for name, md in data["models"].items():
        m = engine.models.get(name) or engine._model(name)
        if m is None:
            continue  # a model no longer configured: its state is dropped
        _model_in(m, md, engine.series_key, parts)
    engine.alert_states = {(sid, sig): AlertState(status, b, c, starts) for sid, sig, status, b, c, starts in data["alert_states"]}
    engine.sent = {fp: Sent(status, at) for fp, status, at in data["sent"]}
    engine.accepted = [str(x) for x in data.get("accepted", [])]
    decisions = engine.decisions if isinstance(engine, Engine) else ModelTask(config)
    groups = []
    for model, sig, members, starts, last_sent, *rest in data["groups"]:
        # a state written before groups named their members by key held series ids
        pairs = [[engine.series_key[m], engine.series_segment[m]] if isinstance(m, int) else m for m in members]
        groups.append([model, sig, pairs, starts, last_sent, *rest])
    task_in(decisions, {**data, "groups": groups})
    if "shadow_book" not in data:  # written when the series side counted the verdicts
        for name, m in engine.models.items():
            if m.shadow is not None:
                rows: list[list[Any]] = [[name, v, n, m.shadow.breached.get(v, 0), m.shadow.verdicts.get(v), []]
                                         for v, n in m.shadow.compared.items()]
                decisions.shadow.restore(rows)
    engine._reach = int(data.get("reach", engine._reach))
    if isinstance(engine, Engine):
        for r in map(report_in, data.get("frontier", [])):
            engine.frontier.pending[key_of(r, engine.frontier.lateness)] = r
    engine.watermark._max = {p: v for p, v in data["watermark"]["max"]}
    engine.watermark._seen_at = {p: float("-inf") for p in engine.watermark._max}
    engine.watermark._last = data["watermark"]["last"]
    engine.stats = Stats(*data["stats"])
    return engine


def _pack(header: dict[str, Any], parts: list[bytes]) -> bytes:
    """``MAGIC``, the JSON header's length (4 bytes, little-endian), the header, then the raw parts
    in the order the header's ``parts`` lists their lengths."""
    header["parts"] = [len(p) for p in parts]
    head = orjson.dumps(header)
    return b"".join([MAGIC, struct.pack("<I", len(head)), head, *parts])


def _unpack(raw: bytes | memoryview) -> tuple[dict[str, Any], list[memoryview]]:
    view = memoryview(raw)
    if bytes(view[: len(MAGIC)]) != MAGIC or len(view) < len(MAGIC) + 4:
        raise StateError("state is not a driftline snapshot (no magic bytes: an older version?)")
    (size,) = struct.unpack_from("<I", view, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = orjson.loads(view[start:start + size])
    except orjson.JSONDecodeError as exc:
        raise StateError(f"state header is not JSON: {exc}") from None
    try:
        parts, at = [], start + size
        for n in header["parts"]:
            parts.append(view[at:at + int(n)])
            at += int(n)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"state header is not a snapshot's: {exc!r}") from None
    if at != len(view):
        raise StateError(f"{len(view) - at} bytes after the last array")
    return header, parts


def records(engine: SeriesTask, changed_only: bool = True) -> dict[str, bytes]:
    """The engine's state as named records: ``meta`` (everything but the slot statistics) and one
    record per slot column of a model's series store (``model/c/N``, ``model/p/N``). With
    ``changed_only``, only the columns changed since the last such call (and the meta): the state
    topic is compacted by record, so what did not change is still there. Each column record
    carries its store's generation: columns of an older store under the same key are not mixed in."""
    parts: list[bytes] = []
    out = {"meta": _pack(snapshot(engine, parts), parts)}
    for name, m in engine.models.items():
        cols, pcols = m.store.changes(everything=not changed_only)
        for c in cols:
            parts = []
            out[f"{name}/c/{c}"] = _pack({"gen": m.store.gen, "model": name, **store_records.column(m.store, c, parts)}, parts)
        for c in pcols:
            parts = []
            out[f"{name}/p/{c}"] = _pack({"gen": m.store.gen, "model": name, **store_records.points(m.store, c, parts)}, parts)
        if changed_only:
            m.store.clean()
    return out


def from_records(
    config: Config,
    recs: dict[str, bytes],
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    budget_share: float = 1.0,
    cls: type[SeriesTask] = Engine,
) -> SeriesTask:
    """An engine (or a series task: ``cls``) from its records (see ``records``)."""
    if "meta" not in recs:
        raise StateError("state has no meta record")
    header, parts = _unpack(recs["meta"])
    try:
        engine = restore(config, header, metrics, clock, budget_share, parts, cls)
        for name, raw in recs.items():
            if name == "meta":
                continue
            h, p = _unpack(raw)
            m = engine.models.get(str(h.get("model")))
            if m is None or h.get("gen") != m.store.gen:
                continue  # an older store's column, or a model no longer configured
            if "col" in h:
                store_records.set_column(m.store, h, p)
            else:
                store_records.set_points(m.store, h, p)
        return engine
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"state cannot be restored: {exc!r}") from None


def dumps(engine: SeriesTask) -> bytes:
    """The whole state in one blob: all records, packed (for files and tests; the service writes
    records one by one)."""
    recs = records(engine, changed_only=False)
    return _pack({"version": VERSION, "records": list(recs)}, list(recs.values()))


def loads(
    config: Config,
    raw: bytes,
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    budget_share: float = 1.0,
    cls: type[SeriesTask] = Engine,
) -> SeriesTask:
    header, parts = _unpack(raw)
    names = header.get("records") if isinstance(header, dict) else None
    if header.get("version") != VERSION or not isinstance(names, list) or len(names) != len(parts):
        raise StateError(f"unsupported state (version {header.get('version')!r})")
    return from_records(config, {str(n): bytes(p) for n, p in zip(names, parts, strict=True)}, metrics, clock, budget_share, cls)
