"""Calendar context of a window: which past windows it should be compared with.

A window's slot is its local weekday and hour in the model's timezone, or, when the local date is a
public holiday, that holiday at that hour (Christmas with past Christmases). Each slot comes with a
back-off chain, used when the preferred slot has too little history: this holiday -> any holiday
at that hour -> Sunday at that hour; hour of week -> day type (weekday or weekend) x hour.
There is deliberately no "all recent windows" step: on seasonal data, comparing a
Saturday noon with the last 24 hours is what makes other tools alert every weekend, so a window
without calendar-matched history gets no verdict (the warm-up).

>>> cal = Calendar("America/New_York", "US")
>>> s = cal.slot(1795716000000)          # 2026-11-26 18:00 UTC = Thanksgiving 13:00 in New York
>>> s.chain[0], s.label
(('holiday', 'Thanksgiving Day', 13), 'Thanksgiving Day 13:00-14:00 America/New_York (holiday)')
>>> cal.slot(1795716000000 + 2 * 86_400_000).chain   # the Saturday after, same hour
(('how', 5, 13), ('daytype', 'weekend', 13))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SlotKey = tuple[object, ...]
KIND_OF = {"how": "hour_of_week", "holiday": "holiday", "daytype": "day_type_hour", "all": "recent"}


@dataclass(frozen=True)
class Slot:
    """The calendar context of one window: baseline keys in order of preference and a readable label."""

    chain: tuple[SlotKey, ...]
    store: tuple[SlotKey, ...]
    label: str
    local_start: datetime
    # For a holiday: the ordinary day's chain, tried too while the holiday has no history of its own.
    alternative: tuple[SlotKey, ...] = ()


class Calendar:
    """Maps a window start (epoch ms, UTC) to its slot in one model's timezone and holiday calendar."""

    def __init__(
        self,
        timezone: str,
        country: str | None,
        custom_dates: dict[date, str] | None = None,
        weekly: bool = True,
    ):
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone
        self.weekly = weekly
        self._country = country if country and country.lower() != "none" else None
        self._custom = dict(custom_dates or {})
        self._years: dict[int, dict[date, str]] = {}

    def holiday(self, day: date) -> str | None:
        """The holiday name of a local date, or None."""
        if day in self._custom:
            return self._custom[day]
        if self._country is None:
            return None
        table = self._years.get(day.year)
        if table is None:
            table = dict(holidays_lib.country_holidays(self._country, years=day.year).items())
            self._years[day.year] = table
        return table.get(day)

    def slot(self, window_start_ms: int) -> Slot:
        return _slot(self, window_start_ms)

    def label_for_key(self, key: SlotKey) -> str:
        hour = f"{key[-1]:02d}:00 {self.timezone}" if len(key) > 1 else ""
        if key[0] == "how":
            return f"{WEEKDAYS[key[1]]} {hour}"  # type: ignore[call-overload]
        if key[0] == "holiday":
            return f"{key[1]} {hour}" if len(key) == 3 else f"holidays {hour}"
        if key[0] == "daytype":
            return f"{key[1]}s {hour}"
        return "recent windows (no calendar)"


@lru_cache(maxsize=65536)
def _slot(cal: Calendar, window_start_ms: int) -> Slot:
    local = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC).astimezone(cal.tz)
    hour, weekday = local.hour, local.weekday()
    if not cal.weekly:
        return Slot(chain=(("all",),), store=(("all",),), label=f"{local:%A %H:%M} {cal.timezone}", local_start=local)
    name = cal.holiday(local.date())
    end_hour = (hour + 1) % 24
    if name is not None:
        chain: tuple[SlotKey, ...] = (("holiday", name, hour), ("holiday", hour), ("how", 6, hour))
        store: tuple[SlotKey, ...] = chain[:2]  # holidays never leak into Sunday's history
        label = f"{name} {hour:02d}:00-{end_hour:02d}:00 {cal.timezone} (holiday)"
        daytype = "weekend" if weekday >= 5 else "weekday"
        return Slot(chain, store, label, local, alternative=(("how", weekday, hour), ("daytype", daytype, hour)))
    else:
        daytype = "weekend" if weekday >= 5 else "weekday"
        chain = (("how", weekday, hour), ("daytype", daytype, hour))
        store = chain
        label = f"{WEEKDAYS[weekday]} {hour:02d}:00-{end_hour:02d}:00 {cal.timezone}"
    return Slot(chain=chain, store=store, label=label, local_start=local)
