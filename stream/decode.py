"""Decode and validate a micro-batch: good events and dead letters come out as two separate lists.

Nothing raises in the loop: every record ends up either as a decoded event or as a dead letter
that carries the reason, a readable detail and the original bytes.

>>> out = decode_batch([Record(b'{"event_id":"a","model":"m","ts":1795716000000,"prediction":1}'),
...                     Record(b'{"model":"m"'), Record(b'\\xff\\xfe')], max_bytes=1000)
>>> [e.event_id for e in out.events], [d.reason for d in out.dead]
(['a'], ['malformed_json', 'not_utf8'])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import msgspec
import orjson
from pydantic import ValidationError

from .contract import MAX_CLASSES, MAX_SEGMENT_KEYS, MAX_TEXT, MAX_TS, MIN_TS, PredictionEvent

if TYPE_CHECKING:
    from .typed import TypedDecoder

class Record(NamedTuple):
    """One consumed message, as the Kafka edge (or the replay file reader) hands it in.

    A named tuple: one is built per consumed message, and a tuple is the cheapest object to build.
    """

    value: bytes | None
    key: bytes | None = None
    topic: str | None = None
    partition: int = 0
    offset: int = -1


_MAX = 1.7976931348623157e308  # a bound on floats turns JSON overflow (1e400 -> inf) into a validation error
_Finite = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]
_Ts = Annotated[int, msgspec.Meta(ge=MIN_TS, lt=MAX_TS)]
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_Segment = Annotated[dict[_Text, _Text], msgspec.Meta(max_length=MAX_SEGMENT_KEYS)]
_Classes = Annotated[dict[_Text, _Finite], msgspec.Meta(max_length=MAX_CLASSES)]


class Event(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A validated prediction event (the fields the engine reads).

    It is also the typed decoder's target: msgspec parses and type-checks the common, well-formed
    event in one C call (about 2.5 us for 400 bytes here, against 6.4 us for orjson plus checks in
    Python), and anything it refuses goes to the slower paths, which accept or explain.
    """

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    ts: _Ts
    segment: _Segment = {}
    prediction: _Finite | _Text | _Classes
    features: dict[str, _Finite | str | bool | None] = {}
    model_version: _Text | None = None
    label: _Finite | str | bool | None = None


_decode_fast = msgspec.json.Decoder(Event).decode


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Prediction = _Finite | _Text | _Classes
_Value = _Finite | str | bool | None
_VALUE = itemgetter(0)  # Record.value


class _Slow(Exception):
    """The fast path cannot vouch for this record: let pydantic decide and explain."""


def _segment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_SEGMENT_KEYS:
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
        if len(k) > MAX_TEXT or len(out[k]) > MAX_TEXT:
            raise _Slow
    return out


def _number(v: Any) -> bool:
    t = type(v)
    return (t is int and -_MAX <= v <= _MAX) or (t is float and math.isfinite(v))


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
        if not MIN_TS <= ts < MAX_TS:
            raise _Slow
    elif type(ts) is str:
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            raise _Slow from None
        if parsed.tzinfo is None:
            raise _Slow
        try:
            ts = int(round(parsed.timestamp() * 1000))
        except (OverflowError, ValueError):
            raise _Slow from None
        if not MIN_TS <= ts < MAX_TS:
            raise _Slow
    else:
        raise _Slow
    pred = d.get("prediction")
    if (type(pred) is str and len(pred) <= MAX_TEXT) or _number(pred):
        pass
    elif type(pred) is dict and len(pred) <= MAX_CLASSES:
        for k, v in pred.items():
            if not _number(v) or len(k) > MAX_TEXT:
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
            if not (v is None or t is str or t is bool or _number(v)):
                raise _Slow
    version = d.get("model_version")
    if version is not None and (type(version) is not str or len(version) > MAX_TEXT):
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


@dataclass(slots=True)
class Decoded:
    """A batch split in two: events (typed, or generic where no schema applies) in batch order,
    with the batch position of each, and dead letters."""

    events: list[Any]
    where: Sequence[int]  # events[i] came from records[where[i]]
    dead: list[DeadLetter]


def decode_batch(records: Sequence[Record], max_bytes: int, typed: TypedDecoder | None = None) -> Decoded:
    """Split records into validated events and dead letters.

    Each record tries, in order: the typed decoder of the configured models (one C call that also
    validates); the generic msgspec decoder; orjson with checks in Python (ISO timestamps, numbers
    as segment values); and the pydantic model, which either accepts or says exactly what is wrong.
    """
    values: list[bytes | None] | None = getattr(records, "values", None)
    if values is None:
        values = list(map(_VALUE, records))
    events: list[Any] = []
    bad: list[DeadLetter] = []
    dropped: list[int] = []  # positions that became dead letters
    fast = typed.decoder() if typed is not None else None
    if fast is None:
        fast = _decode_fast
    try:
        big = max(map(len, values), default=0) > max_bytes  # type: ignore[arg-type]
    except TypeError:  # a record without value
        big = True
    for i, raw in enumerate(values):
        if not big or (raw is not None and 0 < len(raw) <= max_bytes):
            try:
                events.append(fast(raw))  # type: ignore[arg-type]
                continue
            except (msgspec.MsgspecError, UnicodeDecodeError, TypeError):
                pass
        event, dead = _generic(records[i], max_bytes, typed)
        if event is not None:
            events.append(event)
        else:
            assert dead is not None
            bad.append(dead)
            dropped.append(i)
    if not dropped:
        return Decoded(events, range(len(values)), bad)
    gone = set(dropped)
    return Decoded(events, [i for i in range(len(values)) if i not in gone], bad)


def _generic(rec: Record, max_bytes: int, typed: TypedDecoder | None) -> tuple[Any, DeadLetter | None]:
    """The record the typed decoder refused: decode it generically (into its model's shape if it has
    one), or say why it is a dead letter."""
    raw = rec.value
    if raw is None or len(raw) == 0:
        return None, DeadLetter(rec, "empty", "message has no value")
    if len(raw) > max_bytes:
        return None, DeadLetter(rec, "oversized", f"{len(raw)} bytes > limit {max_bytes}")
    event: Event | None = None
    try:
        event = _decode_fast(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        with contextlib.suppress(_Slow):
            event = _fast(raw)
    if event is None:
        try:
            event = _from_model(PredictionEvent.model_validate_json(raw))
        except ValidationError as err:
            return None, _explain(rec, raw, err)
    schema = typed.schemas.get(event.model) if typed is not None else None
    if schema is not None:
        long = next((n for n, k in zip(schema.features, schema.kinds, strict=True) if k != "numeric"
                     and type(v := event.features.get(n)) is str and len(v) > MAX_TEXT), None)
        if long is not None:
            return None, DeadLetter(rec, "invalid_event", f"features.{long}: text longer than {MAX_TEXT} characters")
    return (schema.convert(event) if schema is not None else event), None


def _explain(rec: Record, raw: bytes, err: ValidationError) -> DeadLetter:
    first = err.errors()[0]
    if first["type"] == "json_invalid":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return DeadLetter(rec, "not_utf8", f"not UTF-8: {exc.reason} at byte {exc.start}")
        return DeadLetter(rec, "malformed_json", f"not valid JSON: {first['msg']}")
    if first["type"] == "model_type":
        return DeadLetter(rec, "invalid_event", "event must be a JSON object")
    return DeadLetter(rec, "invalid_event", describe_validation(err))
