"""Window boundaries in the model's local time, so a calendar slot means the same hours all year.

A window of length ``L`` (dividing a day) starts where the model's wall clock reads a multiple of
``L`` since midnight: 6 h windows start at 00:00, 06:00, 12:00 and 18:00 local time in winter and in
summer. Aligned to UTC instead, they would start an hour later (local) for half the year, their
calendar keys would change at each daylight-saving change, and every baseline would start over twice
a year. Across a change the window that holds it is an hour shorter or longer in UTC; a boundary
whose wall-clock time does not exist (02:00 on the spring-forward night) is skipped, and one whose
wall-clock time happens twice (01:00 on the fall-back night, for 1 h windows) starts two windows.
In zones whose offsets are whole multiples of ``L`` (1 h windows almost everywhere) the grid is the
UTC grid.

>>> H = 3_600_000
>>> g = Grid(6 * H, "America/New_York")
>>> g.start(1_773_000_000_000) == 1_772_985_600_000     # 2026-03-08 20:00 UTC: 16:00 EDT, window from 12:00
True
>>> spring = g.start(1_772_953_200_000)                  # 2026-03-08 07:00 UTC: 03:00 EDT, just after the change
>>> spring, g.end(spring) - spring == 5 * H               # 00:00 EST to 06:00 EDT: five hours
(1772946000000, True)
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

QUARTER = 900_000  # offsets change at quarter-hour instants in every zone of the tz database
_NEAR = 2 * 86_400_000  # no zone changes its offset twice within this


class Grid:
    """Window starts and ends (epoch ms, UTC) on the model's local grid of ``length`` ms."""

    def __init__(self, length: int, timezone: str = "UTC"):
        self.length = length
        self.timezone = timezone
        self._tz = ZoneInfo(timezone)
        # A length that does not divide a day has no local meaning: the UTC grid, as before. Nor do
        # windows of a quarter hour or less need one: every zone's offset is a multiple of 15 min.
        self.local = 86_400_000 % length == 0 and length > QUARTER and timezone not in ("UTC", "Etc/UTC")

    def offset(self, ts: int) -> int:
        """The zone's UTC offset at instant ``ts``, in ms."""
        return _offset(self._tz, ts // QUARTER)

    def start(self, ts: int) -> int:
        """The start of the window holding instant ``ts``."""
        if not self.local:
            return ts - ts % self.length
        off = self.offset(ts)
        wall = ts + off
        floor = wall - wall % self.length
        while True:
            for guess in (floor - off, floor - self.offset(floor - off)):
                if guess <= ts and self.offset(guess) + guess == floor:
                    return guess
            floor -= self.length  # this wall-clock boundary does not exist (the spring-forward gap)
            off = self.offset(floor - off)

    def end(self, ws: int) -> int:
        """The end of the window starting at ``ws``: the next start."""
        if not self.local:
            return ws + self.length
        t = ws + self.length
        nxt = self.start(t)
        while nxt <= ws:  # the window holds a repeated hour (fall back): it is longer
            t += QUARTER
            nxt = self.start(t)
        return nxt

    def starts(self, ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``start`` of every instant, vectorised: one offset for the batch when no change is near."""
        if not self.local or len(ts) == 0:
            return ts - ts % self.length
        lo, hi = int(ts.min()), int(ts.max())
        off = self.offset(hi)
        if hi - lo < _NEAR and self.offset(lo - self.length) == off:
            wall = ts + off
            return wall - wall % self.length - off
        uniq, inverse = np.unique(ts // QUARTER, return_inverse=True)
        first = np.fromiter((self.start(int(q) * QUARTER) for q in uniq.tolist()), np.int64, len(uniq))
        out = first[inverse]
        # A window boundary inside a quarter hour (zones offset by a few minutes, none today):
        # such instants take the next start.
        ends = {int(w): self.end(int(w)) for w in np.unique(out).tolist()}
        nxt = np.fromiter((ends[w] for w in out.tolist()), np.int64, len(out))
        return np.where(ts >= nxt, nxt, out)

    def ends(self, ws: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``end`` of every window start, vectorised."""
        if not self.local or len(ws) == 0:
            return ws + self.length
        uniq, inverse = np.unique(ws, return_inverse=True)
        return np.fromiter((self.end(int(w)) for w in uniq.tolist()), np.int64, len(uniq))[inverse]


@lru_cache(maxsize=65536)
def _offset(tz: ZoneInfo, quarter: int) -> int:
    delta = datetime.fromtimestamp(quarter * QUARTER / 1000, tz=UTC).astimezone(tz).utcoffset()
    return int(delta.total_seconds() * 1000) if delta is not None else 0
