"""Window boundaries on the model's local grid, through daylight-saving changes in several zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from stream.grid import Grid

H = 3_600_000
M = 60_000
# Around the 2026 changes: New York (1 h, at 02:00), Lord Howe (30 min), and a zone without DST
# offset by 5 h 30 min.
CHANGES = [("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
           ("Australia/Lord_Howe", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),
           ("Asia/Kolkata", "2026-06-01"), ("Europe/Berlin", "2026-03-29")]


def _instants(day: str) -> np.ndarray:
    t0 = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000) - 2 * 86_400_000
    return np.arange(t0, t0 + 4 * 86_400_000, 7 * M, dtype=np.int64)


@pytest.mark.parametrize("zone,day", CHANGES)
@pytest.mark.parametrize("length", [30 * M, H, 2 * H, 6 * H, 24 * H])
def test_every_instant_lies_in_one_window_that_starts_on_the_local_grid(zone: str, day: str, length: int) -> None:
    g, tz = Grid(length, zone), ZoneInfo(zone)
    ts = _instants(day)
    starts = g.starts(ts)
    assert (starts == np.array([g.start(int(t)) for t in ts])).all()  # vectorised = one by one
    assert (np.diff(starts) >= 0).all()
    ends = g.ends(starts)
    assert ((starts <= ts) & (ts < ends)).all()
    for ws in np.unique(starts).tolist():
        local = datetime.fromtimestamp(ws / 1000, UTC).astimezone(tz)
        assert (local.hour * 60 + local.minute) * M % length == 0, (zone, local)
        assert g.start(g.end(ws)) == g.end(ws)  # windows tile time: each ends where the next starts
        # an hour shorter or longer across a change, or longer by the skipped wall-clock boundary
        # where the change jumps over one (02:00 on Lord Howe's 30 min spring-forward)
        assert length - H <= g.end(ws) - ws <= length + max(H, length)


def test_a_6h_window_covers_the_same_local_hours_in_winter_and_in_summer() -> None:
    g, tz = Grid(6 * H, "America/New_York"), ZoneInfo("America/New_York")
    for day in ("2026-01-15", "2026-07-15"):
        t = int(datetime.fromisoformat(f"{day}T15:00:00").replace(tzinfo=tz).timestamp() * 1000)
        ws = g.start(t)
        assert datetime.fromtimestamp(ws / 1000, UTC).astimezone(tz).hour == 12
        assert g.end(ws) - ws == 6 * H


def test_the_day_of_a_change_is_a_day_of_23_or_25_hours() -> None:
    g, tz = Grid(24 * H, "America/New_York"), ZoneInfo("America/New_York")
    spring = int(datetime(2026, 3, 8, 12, tzinfo=tz).timestamp() * 1000)
    fall = int(datetime(2026, 11, 1, 12, tzinfo=tz).timestamp() * 1000)
    assert g.end(g.start(spring)) - g.start(spring) == 23 * H
    assert g.end(g.start(fall)) - g.start(fall) == 25 * H


def test_utc_and_sub_quarter_windows_keep_the_epoch_grid() -> None:
    ts = np.array([1_772_953_200_123, 1_772_999_999_999], dtype=np.int64)
    assert (Grid(6 * H, "UTC").starts(ts) == ts - ts % (6 * H)).all()
    assert (Grid(5 * M, "Asia/Kathmandu").starts(ts) == ts - ts % (5 * M)).all()
