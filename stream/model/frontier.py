"""The frontier: which model windows every input partition has passed, so that they can be decided.

Each series task closes a model's window when its own partition's watermark passes it, and after
its reports sends a progress mark: its watermark. A window (model, start) is decided once every
input partition's mark has reached the window's end, with all partitions' reports of it merged
into one; windows are decided in (end, model) order, so the decisions are the same however the
partitions interleave. A partition whose mark has not moved for ``idle_after`` seconds
(processing time; never without a clock) stops holding the frontier back, so a silent partition
cannot hold a model forever (progress counts, not messages: a heartbeat that moves nothing does not
keep a partition from idling); its reports of windows already decided are decided on their own
when they come, and counted as late. A partition that holds due windows back (their model waits
for its shared bin edges) holds the frontier below the first of them, but its watermark still
counts as ``progress``, which is what deciding those edges waits for.

>>> f = Frontier(partitions=2)
>>> f.report(0, WindowReport("m", 0, 10)); f.mark(0, 10)
>>> f.due()  # partition 1 has not passed 10 yet
[]
>>> f.report(1, WindowReport("m", 0, 10)); f.mark(1, 25)
>>> [(r.model, r.start, r.end) for r in f.due()]
[('m', 0, 10)]
"""

from __future__ import annotations

import math
from typing import Any

from ..verdict import WindowReport


def key_of(r: WindowReport, lateness: int) -> tuple[int, str, int, int]:
    """Where a report waits: a window's at its end; a fast-lane report just past its partition's
    watermark at the crossing (the partition's latest event time then, less the allowed lateness),
    so that it is decided once every partition has read as far (seconds later, in live traffic), in
    one order however the partitions interleave, and never after the frontier passed it (the
    frontier trails its partition's watermark)."""
    if r.early is not None:
        return r.early - lateness + 1, r.model, r.start, 1
    return r.end, r.model, r.start, 0


class Frontier:
    def __init__(self, partitions: int, idle_after: float = math.inf, now: float = 0.0, lateness: int = 0):
        self.partitions = partitions
        self.lateness = lateness
        self.idle_after = idle_after
        self.marks: dict[int, int | None] = {p: None for p in range(partitions)}
        self.held: dict[int, int] = {}  # partition -> end of the first window it holds back
        # partition -> when its mark last moved (processing time; a partition not heard from yet
        # counts from when the frontier began)
        self.heard: dict[int, float] = dict.fromkeys(range(partitions), now)
        self.pending: dict[tuple[int, str, int, int], WindowReport] = {}  # ``key_of`` -> merged
        self.decided: int | None = None  # the frontier windows were decided up to
        self.late = 0  # reports of windows decided without them

    def resize(self, partitions: int, now: float = 0.0) -> None:
        """The input topic has more partitions now: they hold the frontier until they report (or idle)."""
        for p in range(self.partitions, partitions):
            self.marks.setdefault(p, None)
            self.heard.setdefault(p, now)
        self.partitions = max(self.partitions, partitions)

    def drop(self, partition: int) -> None:
        """The partition has nothing (to replay, or assigned): it does not hold the frontier back."""
        self.marks.pop(partition, None)
        self.heard.pop(partition, None)
        self.held.pop(partition, None)

    def report(self, partition: int, r: WindowReport) -> None:
        key = key_of(r, self.lateness)
        if self.decided is not None and key[0] <= self.decided:
            self.late += 1  # decided already: on its own, next time
        have = self.pending.get(key)
        if have is None:
            self.pending[key] = r
        else:
            have.merge(r)

    def mark(self, partition: int, watermark: int | None, now: float = 0.0, empty: bool = False,
             held: int | None = None) -> None:
        """A partition's progress. Idleness is judged by progress: a mark that does not move the
        partition's watermark (a heartbeat) does not keep it from idling. An ``empty`` partition (no
        event yet, nothing left to read) holds nothing back, as in a replay."""
        if empty and watermark is None and self.marks.get(partition) is None:
            self.drop(partition)
            return
        prev = self.marks.get(partition)
        if partition not in self.marks:
            self.marks[partition] = None
            self.heard[partition] = now
        if watermark is not None and (prev is None or watermark > prev):
            self.marks[partition] = watermark
            self.heard[partition] = now
        if held is None:
            self.held.pop(partition, None)
        else:
            self.held[partition] = held

    def progress(self, now: float = 0.0) -> int | None:
        """The least watermark of the partitions that are not idle (None while one of them has none)."""
        active = [m for p, m in self.marks.items() if now - self.heard[p] < self.idle_after]
        if not active:
            known = [m for m in self.marks.values() if m is not None]
            return max(known) if known else None
        if any(m is None for m in active):
            return None
        return min(m for m in active if m is not None)

    def value(self, now: float = 0.0) -> int | None:
        """What every partition that is not idle has reported up to: ``progress``, and below the
        first window a partition holds back."""
        frontier = self.progress(now)
        held = [h - 1 for p, h in self.held.items() if p in self.marks and now - self.heard[p] < self.idle_after]
        if frontier is None or not held:
            return frontier
        return min(frontier, *held)

    def due(self, now: float = 0.0) -> list[WindowReport]:
        """The windows that can be decided now, in (end, model) order, each merged, and forgotten."""
        frontier = self.value(now)
        if frontier is not None:
            self.decided = frontier if self.decided is None else max(self.decided, frontier)
        if self.decided is None:
            return []
        keys = sorted(k for k in self.pending if k[0] <= self.decided)
        return [self.pending.pop(k) for k in keys]

    def flush(self) -> list[WindowReport]:
        """End of input (replay): everything pending, in order."""
        keys = sorted(self.pending)
        return [self.pending.pop(k) for k in keys]

    def snapshot(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "marks": [[p, m] for p, m in self.marks.items()],
                "held": [[p, h] for p, h in self.held.items()], "decided": self.decided, "late": self.late}

    def restore(self, d: dict[str, Any], now: float) -> None:
        self.partitions = int(d["partitions"])
        self.marks = {int(p): m for p, m in d["marks"]}
        self.heard = {p: now for p in self.marks}  # idle counts from the restore, not from before it
        self.held = {int(p): int(h) for p, h in d.get("held", [])}
        self.decided = d["decided"]
        self.late = int(d["late"])
