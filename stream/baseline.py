"""Per-series window history and the choice of a same-slot baseline.

Each closed window is kept under its calendar slot keys (bounded deques) and in the last-24-windows
list. The baseline of a new window is the last K usable windows of its preferred slot, backing off
along the slot's chain when the slot has fewer than ``min_windows``. Windows that breached are not
used as baseline for ``adapt_after`` (so a drift is not learned as normal at once; after that the
new regime becomes the baseline and the alert can resolve).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .calendar import Slot, SlotKey


@dataclass(slots=True)
class WindowRecord:
    start: int
    count: int
    hist: npt.NDArray[np.int32] | None
    total: float = 0.0
    total_sq: float = 0.0
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    flagged: bool = False
    features: dict[str, npt.NDArray[np.int32]] | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    key: SlotKey
    records: list[WindowRecord]
    preferred: bool


class SeriesHistory:
    """Closed windows of one series (model x segment), by calendar slot."""

    __slots__ = ("slots", "recent", "keep")

    def __init__(self, keep: int, recent: int = 24):
        self.keep = keep
        self.slots: dict[SlotKey, deque[WindowRecord]] = {}
        self.recent: deque[WindowRecord] = deque(maxlen=recent)

    def add(self, slot: Slot, record: WindowRecord) -> None:
        for key in slot.store:
            dq = self.slots.get(key)
            if dq is None:
                dq = self.slots[key] = deque(maxlen=self.keep)
            dq.append(record)
        self.recent.append(record)

    def same_slot(self, slot: Slot) -> list[WindowRecord]:
        return list(self.slots.get(slot.chain[0], ()))

    def baseline(
        self,
        chain: tuple[SlotKey, ...],
        now: int,
        k: int,
        min_windows: int,
        adapt_after: int,
        usable: Callable[[WindowRecord], bool],
        min_named_holiday: int | None = None,
    ) -> Baseline | None:
        """The last ``k`` usable windows of the first slot in the chain that has enough of them.

        Enough is ``min_windows``, or ``min_named_holiday`` for one named holiday (a holiday comes
        once a year: two past Christmases are worth more than eight Sundays).
        """
        for i, key in enumerate(chain):
            need = min_named_holiday if (min_named_holiday and key[0] == "holiday" and len(key) == 3) else min_windows
            source = self.slots.get(key, ())
            picked = [
                r for r in source if usable(r) and (not r.flagged or now - r.start >= adapt_after)
            ][-k:]
            if len(picked) >= need:
                return Baseline(key, picked, preferred=i == 0)
        return None
