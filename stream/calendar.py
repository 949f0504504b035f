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
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

HOUR_MS = 3_600_000
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SlotKey = tuple[object, ...]
KIND_OF = {"how": "hour_of_week", "holiday": "holiday", "bridge": "holiday", "daytype": "day_type_hour", "all": "recent"}
BETWEEN_DAYS = 7  # the days between two holidays at most this far apart are bridge days


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
        window: int = HOUR_MS,
        bridge_days: int = 1,
    ):
        self.tz = ZoneInfo(timezone)
        # The window length: windows shorter than an hour are keyed by their own start (08:15),
        # so that a 15 min slot's history is the same quarter hour of past weeks, not its hour's.
        self.window = window
        self.bridge_days = bridge_days
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

    def bridge(self, day: date) -> str | None:
        """The bridge-day name of a local date that is no holiday itself: a working day that
        joins a holiday to the weekend (at most ``bridge_days`` of them: the Friday after
        Thanksgiving, "day after Thanksgiving Day"), or any day between two holidays at most a week
        apart ("between Christmas Day and New Year's Day, weekday"). None for any other day: the
        Wednesday before Thanksgiving is an ordinary Wednesday, judged with full power.

        >>> cal = Calendar("America/New_York", "US")
        >>> cal.bridge(date(2026, 11, 27)), cal.bridge(date(2026, 11, 25))
        ('day after Thanksgiving Day', None)
        >>> cal.bridge(date(2028, 7, 3))  # a Monday before a Tuesday's Independence Day
        'day before Independence Day'
        """
        if not self.bridge_days or self.holiday(day) is not None:
            return None
        before = next(((n, self.holiday(day + timedelta(n))) for n in range(1, BETWEEN_DAYS + 1)
                       if self.holiday(day + timedelta(n)) is not None), None)
        after = next(((n, self.holiday(day - timedelta(n))) for n in range(1, BETWEEN_DAYS + 1)
                      if self.holiday(day - timedelta(n)) is not None), None)
        if before is not None and after is not None and before[0] + after[0] <= BETWEEN_DAYS + 1 and before[1] != after[1]:
            # one history for the working days of that week and one for its weekend days
            return f"between {after[1]} and {before[1]}, {'weekend' if day.weekday() >= 5 else 'weekday'}"
        if not self._working(day):
            return None
        # The run of working days around ``day``, if it is at most bridge_days long.
        lo, hi = day, day
        while self._working(lo - timedelta(1)) and (hi - lo).days + 1 < self.bridge_days:
            lo -= timedelta(1)
        while self._working(hi + timedelta(1)) and (hi - lo).days + 1 < self.bridge_days:
            hi += timedelta(1)
        prev, nxt = lo - timedelta(1), hi + timedelta(1)
        if self._working(prev) or self._working(nxt):
            return None
        if after is not None and day - timedelta(after[0]) == prev:
            return f"{_nth(after[0])} after {after[1]}"
        if before is not None and day + timedelta(before[0]) == nxt:
            return f"{_nth(before[0])} before {before[1]}"
        return None  # between two weekends: a short week, not a bridge

    def _working(self, day: date) -> bool:
        return day.weekday() < 5 and self.holiday(day) is None

    def slot(self, window_start_ms: int) -> Slot:
        return _slot(self, window_start_ms)

    def label_for_key(self, key: SlotKey) -> str:
        at = key[-1]
        hour = (f"{at} {self.timezone}" if isinstance(at, str) else f"{at:02d}:00 {self.timezone}") if len(key) > 1 else ""
        if key[0] == "how":
            return f"{WEEKDAYS[key[1]]} {hour}"  # type: ignore[call-overload]
        if key[0] == "holiday":
            return f"{key[1]} {hour}" if len(key) == 3 else f"holidays {hour}"
        if key[0] == "bridge":
            return f"{key[1]} {hour}"
        if key[0] == "daytype":
            return f"{key[1]}s {hour}"
        return "recent windows (no calendar)"


@lru_cache(maxsize=65536)
def _slot(cal: Calendar, window_start_ms: int) -> Slot:
    local = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC).astimezone(cal.tz)
    weekday = local.weekday()
    if not cal.weekly:
        return Slot(chain=(("all",),), store=(("all",),), label=f"{local:%A %H:%M} {cal.timezone}", local_start=local)
    # The slot within the day: the local hour, or for sub-hour windows the local start ("08:15").
    hour: object = local.hour if cal.window >= HOUR_MS else f"{local:%H:%M}"
    minutes = local.hour * 60 + local.minute + cal.window // 60_000
    span = f"{local:%H:%M}-{minutes // 60 % 24:02d}:{minutes % 60:02d}"
    name = cal.holiday(local.date())
    daytype = "weekend" if weekday >= 5 else "weekday"
    if name is not None:
        chain: tuple[SlotKey, ...] = (("holiday", name, hour), ("holiday", hour), ("how", 6, hour))
        store: tuple[SlotKey, ...] = chain[:2]  # holidays never leak into Sunday's history
        label = f"{name} {span} {cal.timezone} (holiday)"
        return Slot(chain, store, label, local, alternative=(("how", weekday, hour), ("daytype", daytype, hour)))
    chain = (("how", weekday, hour), ("daytype", daytype, hour))
    bridge = cal.bridge(local.date())
    if bridge is not None:
        # Its own history first; until it has some, it may be like its weekday or like a day off
        # (the window test judges it a drift only if it is like neither), and it never enters
        # the weekday's history.
        own: tuple[SlotKey, ...] = (("bridge", bridge, hour),)
        label = f"{WEEKDAYS[weekday]} {span} {cal.timezone} ({bridge})"
        return Slot(own + chain, own, label, local, alternative=(("how", 6, hour), ("daytype", "weekend", hour)))
    label = f"{WEEKDAYS[weekday]} {span} {cal.timezone}"
    return Slot(chain=chain, store=chain, label=label, local_start=local)


def _nth(n: int) -> str:
    return "day" if n == 1 else f"{n} days"
