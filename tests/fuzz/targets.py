"""Fuzz targets: each takes bytes, and raises only when a property of driftline breaks.

- ``decode``: a batch of records (the bytes split at newlines) through both decoders. Every record is
  an event or a dead letter with a reason; an event's values are within the contract's ranges; the
  native decoder vouches only for batches the Python path takes whole, and reads them to the same
  values.
- ``engine``: events built from the bytes (hostile values where the contract has fields, raw bytes
  now and then) through ``Engine.process`` on a warm engine (weeks of history, bins learned), with
  and without a clock: it never raises, every record is processed or dead-lettered, its outputs
  serialise, and its window sums stay finite.
- ``subscriber``: control-topic records through a model server's ``BreakerBook``: never raises,
  and with a signing key only commands it signed itself are applied.
- ``state``: state records from the bytes (raw, and a real snapshot with the bytes written into
  it): a restore either succeeds or raises ``StateError``; an engine it restores processes events.

Run one with atheris (coverage-guided): ``python -m tests.fuzz.run TARGET``; ``make fuzz`` runs them
all. Every file of ``tests/fuzz/corpus/TARGET/`` is also run through its target by the test suite.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import orjson

from stream.config import Config, Defaults, ModelConfig
from stream.contract import MAX_TS, MIN_TS
from stream.decode import Record, decode_batch
from stream.engine import Engine
from stream.metrics import Metrics
from stream.publish import alert_bytes, command_bytes
from stream.typed import Schema, TypedDecoder

END = 1795716000000  # 2026-11-26 18:00 UTC: the warm engine's history ends here
MAX_BYTES = 4096
REASONS = {"malformed_json", "not_utf8", "invalid_event", "unknown_model", "prediction_type", "late", "future",
           "oversized", "too_many_series", "empty", "duplicate", "engine_error"}


# ----------------------------------------------------------------- decode
def _typed() -> TypedDecoder:
    t = TypedDecoder()
    t.set(Schema("fraud", ["country"], ["amount", "tier"], ["numeric", "categorical"]))
    t.set(Schema("churn", None, ["a"], ["numeric"]))
    return t


def decode(data: bytes) -> None:
    records = [Record(v, None, "fuzz", 0, i) for i, v in enumerate(data.split(b"\n"))]
    typed = _typed()
    out = decode_batch(records, MAX_BYTES, typed)
    where = list(out.where)
    dead_at = [d.record.offset for d in out.dead]
    assert len(out.events) == len(where) and sorted(where + dead_at) == list(range(len(records)))
    for d in out.dead:
        assert d.reason in REASONS and d.detail and d.record.value == records[d.record.offset].value
    for ev in out.events:
        assert MIN_TS <= ev.ts < MAX_TS, ev.ts
        p = ev.prediction
        assert not isinstance(p, float) or math.isfinite(p)
        assert not isinstance(p, dict) or all(math.isfinite(v) for v in p.values())
    cols = typed.columns(records, MAX_BYTES)
    if cols is None:
        return
    assert not out.dead, "the native decoder vouched for a batch with a dead letter"
    at = dict(zip(where, out.events, strict=True))
    assert sum(len(c.ids) for c in cols) == len(records)
    for c in cols:
        schema = typed.schemas[c.model]
        for j, pos in enumerate(c.where.tolist()):
            ev = at[pos]
            assert (c.ids[j], int(c.ts[j])) == (ev.event_id, ev.ts)
            if not c.labels:
                assert float(c.prediction[j]) == float(ev.prediction)
            feats = ev.features
            for k, kind in enumerate(schema.kinds):
                v = getattr(feats, f"f{k}") if schema.feature_struct is not None else None
                got = float(c.features[j, k])
                if kind == "numeric":
                    assert (v is None and math.isnan(got)) or got == float(v), (v, got)


# ----------------------------------------------------------------- engine
def _config() -> Config:
    return Config(models={"fraud": ModelConfig(segment_by=["country", "channel"], features=["amount", "tier", "f00"],
                                               action="circuit_break")},
                  defaults=Defaults(max_series_per_model=50, max_event_bytes=MAX_BYTES))


@cache
def _warm() -> bytes:
    """Three weeks of a seasonal stream: bins learned, windows closed, slot history to compare with."""
    from stream.simulate import Scenario, simulate
    from stream.state import dumps

    sc = Scenario(weeks=3, end_ms=END, rate=8, correlated_features=1)
    raw = [orjson.dumps(e) for e in simulate(sc, seed=3)]
    engine = Engine(_config())
    for i in range(0, len(raw), 2000):
        engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + 2000])])
    return dumps(engine)


class _Bytes:
    """Draws from the fuzzer's bytes (zeros once they run out)."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def int(self, n: int) -> int:
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return int.from_bytes(chunk.ljust(n, b"\0"), "little")

    def pick(self, options: list[Any]) -> Any:
        return options[self.int(1) % len(options)]

    def float(self) -> float:
        return struct.unpack("<d", self.int(8).to_bytes(8, "little"))[0]

    def raw(self) -> bytes:
        n = self.int(1) % 64
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk


def _number(b: _Bytes) -> str:
    """A JSON number, or something in its place: extremes, subnormals, and spellings JSON forbids."""
    x = b.float()
    return b.pick([repr(x) if math.isfinite(x) else "1e999", "0.3", "0.7", "1e300", "-1e300", "1e-300", "5e-324",
                   "1e308", "-1e308", "1e999", "NaN", "Infinity", str(b.int(8) - 2**63), "1" + "0" * 30, "-0",
                   repr(x * 1e-6) if math.isfinite(x) else "0", "null", '"0.5"', "true", "[]", "{}"])


def _ts(b: _Bytes) -> str:
    base = END + 3600_000 * (b.int(1) % 6) - 7200_000 + b.int(2)
    return b.pick([str(base), str(base), str(base), f'"{_rfc3339(base, b)}"', "1.7951864781e20", "1e19", "1e308",
                   "-1e20", "-1e15", str(MIN_TS - 1), str(MAX_TS), str(MIN_TS), str(base / 1000), str(base * 1000),
                   f"{base}.0", f"{base}.5", '"9999-12-31T23:59:59Z"', '"0001-01-01T00:00:00+14:00"',
                   '"2026-11-26T17:00:00"', '"2026-02-30T00:00:00Z"', "null", str(END + 86_400_000 * 400),
                   str(END - 86_400_000 * 400), _number(b)])


def _rfc3339(ms: int, b: _Bytes) -> str:
    from datetime import UTC, datetime, timedelta, timezone

    off = timedelta(minutes=(b.int(2) % (28 * 60)) - 14 * 60)
    t = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(timezone(off))
    return t.isoformat(timespec=b.pick(["seconds", "milliseconds", "microseconds"]))


def _text(b: _Bytes) -> str:
    return b.pick(['"US"', '"DE"', '"web"', '"app"', '""', '"\\u0000"', '"\\ud800"', '"' + "x" * 300 + '"', "1",
                   "true", "null", '"é"', '"\\"}"', orjson.dumps(b.raw().decode("utf-8", "replace")).decode()])


def _event(b: _Bytes, i: int) -> bytes:
    """One record: mostly a prediction event with hostile values where the contract has fields."""
    if b.int(1) % 16 == 0:
        return b.raw()
    fields = {
        "event_id": b.pick([f'"e{i}"', f'"e{i}"', f'"e{b.int(1) % 4}"', '""', "7", '"' + "i" * 300 + '"']),
        "model": b.pick(['"fraud"'] * 6 + ['"ghost"', '""', "null", "1"]),
        "ts": _ts(b),
        "prediction": b.pick([_number(b)] * 4 + ['"high"', '{"a": 0.2, "b": 0.8}', "{}", '{"a": 1e999}', "null"]),
    }
    if b.int(1) % 4:
        fields["segment"] = b.pick(["{" + f'"country": {_text(b)}, "channel": {_text(b)}' + "}", "{}", "null", "[]",
                                    '{"country": "US", "channel": "web", "extra": "x"}'])
    if b.int(1) % 3:
        fields["features"] = b.pick(["{" + f'"amount": {_number(b)}, "tier": {_text(b)}, "f00": {_number(b)}' + "}",
                                     "{}", "null", '{"amount": "12"}', '{"other": 1}'])
    if b.int(1) % 5 == 0:
        fields["model_version"] = b.pick(['"3.1.0"', '"4.0.0"', "null", "1"])
    if b.int(1) % 7 == 0:
        fields["label"] = b.pick(["1", "0", '"x"', "true", "null", "1e999"])
    keys = list(fields)
    if b.int(1) % 8 == 0 and keys:
        keys.pop(b.int(1) % len(keys))  # a required field missing, now and then
    return ("{" + ", ".join(f'"{k}": {fields[k]}' for k in keys) + "}").encode("utf-8", "surrogatepass")


def engine(data: bytes) -> None:
    from stream.state import loads

    b = _Bytes(data)
    mode = b.int(1)
    clock: Callable[[], float] | None = (lambda: END / 1000 + 600) if mode & 1 else None
    e = loads(_config(), _warm(), Metrics(), clock)
    e.typed = TypedDecoder(native=bool(mode & 2))
    base = (e.stats.consumed, e.stats.processed, e.stats.dead_lettered)
    n = 0
    while b.at < len(data) and n < 200:
        size = 1 + b.int(1) % 24
        batch = [Record(_event(b, n + k), b"k", "in", 0, n + k) for k in range(size)]
        n += size
        out = e.process(batch)
        for a in out.alerts:
            alert_bytes(a)
        for c in out.commands:
            command_bytes(c)
        for d in out.dead_letters:
            assert d.reason in REASONS and d.detail
    e.tick()
    if mode & 4:
        e.finish()
    s = e.stats
    assert s.consumed - base[0] == n, "a record was not counted as consumed"
    assert (s.processed - base[1]) + (s.dead_lettered - base[2]) == n, "a record was neither processed nor dead-lettered"
    for m in e.models.values():
        for sums in m.windows._open.values():
            assert np.isfinite(sums.total).all() and np.isfinite(sums.total_sq).all()


# ----------------------------------------------------------------- subscriber
def subscriber(data: bytes) -> None:
    from stream.act import sign, verify
    from stream.subscriber import BreakerBook

    key = b"fuzz-key"
    book = BreakerBook(clock=lambda: END / 1000, signing_key=key)
    open_book = BreakerBook(clock=lambda: END / 1000)
    for value in data.split(b"\n"):
        outcome, cmd = book.receive(value, {"fraud"} if len(value) % 2 else None)
        assert outcome in ("applied", "duplicate", "stale", "expired", "rejected", "invalid", "other model")
        if outcome == "applied":
            assert cmd is not None and verify(cmd, key), "applied a command that its signature does not vouch for"
        open_book.receive(value)
        book.is_open("fraud")
        open_book.is_open("fraud")
        if cmd is not None:  # a command that parsed signs, and then verifies
            assert verify(sign(cmd, key), key)


# ----------------------------------------------------------------- state
@cache
def _small_state() -> bytes:
    from stream.state import dumps

    e = Engine(_config())
    raw = [orjson.dumps({"event_id": f"s{i}", "model": "fraud", "ts": END - 7200_000 + i * 1000,
                         "segment": {"country": "US", "channel": "web"}, "prediction": (i % 10) / 10,
                         "features": {"amount": i, "tier": "gold", "f00": 0.5}}) for i in range(3000)]
    e.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw)])
    return dumps(e)


def state(data: bytes) -> None:
    from stream.framing import StateError, decompress, from_chunks
    from stream.state import from_records, loads

    real = _small_state()
    b = _Bytes(data)
    mode = b.int(1)
    if mode % 4 == 0:
        blob = data
    else:  # the real snapshot, with the fuzzer's bytes written into it at the places it picks
        blob = bytearray(real)
        while b.at < len(data):
            at = b.int(3) % len(blob)
            piece = b.raw()
            blob[at:at + len(piece)] = piece
        blob = bytes(blob)
    cfg = _config()
    restored = None
    for attempt in (lambda: loads(cfg, blob), lambda: from_records(cfg, {"meta": blob}),
                    lambda: from_records(cfg, {"meta": real, "fraud/c/0": blob})):
        try:
            restored = attempt()
        except StateError:
            continue
    for attempt2 in (lambda: decompress(blob), lambda: from_chunks({0: blob, 1: blob})):
        with contextlib.suppress(StateError):
            attempt2()
    if restored is not None:  # what restores must also run
        raw = [orjson.dumps({"event_id": f"n{i}", "model": "fraud", "ts": END + i * 60_000,
                             "segment": {"country": "US", "channel": "web"}, "prediction": 0.5,
                             "features": {"amount": 3, "tier": "gold", "f00": 0.1}}) for i in range(50)]
        restored.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw)])
        restored.finish()


TARGETS: dict[str, Callable[[bytes], None]] = {"decode": decode, "engine": engine, "subscriber": subscriber,
                                                "state": state}
