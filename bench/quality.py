"""Quality benchmark: does driftline alert when something changed, and only then?

    python bench/quality.py [--scale 1.0] [--only NAME,...] [--jobs 2] [--out bench/quality.json]

Runs the engine through replay (`stream.replay.replay_lines`) on seeded synthetic scenarios and on the
real series in ../shared/data, next to two baselines on the same events:
  - no-calendar: the same engine and score, compared with the last week of windows whatever their
    weekday or hour (calendar = "none", baseline_windows = 168);
  - adwin-raw: river's ADWIN updated with every raw prediction of each series, one alert per detection.
Reports per scenario: false alerts per 1,000 series-weeks after warm-up, recall, median detection
delay in windows, and alerts per incident. See BENCHMARKS.md for the results.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.config import Config, Defaults, ModelConfig  # noqa: E402
from stream.contract import Alert  # noqa: E402
from stream.replay import replay_lines  # noqa: E402
from stream.simulate import HOUR_MS, WEEK_MS, Drift, Scenario, simulate  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
END = int(datetime(2026, 11, 30, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)  # after Thanksgiving, DST end
WARMUP_WEEKS = 3


@dataclass
class Case:
    """One benchmark input: events, ground truth and how to score it."""

    name: str
    events: Callable[[], Iterator[bytes]]
    models: dict[str, ModelConfig]
    series: list[str]  # series keys "model|segment"
    incidents: dict[str, tuple[int, int]]  # series key -> (start, end) of the change, ms
    start_ms: int
    end_ms: int
    window_ms: int = HOUR_MS
    warmup_weeks: int = WARMUP_WEEKS
    defaults: dict[str, object] = field(default_factory=dict)
    expected_signals: tuple[str, ...] = ("prediction", "volume", "feature")
    notes: dict[str, object] = field(default_factory=dict)


def skey(model: str, segment: dict[str, str]) -> str:
    return model + "|" + ",".join(f"{k}={v}" for k, v in sorted(segment.items()))


# --------------------------------------------------------------------------- synthetic scenarios
def synthetic(name: str, scale: float) -> list[Case]:
    """Each drift scenario runs with two seeds; drifts start on different days and hours."""
    n_seg = max(4, int(16 * scale))
    weeks = 6
    start = END - weeks * WEEK_MS
    segs = tuple({"region": f"r{i:03d}"} for i in range(n_seg))
    flat = {"day_volume": 1.2, "night_volume": 0.8, "weekend_volume": 0.85}  # every window >= 200 events
    cases = []

    def drifted(kind: str, size: float, seed: int, extra: dict[str, object] | None = None, every: int = 2) -> Case:
        drifts = tuple(
            Drift(i, END - 2 * WEEK_MS + (i * 37 + seed * 11) % (10 * 24) * HOUR_MS, kind, size)  # type: ignore[arg-type]
            for i in range(0, n_seg, every)
        )
        sc = Scenario(model="m", weeks=weeks, end_ms=END, segments=segs, rate=300, drifts=drifts,
                      timezone="America/New_York", segment_spread=0.0, **{**flat, **(extra or {})})  # type: ignore[arg-type]
        incidents = {skey("m", segs[d.segment]): (d.start_ms, END) for d in drifts}
        features = [f"f{j:02d}" for j in range(int(extra.get("correlated_features", 0)))] if extra else []  # type: ignore[call-overload]
        models = {"m": ModelConfig(timezone="America/New_York", features=features + ["amount", "tier"])}
        return Case(f"{name}#{seed}", lambda: (orjson.dumps(e) for e in simulate(sc, seed=seed)), models,
                    [skey("m", s) for s in segs], incidents, start, END)

    for seed in (1, 2):
        if name == "shift_0.5sd":
            cases.append(drifted("shift", 0.5, seed))
        elif name == "shift_1sd":
            cases.append(drifted("shift", 1.0, seed))
        elif name == "gradual_2w":
            cases.append(drifted("gradual", 1.0, seed))
        elif name == "volume_drop_80":
            cases.append(drifted("volume", 0.2, seed))
        elif name == "new_category":
            cases.append(drifted("category", 0.3, seed))
        elif name == "correlated_15":
            cases.append(drifted("features", 1.0, seed, {"correlated_features": 15}))
    if name == "no_drift":
        n = max(8, int(100 * scale))
        weeks = 10
        segs_nd = tuple({"region": f"r{i:03d}"} for i in range(n))
        sc = Scenario(model="m", weeks=weeks, end_ms=END, segments=segs_nd, rate=40, timezone="America/New_York",
                      segment_spread=0.02)
        models = {"m": ModelConfig(timezone="America/New_York", features=["amount", "tier"])}
        cases.append(Case("no_drift", lambda: (orjson.dumps(e) for e in simulate(sc, seed=7)), models,
                          [skey("m", s) for s in segs_nd], {}, END - weeks * WEEK_MS, END))
    return cases


# --------------------------------------------------------------------------- real data
def _local_ms(text: str, tz: ZoneInfo) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def _events_from_counts(rows: list[tuple[int, float]], step_ms: int, per_event: float, model: str,
                        seed: int) -> Iterator[bytes]:
    """N events per interval in proportion to the value; predictions from one fixed distribution."""
    rng = np.random.default_rng(seed)
    k = 0
    for t, value in rows:
        n = int(round(value / per_event))
        if n <= 0:
            continue
        ts = np.sort(t + rng.integers(0, step_ms, n))
        pred = rng.beta(2, 5, n)
        for i in range(n):
            k += 1
            yield orjson.dumps({"event_id": f"{model}-{k}", "model": model, "ts": int(ts[i]), "prediction": round(float(pred[i]), 4)})


def nyc_taxi() -> list[Case]:
    tz = ZoneInfo("America/New_York")
    rows, labels = [], []
    with (DATA / "nab" / "nyc_taxi_calendar.csv").open() as fh:
        for r in csv.DictReader(fh):
            rows.append((_local_ms(r["timestamp"], tz), float(r["value"])))
    windows = json.loads((DATA / "nab" / "labels" / "combined_windows.json").read_text())["realKnownCause/nyc_taxi.csv"]
    for a, b in windows:
        labels.append((_local_ms(a[:19], tz), _local_ms(b[:19], tz)))
    names = ["marathon", "thanksgiving", "christmas", "new_year", "blizzard"]
    models = {"taxi": ModelConfig(timezone="America/New_York", holidays="US")}
    series = ["taxi|"]
    start, end = rows[0][0], rows[-1][0] + 1_800_000
    cases = []
    for label_set, keep in (("nab_labels", names), ("calendar_adjusted", ["marathon", "blizzard"])):
        inc = {f"taxi|#{n}": lab for n, lab in zip(names, labels, strict=True) if n in keep}
        cases.append(Case(f"nyc_taxi/{label_set}", lambda: _events_from_counts(rows, 1_800_000, 50.0, "taxi", 3),
                          models, series, inc, start, end, warmup_weeks=8,
                          notes={"labels": {n: [datetime.fromtimestamp(a / 1000, tz).isoformat() for a in lab]
                                            for n, lab in zip(names, labels, strict=True) if n in keep}}))
    return cases


def metro() -> list[Case]:
    tz = ZoneInfo("America/Chicago")
    rows, holiday_days, custom = [], {}, {}
    with (DATA / "metro" / "metro_hourly_calendar.csv").open() as fh:
        for r in csv.DictReader(fh):
            t = _local_ms(r["date_time"], tz)
            rows.append((t, float(r["traffic_volume"])))
            if r["holiday_day"]:
                day = r["date_time"][:10]
                holiday_days[day] = r["holiday_day"]
                if r["holiday_day"] == "State Fair":
                    custom[day] = "State Fair"
    models = {"metro": ModelConfig(timezone="America/Chicago", holidays="US", holiday_dates=custom)}
    return [Case("metro", lambda: _events_from_counts(rows, HOUR_MS, 50.0, "metro", 5), models, ["metro|"], {},
                 rows[0][0], rows[-1][0] + HOUR_MS, warmup_weeks=8, notes={"holidays": holiday_days})]


# --------------------------------------------------------------------------- running and scoring
def run_engine(case: Case, calendar: str) -> list[Alert]:
    defaults = Defaults(**case.defaults)  # type: ignore[arg-type]
    if calendar == "none":
        defaults = defaults.model_copy(update={"calendar": "none", "baseline_windows": 168})
    config = Config(models=case.models, defaults=defaults)
    alerts: list[Alert] = []
    replay_lines(case.events(), config, on_alert=alerts.append)
    return alerts


def run_adwin(case: Case) -> list[tuple[str, int, str]]:
    from river.drift import ADWIN

    detectors: dict[str, ADWIN] = {}
    out = []
    last: dict[str, int] = {}
    for raw in case.events():
        e = orjson.loads(raw)
        key = skey(e["model"], e.get("segment", {}))
        det = detectors.get(key)
        if det is None:
            det = detectors[key] = ADWIN()
        det.update(float(e["prediction"]))
        if det.drift_detected:
            w = e["ts"] - e["ts"] % case.window_ms
            if last.get(key) != w:
                out.append((key, w, "prediction"))
                last[key] = w
    return out


def alert_rows(alerts: list[Alert]) -> list[tuple[str, int, str]]:
    """New firing notifications as (series, window start, signal); a model-level alert counts once per segment."""
    rows = []
    for a in alerts:
        if a.status != "firing" or a.notify_reason != "new":
            continue
        segs = a.segments if a.segments else [a.segment]
        for s in segs:
            rows.append((skey(a.model, s), a.window_start, a.signal))
        if a.segments:
            rows.append(("#group", a.window_start, a.signal))
    return rows


def score(case: Case, rows: list[tuple[str, int, str]]) -> dict[str, object]:
    warm = case.start_ms + case.warmup_weeks * WEEK_MS
    series_incidents: dict[str, list[tuple[str, int, int]]] = {}
    for key, (a, b) in case.incidents.items():
        series = key.split("#")[0] if "#" in key else key
        series_incidents.setdefault(series, []).append((key, a, b))
    def in_incident(series: str, t: int) -> str | None:
        for key, a, b in series_incidents.get(series, []):
            if a <= t + case.window_ms and t <= b:
                return key
        return None
    false, hits = 0, {}
    per_incident: dict[str, int] = {k: 0 for k in case.incidents}
    for series, t, _signal in rows:
        if series == "#group":
            continue
        inc = in_incident(series, t)
        if inc is not None:
            per_incident[inc] += 1
            hits.setdefault(inc, t)
            hits[inc] = min(hits[inc], t)
        elif t >= warm:
            false += 1
    weeks_after = (case.end_ms - warm) / WEEK_MS
    series_weeks = len(case.series) * weeks_after
    for _key, a, b in [x for v in series_incidents.values() for x in v]:
        if len(case.series) > 1 or len(series_incidents) > 0:
            series_weeks -= max(0, (min(b, case.end_ms) - max(a, warm))) / WEEK_MS if len(case.series) > 1 else 0
    delays = [(hits[k] - a) // case.window_ms + 1 for k, (a, _b) in case.incidents.items() if k in hits]
    return {
        "series_weeks": round(series_weeks, 1),
        "false_alerts": false,
        "false_per_1000_series_weeks": round(1000 * false / series_weeks, 2) if series_weeks > 0 else None,
        "incidents": len(case.incidents),
        "recall": round(len(hits) / len(case.incidents), 3) if case.incidents else None,
        "median_delay_windows": statistics.median(delays) if delays else None,
        "alerts_per_incident": round(statistics.mean(per_incident.values()), 2) if per_incident else None,
        "detected": sorted(hits),
    }


def evaluate(case: Case) -> dict[str, object]:
    t0 = time.perf_counter()
    ours = run_engine(case, "weekly")
    t1 = time.perf_counter()
    result: dict[str, object] = {"case": case.name, "seconds": round(t1 - t0, 1)}
    result["driftline"] = score(case, alert_rows(ours))
    result["driftline"]["by_signal"] = dict(sorted({s: sum(1 for r in alert_rows(ours) if r[2] == s and r[0] != "#group") for s in ("prediction", "volume", "feature")}.items()))  # type: ignore[index]
    result["driftline"]["model_level_alerts"] = sum(1 for a in ours if a.segments and a.notify_reason == "new")  # type: ignore[index]
    result["no_calendar"] = score(case, alert_rows(run_engine(case, "none")))
    result["adwin_raw"] = score(case, run_adwin(case))
    if case.name == "metro":
        holidays = case.notes["holidays"]
        tz = ZoneInfo("America/Chicago")
        on_holidays: dict[str, list[str]] = {}
        for a in ours:
            if a.status == "firing" and a.notify_reason == "new":
                day = datetime.fromtimestamp(a.window_start / 1000, tz).date().isoformat()
                if day in holidays:  # type: ignore[operator]
                    on_holidays.setdefault(day[:4], []).append(f"{day} {holidays[day]} {a.signal}")  # type: ignore[index]
        result["metro_holiday_alerts_by_year"] = on_holidays
    if case.name.startswith("nyc_taxi"):
        tz = ZoneInfo("America/New_York")
        result["alerts"] = [f"{datetime.fromtimestamp(a.window_start / 1000, tz):%Y-%m-%d %H:%M %a} {a.signal} "
                            f"{a.score:.3f}/{a.threshold:.3f}" for a in ours if a.status == "firing" and a.notify_reason == "new"]
    return result


def markdown(results: list[dict[str, object]]) -> str:
    """Results as the table in BENCHMARKS.md: one row per case and method."""
    cols = ("false_per_1000_series_weeks", "recall", "median_delay_windows", "alerts_per_incident")
    lines = ["| case | method | series-weeks | false alerts / 1,000 series-weeks | recall | median delay (windows) | alerts per incident |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for method in ("driftline", "no_calendar", "adwin_raw"):
            m = r[method]
            vals = ["-" if m[c] is None else str(m[c]) for c in cols]  # type: ignore[index]
            lines.append(f"| {r['case']} | {method} | {m['series_weeks']} | {' | '.join(vals)} |")  # type: ignore[index]
    return "\n".join(lines)


CASES: list[Case] = []


def _evaluate_index(i: int) -> dict[str, object]:
    return evaluate(CASES[i])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of segments (faster, noisier)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).with_name("quality.json")))
    ap.add_argument("--report", help="only print the markdown table of a saved results file")
    args = ap.parse_args()
    if args.report:
        print(markdown(json.loads(Path(args.report).read_text())))
        return 0
    names = ["no_drift", "shift_0.5sd", "shift_1sd", "gradual_2w", "volume_drop_80", "new_category",
             "correlated_15", "nyc_taxi", "metro"]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    for n in names:
        CASES.extend(nyc_taxi() if n == "nyc_taxi" else metro() if n == "metro" else synthetic(n, args.scale))
    # Cases hold generators of events (closures): forked workers inherit them instead of pickling.
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_evaluate_index, range(len(CASES))))
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(markdown(results))
    cols = ("false_per_1000_series_weeks", "recall", "median_delay_windows", "alerts_per_incident")
    print(f"{'case':28} {'method':12} {'false/1k sw':>11} {'recall':>7} {'delay':>6} {'alerts/inc':>10}")
    for r in results:
        for method in ("driftline", "no_calendar", "adwin_raw"):
            m = r[method]
            vals = ["-" if m[c] is None else str(m[c]) for c in cols]  # type: ignore[index]
            print(f"{r['case']:28} {method:12} {vals[0]:>11} {vals[1]:>7} {vals[2]:>6} {vals[3]:>10}")
        for extra in ("metro_holiday_alerts_by_year", "alerts"):
            if extra in r:
                print(f"  {extra}: {r[extra]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
