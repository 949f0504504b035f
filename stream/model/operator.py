"""Operators' commands to driftline itself (``driftline accept``, ``driftline silence``): which hold.

The model task asks this book three questions: whether an operation may be applied at all (it is
signed, when a key is configured, and newer than every operation applied for its model, so a
re-published old one is refused: it says who, and the order says when); whether a model's alerts
are silenced at a window's end; and whether a series' note belongs to an alert an operator has
accepted (it started before the accept: its series is being rebased, what it still says about the
old normal is not news). Pure: the operations carry their time.

>>> from stream.contract import Operation
>>> book = OperatorBook()
>>> op = Operation(command_id="o-1", model="fraud", action="silence", duration_ms=7_200_000, issued_at=1_000)
>>> book.admit(op, None), book.silenced_until("fraud", 5_000)
(None, 7201000)
>>> book.admit(op, None)
'not newer than the last operation applied for fraud'
>>> book.silenced_until("fraud", 7_201_000) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..act import verify
from ..contract import Operation
from ..series.tables import segment_key

#: Accepts remembered per model (each rebased its series; notes from before it are dropped).
KEEP_ACCEPTS = 8
#: Operations shown on /alerts.
KEEP_SHOWN = 50


@dataclass
class Accept:
    at: int  # when it was issued (epoch ms)
    keys: frozenset[str] | None  # the segment keys it accepted (None: every segment)

    def covers(self, sid: str) -> bool:
        return self.keys is None or sid in self.keys


@dataclass
class OperatorBook:
    last: dict[str, int] = field(default_factory=dict)  # model -> issued_at of the last operation applied
    silences: dict[str, int] = field(default_factory=dict)  # model -> silenced until (epoch ms)
    accepts: dict[str, list[Accept]] = field(default_factory=dict)
    shown: list[Operation] = field(default_factory=list)  # the latest applied, for /alerts

    def admit(self, op: Operation, key: bytes | None) -> str | None:
        """Why ``op`` is refused (None: apply it, and it is recorded as applied)."""
        if key is not None and not verify(op, key):
            return "unsigned or forged (a signing key is configured)"
        if op.issued_at <= self.last.get(op.model, -1):
            return f"not newer than the last operation applied for {op.model}"
        self.last[op.model] = op.issued_at
        if op.action == "silence":
            if op.duration_ms:
                self.silences[op.model] = op.issued_at + op.duration_ms
            else:
                self.silences.pop(op.model, None)
        else:
            keys = frozenset(segment_key(s) for s in op.segments) if op.segments else None
            self.accepts[op.model] = [*self.accepts.get(op.model, []), Accept(op.issued_at, keys)][-KEEP_ACCEPTS:]
        self.shown = [*self.shown, op][-KEEP_SHOWN:]
        return None

    def silenced_until(self, model: str, now: int) -> int | None:
        until = self.silences.get(model)
        if until is None or now >= until:
            return None
        return until

    def accepted(self, model: str, sid: str, starts: int) -> bool:
        """Whether an alert of series ``sid`` that started at ``starts`` was accepted as normal."""
        return any(a.covers(sid) and starts < a.at for a in self.accepts.get(model, ()))

    def covers(self, model: str, sid: str) -> bool:
        """Whether the model's latest accept covers series ``sid``."""
        xs = self.accepts.get(model, [])
        return bool(xs) and xs[-1].covers(sid)

    def snapshot(self) -> dict[str, Any]:
        return {"last": sorted(self.last.items()), "silences": sorted(self.silences.items()),
                "accepts": [[m, a.at, None if a.keys is None else sorted(a.keys)] for m, xs in self.accepts.items() for a in xs],
                "shown": [op.model_dump(mode="json") for op in self.shown]}

    def restore(self, d: dict[str, Any]) -> None:
        self.last = {str(m): int(t) for m, t in d.get("last", [])}
        self.silences = {str(m): int(t) for m, t in d.get("silences", [])}
        self.accepts = {}
        for m, at, keys in d.get("accepts", []):
            self.accepts.setdefault(str(m), []).append(Accept(int(at), None if keys is None else frozenset(keys)))
        self.shown = [Operation.model_validate(x) for x in d.get("shown", [])]
