"""Synthetic prediction events with strong daily and weekly seasonality, holidays, DST and injected drifts.

Used by the demo, the tests and the quality benchmark. Deterministic for a seed. Seasonality lives in
the model's local time (a real timezone, so daylight-saving changes move it in UTC); public holidays
look like Sundays. Drifts:

- ``shift``: the prediction moves by ``size`` standard deviations of its current distribution
  (``shift_abs`` moves it by an absolute amount instead);
- ``gradual``: the same, ramping linearly from 0 to ``size`` over ``ramp_hours``;
- ``volume``: only a fraction ``size`` of events keeps arriving;
- ``category``: the categorical feature ``tier`` gets a new value for a share ``size`` of events;
- ``features``: the latent factor behind the correlated features ``f00..`` moves by ``size``
  standard deviations, and the prediction with it.

>>> events = list(simulate(Scenario(weeks=1, segments=({"country": "US"},), rate=5.0), seed=1))
>>> len(events) > 500, sorted(events[0])[:4]
(True, ['event_id', 'features', 'model', 'model_version'])
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import orjson

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS


@dataclass(frozen=True)
class Drift:
    segment: int
    start_ms: int
    kind: Literal["shift", "gradual", "volume", "category", "features"] = "shift"
    size: float = 1.0
    ramp_hours: int = 336
    shift_abs: float | None = None


def _default_segments() -> tuple[dict[str, str], ...]:
    return (
        {"country": "US", "channel": "web"},
        {"country": "US", "channel": "app"},
        {"country": "DE", "channel": "web"},
        {"country": "BR", "channel": "app"},
    )


@dataclass(frozen=True)
class Scenario:
    """What to generate. The ``drift_*`` fields are a shorthand for one absolute shift."""

    model: str = "fraud"
    weeks: int = 8
    end_ms: int | None = None  # default: the current hour, so the stream ends "now"
    segments: tuple[dict[str, str], ...] = field(default_factory=_default_segments)
    rate: float = 60.0  # mean events per hour per segment
    drift_segment: int | None = None
    drift_start_ms: int | None = None
    drift_shift: float = 0.25
    drifts: tuple[Drift, ...] = ()
    timezone: str = "UTC"
    holidays: str | None = "US"
    day_volume: float = 1.6
    night_volume: float = 0.45
    weekend_volume: float = 0.6
    correlated_features: int = 0
    segment_spread: float = 0.1  # segment i gets (1 + spread * i) times the rate
    # Shadow traffic: every event gets a twin from a challenger version (its own draw from the same
    # distribution), shifted by ``challenger_shift`` on the segments in ``challenger_differs``
    # (all when None) from ``challenger_from_ms`` on.
    challenger: str | None = None
    challenger_shift: float = 0.0
    challenger_differs: tuple[int, ...] | None = None
    challenger_from_ms: int = 0
    days_off: tuple[str, ...] = ()  # local dates (YYYY-MM-DD) that look like days off too (bridge days taken off)
    # A forecast: every event of a segment's hour gets one prediction, the hour's mean plus a normal
    # draw of this standard deviation (a demand forecast, the same number for the whole hour).
    forecast: float | None = None
    # Healthy but autocorrelated traffic (weather, a campaign, a slow afternoon): per segment, an AR(1)
    # disturbance with a memory of ``wobble_hours`` moves the prediction by ``wobble`` of its standard
    # deviation and the volume by ``wobble_volume`` on a log scale. Drawn from a generator of its own,
    # so a scenario without it gives the same events as before.
    wobble: float = 0.0
    wobble_volume: float = 0.0
    wobble_hours: float = 6.0

    def all_drifts(self) -> tuple[Drift, ...]:
        extra: tuple[Drift, ...] = ()
        if self.drift_segment is not None and self.drift_start_ms is not None:
            extra = (Drift(self.drift_segment, self.drift_start_ms, "shift", shift_abs=self.drift_shift),)
        return self.drifts + extra


def _local_calendar(hours: np.ndarray, sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Local hour and day type (True = weekend or holiday) of each UTC hour, in the scenario's zone."""
    tz = ZoneInfo(sc.timezone)
    local = [datetime.fromtimestamp(h / 1000, tz=UTC).astimezone(tz) for h in hours.tolist()]
    years = sorted({t.year for t in local})
    table = holidays.country_holidays(sc.holidays, years=years) if sc.holidays else {}
    hour = np.array([t.hour for t in local])
    extra = {date.fromisoformat(d) for d in sc.days_off}
    off = np.array([t.weekday() >= 5 or t.date() in table or t.date() in extra for t in local])
    return hour, off


def beta_params(local_hour: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) of the prediction: nights and days off look very different from working hours."""
    day = (local_hour >= 8) & (local_hour < 20)
    a = np.where(off, 4.0, np.where(day, 2.0, 6.0))
    b = np.where(off, 4.0, np.where(day, 6.0, 2.5))
    return a, b


def _wobble(hours: int, segments: int, sc: Scenario, seed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The scenario's AR(1) disturbances of prediction and volume, (hours, segments), unit variance."""
    if sc.wobble == 0 and sc.wobble_volume == 0:
        return None, None
    rng = np.random.default_rng([seed, 7919])
    rho = math.exp(-1.0 / sc.wobble_hours)
    eps = rng.normal(size=(2, hours, segments))
    out = np.empty_like(eps)
    out[:, 0] = eps[:, 0]
    for h in range(1, hours):
        out[:, h] = rho * out[:, h - 1] + math.sqrt(1.0 - rho * rho) * eps[:, h]
    return out[0], out[1]


def simulate(sc: Scenario, seed: int = 0) -> Iterator[dict[str, object]]:
    """Yield events hour by hour (in time order within each segment and hour)."""
    rng = np.random.default_rng(seed)
    end = sc.end_ms if sc.end_ms is not None else int(datetime.now(UTC).timestamp() * 1000) // HOUR_MS * HOUR_MS
    start = end - sc.weeks * WEEK_MS
    hours = np.arange(start, end, HOUR_MS, dtype=np.int64)
    local_hour, off = _local_calendar(hours, sc)
    day = (local_hour >= 8) & (local_hour < 20)
    volume = np.where(day, sc.day_volume, sc.night_volume) * np.where(off, sc.weekend_volume, 1.0)
    a, b = beta_params(local_hour, off)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    drifts = {d.segment: d for d in sc.all_drifts()}
    tiers = np.array(["gold", "silver", "bronze", "platinum"])
    n_corr = sc.correlated_features
    counter = 0
    wob_p, wob_v = _wobble(len(hours), len(sc.segments), sc, seed)
    for h, hour_ms in enumerate(hours.tolist()):
        for s, seg in enumerate(sc.segments):
            d = drifts.get(s)
            active = d is not None and hour_ms >= d.start_ms
            lam = sc.rate * volume[h] * (1.0 + sc.segment_spread * s)
            if active and d is not None and d.kind == "volume":
                lam *= d.size
            if wob_v is not None:
                lam *= math.exp(sc.wobble_volume * wob_v[h, s] - sc.wobble_volume**2 / 2)
            n = int(rng.poisson(lam))
            if n == 0:
                continue
            pred = rng.beta(a[h], b[h], size=n)
            if wob_p is not None:
                pred = np.clip(pred + sc.wobble * sd[h] * wob_p[h, s], 0.0, 1.0)
            if sc.forecast is not None:
                pred = np.full(n, a[h] / (a[h] + b[h]) + rng.normal(0.0, sc.forecast))
            latent = rng.normal(0.0, 1.0, size=n)
            tier_p = np.array([0.2, 0.5, 0.3, 0.0])
            if active and d is not None:
                progress = 1.0
                if d.kind == "gradual":
                    progress = min(1.0, (hour_ms - d.start_ms) / (d.ramp_hours * HOUR_MS))
                if d.kind in ("shift", "gradual", "features"):
                    move = d.shift_abs if d.shift_abs is not None else d.size * sd[h]
                    pred = np.clip(pred + progress * move, 0.0, 1.0)
                if d.kind == "features":
                    latent = latent + d.size
                if d.kind == "category":
                    tier_p = np.array([0.2, 0.5, 0.3, 0.0]) * (1 - d.size) + np.array([0, 0, 0, d.size])
            ts = np.sort(hour_ms + rng.integers(0, HOUR_MS, size=n))
            amount = np.round(rng.lognormal(3.0, 1.0, size=n), 2)
            tier = tiers[rng.choice(4, size=n, p=tier_p)]
            corr = latent[:, None] + 0.3 * rng.normal(size=(n, n_corr)) if n_corr else None
            twin = None
            if sc.challenger is not None:
                twin = rng.beta(a[h], b[h], size=n)
                if (sc.challenger_differs is None or s in sc.challenger_differs) and hour_ms >= sc.challenger_from_ms:
                    twin = np.clip(twin + sc.challenger_shift, 0.0, 1.0)
            for i in range(n):
                counter += 1
                features: dict[str, object] = {"amount": float(amount[i]), "tier": str(tier[i])}
                if corr is not None:
                    for j in range(n_corr):
                        features[f"f{j:02d}"] = round(float(corr[i, j]), 4)
                yield {
                    "event_id": f"e-{seed}-{counter}",
                    "model": sc.model,
                    "model_version": "3.1.0",
                    "ts": int(ts[i]),
                    "segment": seg,
                    "prediction": round(float(pred[i]), 4),
                    "features": features,
                }
                if twin is not None:
                    yield {"event_id": f"e-{seed}-{counter}-c", "model": sc.model, "model_version": sc.challenger,
                           "ts": int(ts[i]), "segment": seg, "prediction": round(float(twin[i]), 4),
                           "features": features}


def encode(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)
