"""Synthetic prediction events with strong daily and weekly seasonality, and an optional injected drift.

Used by the demo, the tests and the benchmarks. Deterministic for a seed.

>>> events = list(simulate(Scenario(weeks=1, segments=({"country": "US"},), rate=5.0), seed=1))
>>> len(events) > 500, sorted(events[0])[:4]
(True, ['event_id', 'features', 'model', 'model_version'])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import holidays
import numpy as np
import orjson

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS


@dataclass(frozen=True)
class Scenario:
    """What to generate. Drift shifts one segment's predictions from ``drift_start`` (ms) on."""

    model: str = "fraud"
    weeks: int = 8
    end_ms: int | None = None  # default: the current hour, so the stream ends "now"
    segments: tuple[dict[str, str], ...] = field(
        default_factory=lambda: (
            {"country": "US", "channel": "web"},
            {"country": "US", "channel": "app"},
            {"country": "DE", "channel": "web"},
            {"country": "BR", "channel": "app"},
        )
    )
    rate: float = 60.0  # mean events per hour per segment
    drift_segment: int | None = None
    drift_start_ms: int | None = None
    drift_shift: float = 0.25
    timezone_offset_h: int = 0
    holidays: str | None = "US"


def _profile(local_hour: np.ndarray, weekend: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Volume multiplier and Beta(a, b) of the prediction, by local hour and day type."""
    day = (local_hour >= 8) & (local_hour < 20)
    volume = np.where(day, 1.6, 0.45) * np.where(weekend, 0.6, 1.0)
    # Nights and weekends look very different from weekday office hours.
    a = np.where(weekend, 4.0, np.where(day, 2.0, 6.0))
    b = np.where(weekend, 4.0, np.where(day, 6.0, 2.5))
    return volume, a, b


def simulate(sc: Scenario, seed: int = 0) -> Iterator[dict[str, object]]:
    """Yield events in time order, hour by hour."""
    rng = np.random.default_rng(seed)
    end = sc.end_ms if sc.end_ms is not None else int(datetime.now(UTC).timestamp() * 1000) // HOUR_MS * HOUR_MS
    start = end - sc.weeks * WEEK_MS
    hours = np.arange(start, end, HOUR_MS, dtype=np.int64)
    local = hours + sc.timezone_offset_h * HOUR_MS
    local_hour = (local // HOUR_MS) % 24
    days = local // (24 * HOUR_MS)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    # Public holidays look like Sundays, as they do in real traffic.
    years = range(int(1970 + days.min() // 366), int(1971 + days.max() // 365))
    table = holidays.country_holidays(sc.holidays, years=list(years)) if sc.holidays else {}
    epoch = date(1970, 1, 1)
    holiday = np.array([(epoch + timedelta(days=int(x))) in table for x in days])
    volume, a, b = _profile(local_hour, (weekday >= 5) | holiday)
    counter = 0
    tiers = np.array(["gold", "silver", "bronze"])
    for h, hour_ms in enumerate(hours.tolist()):
        for s, seg in enumerate(sc.segments):
            n = int(rng.poisson(sc.rate * volume[h] * (1.0 + 0.1 * s)))
            if n == 0:
                continue
            pred = rng.beta(a[h], b[h], size=n)
            if sc.drift_segment == s and sc.drift_start_ms is not None and hour_ms >= sc.drift_start_ms:
                pred = np.clip(pred + sc.drift_shift, 0.0, 1.0)
            ts = np.sort(hour_ms + rng.integers(0, HOUR_MS, size=n))
            amount = np.round(rng.lognormal(3.0, 1.0, size=n), 2)
            tier = tiers[rng.integers(0, 3, size=n)]
            for i in range(n):
                counter += 1
                yield {
                    "event_id": f"e-{seed}-{counter}",
                    "model": sc.model,
                    "model_version": "3.1.0",
                    "ts": int(ts[i]),
                    "segment": seg,
                    "prediction": round(float(pred[i]), 4),
                    "features": {"amount": float(amount[i]), "tier": str(tier[i])},
                }


def encode(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)
