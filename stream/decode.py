"""Decode and validate a micro-batch: good events and dead letters come out as two separate lists.

Nothing raises in the loop: every record ends up either as a decoded event or as a dead letter
that carries the reason, a readable detail and the original bytes.

>>> good, bad = decode_batch([Record(b'{"event_id":"a","model":"m","ts":0,"prediction":1}'),
...                           Record(b'{"model":"m"'), Record(b'\\xff\\xfe')], max_bytes=1000)
>>> [e.event_id for e, _ in good], [d.reason for d in bad]
(['a'], ['malformed_json', 'not_utf8'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
) -> tuple[list[tuple[PredictionEvent, Record]], list[DeadLetter]]:
    """Split records into validated events and dead letters."""
    good: list[tuple[PredictionEvent, Record]] = []
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
            good.append((validate(raw), rec))
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
