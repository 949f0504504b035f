"""The fast lane (issue 14): broken models break inside the open window, healthy ones stay quiet.

Each test reads like a timeline: three weeks of seasonal history, then from ``BREAK`` one segment
(``US/web``) breaks in one way, and the circuit break must follow within a few of its broken events,
long before the window closes; the others stay quiet. Times are event times (no clock): the
benchmark ``bench/time_to_break.py`` measures wall-clock seconds on the real broker.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from stream.config import Config, Defaults, ModelConfig
from stream.decode import Record
from stream.engine import Engine, Output
from stream.series.eprocess import lane_values
from stream.simulate import HOUR_MS, Drift, Scenario, simulate

END = 1795111200000  # 2026-11-19 18:00 UTC, a Thursday (not Thanksgiving: no holiday in the way)
BREAK = END - 5 * HOUR_MS + 20 * 60_000  # 13:20, a third into a window
BROKEN = {"country": "US", "channel": "web"}
RATE = 240.0  # events per hour per segment: a broken segment sends one every 15 s


def config(**defaults: object) -> Config:
    return Config(models={"fraud": ModelConfig(action="circuit_break")}, defaults=Defaults(**defaults))  # type: ignore[arg-type]


def history(drifts: tuple[Drift, ...] = ()) -> list[dict[str, object]]:
    return list(simulate(Scenario(weeks=3, end_ms=END, rate=RATE, drifts=drifts), seed=3))


def feed(engine: Engine, events: list[dict[str, object]] | list[bytes], chunk: int = 3000) -> Output:
    raw = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    out = Output()
    for i in range(0, len(raw), chunk):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]))
    return out


def broken_after(events: list[dict[str, object]], change: object) -> tuple[list[dict[str, object]] | list[bytes], list[int]]:
    """The events with the broken segment's predictions from ``BREAK`` on replaced (``change`` is a
    value, or raw text for the prediction), and the broken events' times."""
    out: list[bytes] = []
    times = []
    for e in events:
        if e["segment"] == BROKEN and int(e["ts"]) >= BREAK:  # type: ignore[call-overload]
            times.append(int(e["ts"]))  # type: ignore[call-overload]
            if isinstance(change, str):
                body = orjson.dumps({**e, "prediction": 0}).replace(b'"prediction":0', b'"prediction":' + change.encode())
                out.append(body)
                continue
            e = {**e, "prediction": change}
        out.append(orjson.dumps(e))
    return out, times


def first_break(out: Output) -> tuple[int, str, dict[str, str]]:
    breaks = [c for c in out.commands if c.action == "circuit_break"]
    assert breaks, "the broken model must be broken"
    alert = next(a for a in out.alerts if a.alert_id == breaks[0].reason.alert_id)
    return breaks[0].issued_at, alert.test, alert.segment


@pytest.fixture(scope="module")
def healthy() -> list[dict[str, object]]:
    return history()


@pytest.mark.parametrize(("change", "test"), [(None, "invalid"), ("NaN", "invalid"), ('"oops"', "invalid")])
def test_invalid_predictions_break_within_a_few_events(healthy: list[dict[str, object]], change: object, test: str) -> None:
    events, times = broken_after(healthy, change)
    out = feed(Engine(config()), events)
    at, kind, segment = first_break(out)
    assert kind == test and segment == BROKEN
    assert times[0] <= at <= times[5]  # by the sixth broken event (about 90 s here; 0.3 s at 20/s)
    assert {d.reason for d in out.dead_letters} & {"invalid_event", "prediction_type"}  # dead-lettered too, with why


def test_a_constant_prediction_breaks_within_a_few_events(healthy: list[dict[str, object]]) -> None:
    events, times = broken_after(healthy, 0.5)
    at, kind, segment = first_break(feed(Engine(config()), events))
    assert kind == "sequential" and segment == BROKEN
    assert times[0] <= at <= times[80]  # 20 minutes at this rate: 4 s at 20 events/s


def test_a_severe_shift_breaks_inside_its_window() -> None:
    at_hour = BREAK - BREAK % HOUR_MS + HOUR_MS  # the simulator shifts whole hours
    events = history((Drift(0, at_hour, "shift", 3.0),))
    times = sorted(int(e["ts"]) for e in events if e["segment"] == BROKEN and int(e["ts"]) >= at_hour)  # type: ignore[call-overload]
    at, kind, segment = first_break(feed(Engine(config()), events))
    assert kind == "sequential" and segment == BROKEN
    assert times[0] <= at <= times[20] < at_hour + HOUR_MS  # well before the window closes


def test_a_healthy_stream_never_wakes_the_lane(healthy: list[dict[str, object]]) -> None:
    out = feed(Engine(config()), healthy)
    assert not [a for a in out.alerts if a.test in ("sequential", "invalid")]
    assert not out.commands


def test_the_crossing_is_the_same_event_whatever_the_batches(healthy: list[dict[str, object]]) -> None:
    events, _times = broken_after(healthy, 0.5)
    small, large = feed(Engine(config()), events, chunk=97), feed(Engine(config()), events, chunk=20_000)
    assert [(c.command_id, c.issued_at) for c in small.commands] == [(c.command_id, c.issued_at) for c in large.commands]
    assert [(a.alert_id, a.window_end, round(a.score, 9)) for a in small.alerts] == \
        [(a.alert_id, a.window_end, round(a.score, 9)) for a in large.alerts]


def test_dark_scoring_restores_the_model_on_clean_evidence(healthy: list[dict[str, object]]) -> None:
    """Nulls for 40 minutes; the server, broken, scores in the dark (``served: false``) and its
    predictions are good again: the model is restored after clean windows, and never broken again."""
    fixed = BREAK + 40 * 60_000
    later = list(simulate(Scenario(weeks=1, end_ms=END + 8 * HOUR_MS, rate=RATE), seed=4))
    events = [e for e in healthy if int(e["ts"]) < BREAK]  # type: ignore[call-overload]
    for e in [e for e in healthy if int(e["ts"]) >= BREAK] + [e for e in later if int(e["ts"]) >= END]:  # type: ignore[call-overload]
        if e["segment"] == BROKEN:
            e = {**e, "served": False, "prediction": None if int(e["ts"]) < fixed else e["prediction"]}  # type: ignore[call-overload]
        events.append(e)
    out = feed(Engine(config()), events)
    actions = [(c.action, c.issued_at) for c in out.commands]
    assert [a for a, _t in actions] == ["circuit_break", "restore"], actions
    assert actions[1][1] > fixed + HOUR_MS  # after a clean window's close, not a timer
    restore = next(a for a in out.alerts if a.status == "resolved")
    assert restore.segment == BROKEN


def test_a_declared_range_makes_predictions_outside_it_invalid(healthy: list[dict[str, object]]) -> None:
    cfg = Config(models={"fraud": ModelConfig(action="circuit_break", prediction_range=(0.0, 1.0))})
    events, times = broken_after(healthy, 7.5)
    out = feed(Engine(cfg), events)
    at, kind, _segment = first_break(out)
    assert kind == "invalid" and times[0] <= at <= times[5]
    assert any("outside the declared range [0, 1]" in d.detail for d in out.dead_letters)


def test_the_lane_steps_as_its_one_event_at_a_time_reference() -> None:
    """The vectorised lane against the reference: one series, stepped in chunks of every size."""
    from stream.series.eprocess import SLOW
    from stream.series.lane import LaneStep
    from stream.window import WindowSums

    rng = np.random.default_rng(5)
    xs = np.where(np.arange(400) < 300, rng.integers(0, 2, 400), 2)  # healthy, then invalid
    ceil = np.log(np.array([0.6, 0.6, 0.001]))
    want = lane_values(np.zeros(3), 0.0, xs, ceil)
    want_slow = lane_values(np.zeros(3), 0.0, xs, ceil, decay=SLOW)
    crossings = []

    class Probe(LaneStep):
        d = Defaults()

        def _alpha(self, m: object, series: int) -> float:
            return 1e-4

        def _crossed(self, *args: object) -> None:
            crossings.append(float(args[5]))  # type: ignore[arg-type]

    for chunk in (1, 7, 400):
        sums = WindowSums.zeros(1, 2, 0, 0)
        sums.ceil[0] = ceil
        sums.ready[0] = 1
        got = []
        for lo in range(0, len(xs), chunk):
            part = xs[lo:lo + chunk]
            Probe()._step_chunk(None, 0, sums, np.zeros(len(part), np.int64), part, np.arange(len(part)),  # type: ignore[arg-type]
                                np.arange(len(part)), 1e-4, Output())
            got.append(sums.lane[0])
        assert got[-1] == pytest.approx(want[-1]) and sums.slow[0] == pytest.approx(want_slow[-1])
        assert sums.seen[0].tolist() == np.bincount(xs, minlength=3).tolist()
    assert len(crossings) == 3 and len(set(np.round(crossings, 6))) == 1  # the same statistic at the same event


def test_a_silent_segment_alerts_within_minutes_while_the_others_keep_sending(healthy: list[dict[str, object]]) -> None:
    """Processing time: the clock runs on after the history; one segment stops, the others go on."""
    now = [END / 1000]
    engine = Engine(config(), clock=lambda: now[0])
    feed(engine, [e for e in healthy if int(e["ts"]) < END - 60_000])  # type: ignore[call-overload]
    others = [{"country": "US", "channel": "app"}, {"country": "DE", "channel": "web"}]
    out = Output()
    silent_at = now[0]
    for step in range(40):  # ten minutes, a look every 15 s
        now[0] += 15
        ts = int(now[0] * 1000)
        out.extend(engine.process([Record(orjson.dumps({"event_id": f"live-{step}-{i}", "model": "fraud", "ts": ts,
                                                        "segment": seg, "prediction": 0.2}), None, "in", 0, 10**7 + 2 * step + i)
                                   for i, seg in enumerate(others)]))
    silent = [a for a in out.alerts if a.test == "silence"]
    assert silent and all(a.signal == "volume" and a.status == "firing" for a in silent)
    assert {tuple(sorted(a.segment.items())) for a in silent} >= {tuple(sorted(BROKEN.items()))}
    assert not any(a.segment in others for a in silent)
    assert silent[0].window_end / 1000 - silent_at <= 5 * 60  # within five minutes of the last event
    # Silence pages; it breaks nothing (the others' one constant prediction is another matter: a stuck model).
    assert not {c.reason.alert_id for c in out.commands} & {a.alert_id for a in silent}


def test_a_moderate_shift_is_found_by_the_long_memory_statistic() -> None:
    """Against a loose ceiling (1.7 x each bin's share: a slot measured from few or small windows) a
    1 sd shift earns little per event, about what the short memory's plug-in error costs: only the
    long memory climbs past the threshold."""
    from scipy import stats

    from stream.series.eprocess import SLOW

    edges = np.linspace(0, 1, 21)
    p = np.diff(stats.beta(2, 5).cdf(edges))
    sd = float(stats.beta(2, 5).std())
    rng = np.random.default_rng(8)
    x = np.minimum(rng.beta(2, 5, 6000) + sd, 0.999)
    xs = np.searchsorted(edges, x, side="right") - 1
    ceil = np.log(np.minimum(np.append(p * 1.7 + 1e-4, 0.001), 1.0))
    threshold = math.log(2 * 6000 * (1 + math.log(6000)) ** 2 / 1e-5)
    fast = lane_values(np.zeros(21), 0.0, xs, ceil)
    slow = lane_values(np.zeros(21), 0.0, xs, ceil, decay=SLOW)
    assert fast.max() < threshold < slow.max()
    assert int(np.argmax(slow >= threshold)) == 3014  # its crossing: under three minutes at 20 events/s
