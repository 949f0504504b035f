"""Grouping: many segments of one model drifting in the same window become one model-level alert.

Pure logic over per-series notifications of one model window. When at least ``min_segments``
series of a model start firing on the same signal in one window, they become one alert listing the
segments; while that group is open, its members' repeats and resolutions are absorbed, new
drifting segments join it (announced as a repeat of the group alert), and the group resolves when
its last member has. Everything else passes through as it came.

>>> g = SegmentGrouper(min_segments=2, repeat_interval=10)
>>> out = g.apply("m", [Note(1, "prediction", "firing", "new", 1), Note(2, "prediction", "firing", "new", 1)], now=1)
>>> [(e.kind, e.status, e.reason, sorted(n.sid for n in e.notes)) for e in out]
[('group', 'firing', 'new', [1, 2])]
>>> g.apply("m", [Note(1, "prediction", "resolved", "resolved", 1)], now=2)
[]
>>> [(e.kind, e.status) for e in g.apply("m", [Note(2, "prediction", "resolved", "resolved", 1)], now=3)]
[('group', 'resolved')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Note:
    """A per-series notification the lifecycle and dedupe asked for."""

    sid: Any  # the series: its segment key (comparable across partitions)
    signal: str
    status: str
    reason: str
    starts: int
    payload: Any = None  # whatever the engine needs to build the alert


@dataclass
class Emission:
    kind: str  # "single" or "group"
    signal: str
    status: str
    reason: str
    starts: int
    notes: list[Note]
    members: list[Any] = field(default_factory=list)


@dataclass
class _Group:
    members: set[Any]
    starts: int
    last_sent: int
    last: dict[Any, Note]


class SegmentGrouper:
    def __init__(self, min_segments: int, repeat_interval: int):
        self.min_segments = min_segments
        self.repeat_interval = repeat_interval
        self.groups: dict[tuple[str, str], _Group] = {}

    def apply(self, model: str, notes: list[Note], now: int) -> list[Emission]:
        out: list[Emission] = []
        by_signal: dict[str, list[Note]] = {}
        for n in notes:
            by_signal.setdefault(n.signal, []).append(n)
        for signal, group_notes in by_signal.items():
            out += self._signal(model, signal, group_notes, now)
        return out

    def _signal(self, model: str, signal: str, notes: list[Note], now: int) -> list[Emission]:
        key = (model, signal)
        group = self.groups.get(key)
        if group is None:
            new = [n for n in notes if n.status == "firing" and n.reason == "new"]
            if len(new) < self.min_segments:
                return [Emission("single", signal, n.status, n.reason, n.starts, [n]) for n in notes]
            self.groups[key] = _Group({n.sid for n in new}, min(n.starts for n in new), now, {n.sid: n for n in new})
            rest = [Emission("single", signal, n.status, n.reason, n.starts, [n]) for n in notes if n not in new]
            return [Emission("group", signal, "firing", "new", self.groups[key].starts, new, sorted(n.sid for n in new)), *rest]
        grew = False
        for n in notes:
            if n.status == "resolved":
                group.members.discard(n.sid)
                group.last.pop(n.sid, None)
            else:
                grew = grew or n.sid not in group.members
                group.members.add(n.sid)
                group.last[n.sid] = n
        if not group.members:
            del self.groups[key]
            return [Emission("group", signal, "resolved", "resolved", group.starts, notes, [])]
        if grew or now - group.last_sent >= self.repeat_interval:
            group.last_sent = now
            current = [group.last[s] for s in sorted(group.members) if s in group.last]
            if not current:  # restored group: nothing to show until a member reports again
                return []
            return [Emission("group", signal, "firing", "repeat", group.starts, current, sorted(group.members))]
        return []
