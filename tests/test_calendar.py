"""Calendar slots in the model's timezone, through daylight-saving changes and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime

from stream.calendar import Calendar

HOUR = 3_600_000


def ms(y: int, mo: int, d: int, h: int) -> int:
    return int(datetime(y, mo, d, h, tzinfo=UTC).timestamp() * 1000)


def test_spring_forward_day_has_23_local_hours() -> None:
    cal = Calendar("America/New_York", None)
    # 2026-03-08: clocks jump from 02:00 to 03:00 local (07:00 UTC).
    start = ms(2026, 3, 8, 5)  # 00:00 EST
    hours = [cal.slot(start + i * HOUR).chain[0] for i in range(23)]
    assert [k[2] for k in hours[:4]] == [0, 1, 3, 4]
    assert all(k[1] == 6 for k in hours)  # all on Sunday: the local day has 23 hours
    assert cal.slot(start + 23 * HOUR).chain[0] == ("how", 0, 0)  # Monday 00:00


def test_fall_back_day_has_25_local_hours() -> None:
    cal = Calendar("America/New_York", None)
    start = ms(2026, 11, 1, 4)  # 00:00 EDT on Sunday 2026-11-01
    hours = [cal.slot(start + i * HOUR).chain[0][2] for i in range(25)]
    assert hours[:4] == [0, 1, 1, 2]  # 01:00 happens twice
    assert cal.slot(start + 25 * HOUR).chain[0] == ("how", 0, 0)


def test_same_utc_hour_is_a_different_slot_in_another_timezone() -> None:
    t = ms(2026, 11, 27, 23)  # Friday 23:00 UTC
    assert Calendar("UTC", None).slot(t).chain[0] == ("how", 4, 23)
    assert Calendar("Asia/Tokyo", None).slot(t).chain[0] == ("how", 5, 8)  # Saturday 08:00 in Tokyo


def test_holiday_backs_off_to_sunday_and_is_stored_apart() -> None:
    cal = Calendar("UTC", "US")
    s = cal.slot(ms(2026, 12, 25, 10))
    assert s.chain == (("holiday", "Christmas Day", 10), ("holiday", 10), ("how", 6, 10))
    assert s.store == (("holiday", "Christmas Day", 10), ("holiday", 10))
    assert "Christmas" in s.label


def test_no_calendar_mode_puts_every_window_in_one_slot() -> None:
    cal = Calendar("UTC", "US", weekly=False)
    assert cal.slot(ms(2026, 12, 25, 10)).chain == cal.slot(ms(2026, 12, 26, 3)).chain == (("all",),)


def test_custom_dates_and_no_country() -> None:
    cal = Calendar("UTC", "none", custom_dates={date(2026, 6, 1): "Launch day"})
    assert cal.slot(ms(2026, 6, 1, 12)).chain[0] == ("holiday", "Launch day", 12)
    assert cal.slot(ms(2026, 12, 25, 12)).chain[0] == ("how", 4, 12)


def test_config_holiday_dates_reach_the_engine_calendar() -> None:
    from stream.config import Config, ModelConfig
    from stream.engine import Engine

    cfg = Config(models={"shop": ModelConfig(timezone="Europe/Berlin", holidays="DE", holiday_dates={"2026-06-01": "Sale day"})})
    cal = Engine(cfg).models["shop"].calendar
    assert cal.slot(ms(2026, 6, 1, 10)).label.startswith("Sale day 12:00")  # 10:00 UTC is 12:00 in Berlin
    assert cal.slot(ms(2026, 10, 3, 10)).chain[0][1] == "German Unity Day"


def test_days_next_to_a_holiday_are_bridge_days_of_their_own() -> None:
    cal = Calendar("America/New_York", "US")
    friday = cal.slot(ms(2026, 11, 27, 18))  # the Friday after Thanksgiving, 13:00 in New York
    assert friday.chain == (("bridge", "day after Thanksgiving Day", 13), ("how", 4, 13), ("daytype", "weekday", 13))
    assert friday.store == (("bridge", "day after Thanksgiving Day", 13),)  # never into Fridays' history
    assert friday.alternative == (("how", 6, 13), ("daytype", "weekend", 13))  # or like a day off
    assert "day after Thanksgiving Day" in friday.label
    assert cal.bridge(date(2028, 7, 3)) == "day before Independence Day"  # a Monday before a Tuesday holiday
    # Next to a holiday but not joining it to a weekend: ordinary days (Christmas Eve is a
    # holiday_dates entry for those who keep it).
    assert cal.bridge(date(2026, 12, 24)) is None and cal.bridge(date(2026, 11, 25)) is None
    assert cal.bridge(date(2026, 12, 29)) == "between Christmas Day and New Year's Day, weekday"
    assert cal.bridge(date(2026, 12, 27)) == "between Christmas Day and New Year's Day, weekend"
    assert cal.bridge(date(2026, 11, 28)) is None and cal.bridge(date(2026, 11, 26)) is None  # a Saturday; the holiday
    off = Calendar("America/New_York", "US", bridge_days=0)
    assert off.slot(ms(2026, 11, 27, 18)).chain[0] == ("how", 4, 13) and off.bridge(date(2026, 12, 29)) is None
