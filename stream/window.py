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

from .grid import Grid


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

    @property
    def last(self) -> int | None:
        """The watermark as of the last ``value`` (windows ending by it are closed)."""
        return self._last

    def flush(self) -> None:
        """End of input: let every window close."""
        self._last = np.iinfo(np.int64).max


def stray_limit(ts: npt.NDArray[np.int64], gap: int, share: float = 0.01) -> int | None:
    """Without a clock, the latest believable event time of a batch (None: every one is).

    ``ts`` in batch (stream) order. Sorted, the bulk runs from the median up to the first gap of more
    than ``gap`` beyond which lie only a few events (at most ``share`` of the batch, or one): those are
    strays (a producer's clock years ahead), which would move the watermark past everything that
    follows, so long as the bulk goes on after them in the stream. Events beyond a gap that come
    after all of the bulk are the data resuming after an outage, and are believed; so are many.

    >>> h = 3_600_000
    >>> ts = np.array([0, h, 1000 * h, 2 * h, 3 * h])
    >>> stray_limit(ts, gap=24 * h) == 3 * h, stray_limit(ts[[0, 1, 3, 4]], gap=24 * h)
    (True, None)
    >>> stray_limit(np.array([0, h, 2 * h, 3 * h, 900 * h]), gap=24 * h) is None  # the data resumes
    True
    """
    n = len(ts)
    if n < 3:
        return None
    s = np.sort(ts)
    upper = s[n // 2:]
    gaps = np.flatnonzero(np.diff(upper) > gap)
    if not len(gaps):
        return None
    last = n // 2 + gaps  # the last event before each gap
    few = n - 1 - last <= max(1.0, share * n)
    if not few.any():
        return None
    limit = int(s[last[int(np.argmax(few))]])
    beyond = ts > limit
    if np.argmax(beyond) > np.flatnonzero(~beyond)[-1]:  # all of them after the bulk: the data resuming
        return None
    return limit


#: Feature bins of a batch's events: the features' columns in the window sums, and a matrix of bin
#: ids, one row per event and one column per feature given.
Features = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


@dataclass
class WindowSums:
    """One open window of one model: counts, histograms and sums of every series, by store row.

    ``invalid`` counts the series' events refused for their prediction (null, NaN, wrong type, out of
    range); ``lane``, ``crossed``, ``ceil``, ``ready`` and ``seen`` are the fast lane's
    (``series/lane.py``): its log e-value, whether it crossed its threshold in this window, the
    ceiling it tests against (log of each bin's highest believable share, the invalid share last),
    fixed once per series and window (``ready``: 0 not yet, 1 from a baseline, -1 no baseline:
    invalid share only), and the events it has stepped, per bin (invalid last), as counts and decayed
    by age (the alternative it tests for: what the series sent lately).
    """

    count: npt.NDArray[np.int64]  # (rows,)
    hist: npt.NDArray[np.int64]  # (rows, bins)
    total: npt.NDArray[np.float64]
    total_sq: npt.NDArray[np.float64]
    feat: npt.NDArray[np.int64]  # (rows, features, feature bins)
    fseen: npt.NDArray[np.bool_]  # (rows, features): the window has that feature
    invalid: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    lane: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    crossed: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    ceil: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (rows, bins + 1)
    ready: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    seen: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # (rows, bins + 1) the lane stepped
    recent: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))  # (rows, bins + 1) decayed
    # the lane's second statistic, with a long memory (a moderate shift: lane.py), and its counts
    slow: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    slow_recent: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))  # (rows, bins + 1)

    #: Every per-row array, in the order a snapshot lists them.
    FIELDS = ("count", "hist", "total", "total_sq", "feat", "fseen", "invalid", "lane", "crossed", "ceil", "ready", "seen", "recent",
              "slow", "slow_recent")

    def __post_init__(self) -> None:
        n, b = len(self.count), self.hist.shape[1]
        for name, shape, dtype in (("invalid", (n,), np.int64), ("lane", (n,), np.float64), ("crossed", (n,), bool),
                                   ("ceil", (n, b + 1), np.float32), ("ready", (n,), np.int8), ("seen", (n, b + 1), np.int64),
                                   ("recent", (n, b + 1), np.float64), ("slow", (n,), np.float64),
                                   ("slow_recent", (n, b + 1), np.float64)):
            if getattr(self, name).size == 0 and shape != getattr(self, name).shape:  # not given: zeros
                setattr(self, name, np.zeros(shape, dtype))

    @classmethod
    def zeros(cls, rows: int, bins: int, features: int, feature_bins: int) -> WindowSums:
        return cls(np.zeros(rows, np.int64), np.zeros((rows, bins), np.int64), np.zeros(rows), np.zeros(rows),
                   np.zeros((rows, features, feature_bins), np.int64), np.zeros((rows, features), bool))

    def take(self, rows: npt.NDArray[np.int64]) -> WindowSums:
        """The sums of these rows (zeros for rows beyond the ones this window has room for)."""
        n = len(self.count)
        if len(rows) and rows[0] == 0 and rows[-1] == len(rows) - 1 and len(rows) <= n and (np.diff(rows) == 1).all():
            k = len(rows)  # rows 0..k-1 in order: views, not copies (callers only read them)
            return WindowSums(*(getattr(self, name)[:k] for name in self.FIELDS))
        inside = rows < n
        if inside.all():
            return WindowSums(*(getattr(self, name)[rows] for name in self.FIELDS))
        out = WindowSums.zeros(len(rows), self.hist.shape[1], self.feat.shape[1], self.feat.shape[2])
        r = rows[inside]
        for name in self.FIELDS:
            getattr(out, name)[inside] = getattr(self, name)[r]
        return out

    def room(self, need: int) -> None:
        """Rows up to ``need`` (store rows handed out since the window opened)."""
        if need > len(self.count):
            grown = WindowSums.zeros(max(need, len(self.count) * 5 // 4), self.hist.shape[1], self.feat.shape[1], self.feat.shape[2])
            grown.__setitem__(len(self.count), self)
            self.__dict__.update(grown.__dict__)

    def add(self, rows: npt.NDArray[np.int64], bins: npt.NDArray[np.int64], values: npt.NDArray[np.float64] | None,
            features: Features | None) -> None:
        """Add events: one bincount per sum (one for all features) over the distinct rows they touch."""
        self.room(int(rows.max()) + 1)
        urows, inv = np.unique(rows, return_inverse=True)
        inv = inv.reshape(-1)
        u, b = len(urows), self.hist.shape[1]
        self.count[urows] += np.bincount(inv, minlength=u)
        self.hist[urows] += np.bincount(inv * b + bins, minlength=u * b).reshape(u, b)
        if values is not None:
            self.total[urows] += np.bincount(inv, weights=values, minlength=u)
            self.total_sq[urows] += np.bincount(inv, weights=values * values, minlength=u)
        if features is None or len(features[0]) == 0:
            return
        cols, fbins = features
        k, fb = len(cols), self.feat.shape[2]
        flat = (inv[:, None] * k + np.arange(k)) * fb + fbins
        c = np.bincount(flat.ravel(), minlength=u * k * fb).reshape(u, k, fb)
        if k == self.feat.shape[1] and (cols == np.arange(k)).all():
            at: slice | npt.NDArray[np.int64] = urows
            if urows[-1] - urows[0] == u - 1:  # distinct and sorted: a run of rows, a view not a gather
                at = slice(int(urows[0]), int(urows[0]) + u)
            self.feat[at] += c
            self.fseen[at] = True
        else:
            self.feat[urows[:, None], cols[None, :]] += c
            self.fseen[urows[:, None], cols[None, :]] = True

    def fit(self, features: int, feature_bins: int) -> None:
        """Room for more features (or feature bins) than the window was opened with (a new config)."""
        nf, fb = max(features, self.feat.shape[1]), max(feature_bins, self.feat.shape[2])
        feat = np.zeros((len(self.count), nf, fb), np.int64)
        feat[:, : self.feat.shape[1], : self.feat.shape[2]] = self.feat
        fseen = np.zeros((len(self.count), nf), bool)
        fseen[:, : self.fseen.shape[1]] = self.fseen
        self.feat, self.fseen = feat, fseen

    def __setitem__(self, n: int, other: WindowSums) -> None:
        """Copy ``other``'s first ``n`` rows in."""
        for name in self.FIELDS:
            getattr(self, name)[:n] = getattr(other, name)[:n]


class OpenWindows:
    """Open windows of one model: window start -> sums of all its series."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.closed_upto: int | None = None  # every window ending at or before this is closed
        self._open: dict[int, WindowSums] = {}

    def late_mask(self, window_starts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        if self.closed_upto is None:
            return np.zeros(len(window_starts), dtype=bool)
        return self.grid.ends(window_starts) <= self.closed_upto

    def add(
        self,
        window_starts: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        bins: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64] | None,
        features: Features | None,
        shape: tuple[int, int, int, int],
    ) -> None:
        """Events (window start, store row, bin, value, feature bins) into their windows' sums;
        ``shape`` is (rows, bins, features, feature bins) for a window opened now."""
        for ws in np.unique(window_starts).tolist():
            sel = window_starts == ws
            sums = self.sums(ws, shape)
            if sel.all():
                sums.add(rows, bins, values, features)
            else:
                sums.add(rows[sel], bins[sel], None if values is None else values[sel],
                         None if features is None else (features[0], features[1][sel]))

    def sums(self, ws: int, shape: tuple[int, int, int, int]) -> WindowSums:
        """The open window starting at ``ws``, opened now if it is not (``shape`` as for ``add``)."""
        sums = self._open.get(ws)
        if sums is None:
            sums = self._open[ws] = WindowSums.zeros(*shape)
        elif sums.feat.shape[1:] != shape[2:]:
            sums.fit(*shape[2:])
        return sums

    def add_invalid(self, window_starts: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
                    shape: tuple[int, int, int, int]) -> None:
        """Events refused for their prediction, counted for their series' windows."""
        for ws in np.unique(window_starts).tolist():
            sums = self.sums(ws, shape)
            r = rows[window_starts == ws]
            sums.room(int(r.max()) + 1)
            np.add.at(sums.invalid, r, 1)

    def due(self, watermark: int) -> list[int]:
        """Window starts that the watermark closes, oldest first."""
        return sorted(ws for ws in self._open if self.grid.end(ws) <= watermark)

    def pop(self, window_start: int) -> WindowSums | None:
        end = self.grid.end(window_start)
        self.closed_upto = end if self.closed_upto is None else max(self.closed_upto, end)
        return self._open.pop(window_start, None)

    def __len__(self) -> int:
        return len(self._open)
