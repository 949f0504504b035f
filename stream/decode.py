"""Decode and validate a micro-batch: good events and dead letters come out as two separate lists.

Nothing raises in the loop: every record ends up either as a decoded event or as a dead letter
that carries the reason, a readable detail and the original bytes.

>>> good, bad = decode_batch([Record(b'{"event_id":"a","model":"m","ts":0,"prediction":1}'),
...                           Record(b'{"model":"m"'), Record(b'\\xff\\xfe')], max_bytes=1000)
>>> [e.event_id for e, _ in good], [d.reason for d in bad]
(['a'], ['malformed_json', 'not_utf8'])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import ValidationError

from .contract import PredictionEvent


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, as the Kafka edge (or the replay file reader) hands it in."""

    value: bytes | None
    key: bytes | None = None
    topic: str | None = None
    partition: int = 0
    offset: int = -1


_MAX = 1.7976931348623157e308  # a bound on floats turns JSON overflow (1e400 -> inf) into a validation error
_Finite = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]


class Event(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A validated prediction event (the fields the engine reads).

    It is also the typed decoder's target: msgspec parses and type-checks the common, well-formed
    event in one C call (about 2.5 us for 400 bytes here, against 6.4 us for orjson plus checks in
    Python), and anything it refuses goes to the slower paths, which accept or explain.
    """

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    ts: int
    segment: dict[str, str] = {}
    prediction: _Finite | str | dict[str, _Finite]
    features: dict[str, _Finite | str | bool | None] = {}
    model_version: str | None = None
    label: _Finite | str | bool | None = None


_decode_fast = msgspec.json.Decoder(Event).decode


class _Slow(Exception):
    """The fast path cannot vouch for this record: let pydantic decide and explain."""


def _segment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Slow
    out = {}
    for k, v in value.items():
        if type(v) is str:
            out[k] = v
        elif type(v) is bool:
            out[k] = "true" if v else "false"
        elif type(v) is int:
            out[k] = str(v)
        else:
            raise _Slow
    return out


def _number(v: Any) -> bool:
    t = type(v)
    return t is int or (t is float and math.isfinite(v))


def _fast(raw: bytes) -> Event:
    """Validate the common, well-formed case without pydantic: same rules as ``PredictionEvent``."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Slow from None
    if type(d) is not dict:
        raise _Slow
    event_id, model, ts = d.get("event_id"), d.get("model"), d.get("ts")
    if type(event_id) is not str or not 0 < len(event_id) <= 256:
        raise _Slow
    if type(model) is not str or not 0 < len(model) <= 128:
        raise _Slow
    if type(ts) is int:
        pass
    elif type(ts) is str:
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            raise _Slow from None
        if parsed.tzinfo is None:
            raise _Slow
        ts = int(round(parsed.timestamp() * 1000))
    else:
        raise _Slow
    pred = d.get("prediction")
    if type(pred) is str or _number(pred):
        pass
    elif type(pred) is dict:
        for v in pred.values():
            if not _number(v):
                raise _Slow
    else:
        raise _Slow
    seg = d.get("segment")
    segment = {} if "segment" not in d else _segment(seg)
    features = d.get("features")
    if features is None:
        if "features" in d:
            raise _Slow
        features = {}
    elif type(features) is not dict:
        raise _Slow
    else:
        for v in features.values():
            t = type(v)
            if not (v is None or t is str or t is bool or t is int or (t is float and math.isfinite(v))):
                raise _Slow
    version = d.get("model_version")
    if version is not None and type(version) is not str:
        raise _Slow
    label = d.get("label")
    if label is not None and not (type(label) in (str, bool) or _number(label)):
        raise _Slow
    return Event(event_id=event_id, model=model, ts=ts, segment=segment, prediction=pred,  # type: ignore[arg-type]
                 features=features, model_version=version)


def _from_model(e: PredictionEvent) -> Event:
    return Event(event_id=e.event_id, model=e.model, ts=e.ts, segment=dict(e.segment), prediction=e.prediction,
                 features=dict(e.features), model_version=e.model_version)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be processed, with why; ``value`` is the original bytes, untouched."""

    record: Record
    reason: str
    detail: str


def describe_validation(err: ValidationError) -> str:
    """One line per offending field: the field name and what is wrong with it."""
    by_field: dict[str, list[str]] = {}
    inputs: dict[str, object] = {}
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else "(event)"
        if e["type"] == "missing":
            by_field.setdefault(field, []).append("missing")
            continue
        sub = ".".join(str(p) for p in e["loc"][1:] if not str(p).startswith(("function-", "union[", "str", "float", "int", "bool", "dict[")))
        name = f"{field}.{sub}" if sub else field
        by_field.setdefault(name, []).append(e["msg"].removeprefix("Value error, "))
        inputs[name] = e.get("input")
    parts = []
    for name, msgs in by_field.items():
        if msgs == ["missing"]:
            parts.append(f"{name}: required field missing")
        elif len(msgs) > 1:
            got = type(inputs.get(name)).__name__
            finite = next((m for m in msgs if "NaN" in m), None)
            parts.append(f"{name}: {finite or f'wrong type ({got})'}")
        else:
            parts.append(f"{name}: {msgs[0]}")
    return "; ".join(parts)


def decode_batch(
    records: Iterable[Record], max_bytes: int
) -> tuple[list[tuple[Event, Record]], list[DeadLetter]]:
    """Split records into validated events and dead letters.

    Well-formed events take a fast path (orjson and type checks); anything it cannot vouch for is
    validated by the pydantic model, which either accepts it or says exactly what is wrong.
    """
    good: list[tuple[Event, Record]] = []
    bad: list[DeadLetter] = []
    validate = PredictionEvent.model_validate_json
    for rec in records:
        raw = rec.value
        if raw is None or len(raw) == 0:
            bad.append(DeadLetter(rec, "empty", "message has no value"))
            continue
        if len(raw) > max_bytes:
            bad.append(DeadLetter(rec, "oversized", f"{len(raw)} bytes > limit {max_bytes}"))
            continue
        try:
            good.append((_decode_fast(raw), rec))
            continue
        except (msgspec.MsgspecError, UnicodeDecodeError):
            pass
        try:
            good.append((_fast(raw), rec))
            continue
        except _Slow:
            pass
        try:
            good.append((_from_model(validate(raw)), rec))
        except ValidationError as err:
            first = err.errors()[0]
            if first["type"] == "json_invalid":
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad.append(DeadLetter(rec, "not_utf8", f"not UTF-8: {exc.reason} at byte {exc.start}"))
                    continue
                bad.append(DeadLetter(rec, "malformed_json", f"not valid JSON: {first['msg']}"))
            elif first["type"] == "model_type":
                bad.append(DeadLetter(rec, "invalid_event", "event must be a JSON object"))
            else:
                bad.append(DeadLetter(rec, "invalid_event", describe_validation(err)))
    return good, bad
