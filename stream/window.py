"""Event-time tumbling windows, closed by a watermark.

The watermark is the smallest, over the input partitions that are not idle, of the largest event
time seen on that partition, minus the allowed lateness. Taking the minimum keeps one partition that
is ahead from closing windows that a lagging partition still feeds. A window [start, start+length)
closes when ``start + length <= watermark``; an event whose window has closed is late.

>>> wm = Watermark(lateness=10)
>>> wm.observe(0, 100, now=0.0); wm.observe(1, 70, now=0.0)
>>> wm.value(now=1.0, idle_after=30.0)
60
>>> wm.value(now=100.0, idle_after=30.0)   # every partition idle: hold the watermark
60
>>> wm.assign(2, now=100.0); wm.observe(0, 500, now=100.0)
>>> wm.value(now=101.0, idle_after=30.0)   # partition 2 was assigned but has delivered nothing yet
60
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass
class Watermark:
    lateness: int
    _max: dict[int, int | None] = field(default_factory=dict)
    _seen_at: dict[int, float] = field(default_factory=dict)
    _last: int | None = None

    def assign(self, partition: int, now: float) -> None:
        """A newly assigned partition holds the watermark until it delivers or goes idle."""
        self._max.setdefault(partition, None)
        self._seen_at.setdefault(partition, now)

    def observe(self, partition: int, max_ts: int, now: float) -> None:
        prev = self._max.get(partition)
        self._max[partition] = max_ts if prev is None else max(prev, max_ts)
        self._seen_at[partition] = now

    def caught_up(self, partition: int) -> None:
        """The partition has nothing more to read: it does not hold the watermark back until it delivers."""
        if partition in self._max:
            self._seen_at[partition] = float("-inf")

    def forget(self, partition: int) -> None:
        """A partition was revoked: it no longer holds the watermark back."""
        self._max.pop(partition, None)
        self._seen_at.pop(partition, None)

    def value(self, now: float, idle_after: float) -> int | None:
        """The current watermark (never moves back), or None before any event."""
        active = [m for p, m in self._max.items() if now - self._seen_at[p] < idle_after]
        known = [m for m in active if m is not None]
        if known and len(known) == len(active):
            wm = min(known) - self.lateness
            self._last = wm if self._last is None else max(self._last, wm)
        return self._last

    def flush(self) -> None:
        """End of input: let every window close."""
        self._last = np.iinfo(np.int64).max


@dataclass
class Accumulator:
    """Counts of one series in one open window."""

    count: int
    hist: npt.NDArray[np.int64]
    total: float = 0.0
    total_sq: float = 0.0
    features: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)


class OpenWindows:
    """Open windows of one model: window start -> series id -> accumulator."""

    def __init__(self, length: int):
        self.length = length
        self.closed_upto: int | None = None  # every window ending at or before this is closed
        self._open: dict[int, dict[int, Accumulator]] = {}

    def late_mask(self, window_starts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        if self.closed_upto is None:
            return np.zeros(len(window_starts), dtype=bool)
        return window_starts + self.length <= self.closed_upto

    def add(
        self,
        window_start: int,
        sid: int,
        count: int,
        hist: npt.NDArray[np.int64],
        total: float = 0.0,
        total_sq: float = 0.0,
        features: dict[str, npt.NDArray[np.int64]] | None = None,
    ) -> None:
        per_series = self._open.setdefault(window_start, {})
        acc = per_series.get(sid)
        if acc is None:
            acc = per_series[sid] = Accumulator(count, hist.astype(np.int64, copy=True), total, total_sq)
        else:
            acc.count += count
            acc.hist += hist
            acc.total += total
            acc.total_sq += total_sq
        for name, h in (features or {}).items():
            have = acc.features.get(name)
            if have is None or len(have) != len(h):
                acc.features[name] = h.astype(np.int64, copy=True)
            else:
                have += h

    def due(self, watermark: int) -> list[int]:
        """Window starts that the watermark closes, oldest first."""
        return sorted(ws for ws in self._open if ws + self.length <= watermark)

    def pop(self, window_start: int) -> dict[int, Accumulator]:
        end = window_start + self.length
        self.closed_upto = end if self.closed_upto is None else max(self.closed_upto, end)
        return self._open.pop(window_start, {})

    def __len__(self) -> int:
        return len(self._open)
