"""Grouping: many segments of one model drifting in the same window become one model-level alert.

Pure logic over per-series notifications of one model window. When at least ``min_segments``
series of a model start firing on the same signal in one window, they become one alert listing the
segments; while that group is open, its members' repeats and resolutions are absorbed, new
drifting segments join it (announced as a repeat of the group alert), and the group resolves when
its last member has. Everything else passes through as it came.

The fast lane's notes (``early``) come one series at a time, from inside a window: each alerts
alone at once, until the ``min_segments``-th series of the model fires so while the others still
do; that one opens the group with them all (the earlier ones' own alerts resolve on their own, when
they do). A group open absorbs them.

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

from collections.abc import Callable
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
    singles: set[Any] = field(default_factory=set)  # members that alerted alone before the group opened


class SegmentGrouper:
    def __init__(self, min_segments: int, repeat_interval: int):
        self.min_segments = min_segments
        self.repeat_interval = repeat_interval
        self.groups: dict[tuple[str, str], _Group] = {}
        # (model, signal) -> series alerting alone (no group open): their notes, so that a group can
        # open with them when more series start in the same window
        self.singles: dict[tuple[str, str], dict[Any, Note]] = {}

    def firing(self, model: str, signal: str) -> bool:
        """Whether any series of the model has a ``signal`` alert firing (in a group or alone)."""
        group = self.groups.get((model, signal))
        return bool(group is not None and (group.members or group.singles)) or bool(self.singles.get((model, signal)))

    def accept(self, model: str, covers: Callable[[Any], bool]) -> list[Emission]:
        """An operator accepted the drift of the series ``covers`` says as the new normal: their
        alerts resolve as ``accepted`` (a group's once none of its members is left) and are forgotten.
        Only alerts with evidence to show are announced (a group restored from state has none until
        a member reports again)."""
        out: list[Emission] = []
        for (m, signal), group in list(self.groups.items()):
            gone = sorted(s for s in group.members if covers(s)) if m == model else []
            if not gone:
                continue
            notes = [group.last.pop(s) for s in gone if s in group.last]
            out += [Emission("single", signal, "resolved", "accepted", n.starts, [n]) for n in notes
                    if n.sid in group.singles and n.payload is not None]
            group.members.difference_update(gone)
            group.singles.difference_update(gone)
            if not group.members:
                del self.groups[(m, signal)]
                if notes:
                    out.append(Emission("group", signal, "resolved", "accepted", group.starts, notes, []))
        for (m, signal), alone in self.singles.items():
            for sid in [s for s in alone if covers(s)] if m == model else []:
                n = alone.pop(sid)
                if n.payload is not None:
                    out.append(Emission("single", signal, "resolved", "accepted", n.starts, [n]))
        return out

    def early(self, model: str, notes: list[Note], now: int) -> list[Emission]:
        """Fast-lane notes (see the module's docstring): one series each, in the order they came."""
        out: list[Emission] = []
        for n in notes:
            out += self._signal(model, n.signal, [n], now, early=True)
        return out

    def apply(self, model: str, notes: list[Note], now: int) -> list[Emission]:
        out: list[Emission] = []
        by_signal: dict[str, list[Note]] = {}
        for n in notes:
            by_signal.setdefault(n.signal, []).append(n)
        for signal, group_notes in by_signal.items():
            out += self._signal(model, signal, group_notes, now)
        return out

    def _signal(self, model: str, signal: str, notes: list[Note], now: int, early: bool = False) -> list[Emission]:
        key = (model, signal)
        group = self.groups.get(key)
        alone = self.singles.setdefault(key, {})
        for n in notes:
            if n.status == "resolved":
                alone.pop(n.sid, None)
        if group is None:
            new = [n for n in notes if n.status == "firing" and n.reason == "new"]
            fresh = {n.sid for n in new}
            # Series alerting alone that started in the same window count too (the fast lane's come
            # one at a time).
            starts = min((n.starts for n in new), default=0)
            prior = {sid: x for sid, x in alone.items() if x.starts == starts and sid not in fresh}
            if not new or len(new) + len(prior) < self.min_segments:
                for n in new:
                    alone[n.sid] = n
                return [Emission("single", signal, n.status, n.reason, n.starts, [n]) for n in notes]
            for sid in prior:
                del alone[sid]
            members = {**prior, **{n.sid: n for n in new}}
            self.groups[key] = _Group(set(members), min(x.starts for x in members.values()), now, dict(members),
                                      set(prior))
            shown = [x for x in members.values() if x.reason != "restored"]  # (a restored one has no evidence)
            rest = [Emission("single", signal, n.status, n.reason, n.starts, [n]) for n in notes if n not in new]
            return [Emission("group", signal, "firing", "new", self.groups[key].starts, shown, sorted(members)), *rest]
        if early and all(n.status == "firing" for n in notes):  # absorbed: the group alert stands for them
            for n in notes:
                group.members.add(n.sid)
                group.last[n.sid] = n
            return []
        grew = False
        out: list[Emission] = []
        for n in notes:
            if n.status == "resolved":
                group.members.discard(n.sid)
                group.last.pop(n.sid, None)
                if n.sid in group.singles:  # its own alert, from before the group: resolved as well
                    group.singles.discard(n.sid)
                    out.append(Emission("single", signal, n.status, n.reason, n.starts, [n]))
            else:
                grew = grew or n.sid not in group.members
                group.members.add(n.sid)
                group.last[n.sid] = n
        if not group.members:
            del self.groups[key]
            return [*out, Emission("group", signal, "resolved", "resolved", group.starts, notes, [])]
        if grew or now - group.last_sent >= self.repeat_interval:
            group.last_sent = now
            current = [group.last[s] for s in sorted(group.members) if s in group.last]
            if not current:  # restored group: nothing to show until a member reports again
                return out
            return [*out, Emission("group", signal, "firing", "repeat", group.starts, current, sorted(group.members))]
        return out
