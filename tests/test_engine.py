"""The engine over simulated seasonal streams, without Kafka."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from stream.config import Config, Defaults, ModelConfig
from stream.decode import Record
from stream.engine import Engine, Output
from stream.series.tables import segment_key
from stream.simulate import HOUR_MS, WEEK_MS, Drift, Scenario, simulate

END = 1795716000000  # 2026-11-26 18:00 UTC


def feed(engine: Engine, raw: list[bytes], chunk: int = 4000, finish: bool = True) -> Output:
    out = Output()
    for i in range(0, len(raw), chunk):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]))
    if finish:
        out.extend(engine.finish())
    return out


def events(sc: Scenario, seed: int = 1) -> list[bytes]:
    return [orjson.dumps(e) for e in simulate(sc, seed=seed)]


def config(action: str = "circuit_break", **defaults: object) -> Config:
    return Config(models={"fraud": ModelConfig(action=action)}, defaults=Defaults(**defaults))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def drifted() -> tuple[Engine, Output, Scenario]:
    sc = Scenario(weeks=8, end_ms=END, rate=40, drift_segment=1, drift_start_ms=END - 5 * 24 * HOUR_MS)
    engine = Engine(config())
    return engine, feed(engine, events(sc)), sc


def test_seasonal_weeks_alert_only_on_the_drifted_segment(drifted: tuple[Engine, Output, Scenario]) -> None:
    engine, out, sc = drifted
    firing = [a for a in out.alerts if a.status == "firing"]
    assert firing, "the shifted segment must alert"
    assert {tuple(sorted(a.segment.items())) for a in out.alerts} == {tuple(sorted(sc.segments[1].items()))}
    first = min(a.window_start for a in firing)
    assert sc.drift_start_ms is not None and sc.drift_start_ms <= first < sc.drift_start_ms + 24 * HOUR_MS
    new = [a for a in firing if a.notify_reason == "new" and a.signal == "prediction"]
    assert new[0].baseline_info.kind == "hour_of_week" and new[0].baseline_info.confidence == "high"
    assert len(new[0].history.recent) == 24 and len(new[0].history.same_slot) >= 3


def test_circuit_break_then_stable_ids(drifted: tuple[Engine, Output, Scenario]) -> None:
    _engine, out, sc = drifted
    actions = [c.action for c in out.commands]
    assert actions and actions[0] == "circuit_break"
    assert len({c.command_id for c in out.commands}) == len(out.commands)
    again = feed(Engine(config()), events(sc))
    assert [c.command_id for c in again.commands] == [c.command_id for c in out.commands]
    assert [(a.alert_id, a.status) for a in again.alerts] == [(a.alert_id, a.status) for a in out.alerts]


def test_counts_add_up(drifted: tuple[Engine, Output, Scenario]) -> None:
    engine, _out, _sc = drifted
    s = engine.stats
    assert s.consumed == s.processed + s.dead_lettered and s.dead_lettered == 0


def test_no_drift_no_alert_and_alert_only_model_no_command() -> None:
    sc = Scenario(weeks=6, end_ms=END, rate=40)
    out = feed(Engine(config(action="alert")), events(sc, seed=4))
    assert out.alerts == [] and out.commands == []


def test_volume_drop_alerts_as_volume() -> None:
    sc = Scenario(weeks=5, end_ms=END, rate=40, segments=({"country": "US"},))
    raw = events(sc, seed=5)
    cut = END - 2 * 24 * HOUR_MS
    kept = [r for i, r in enumerate(raw) if orjson.loads(r)["ts"] < cut or i % 5 == 0]  # 80% fewer events
    out = feed(Engine(config()), kept)
    signals = {a.signal for a in out.alerts if a.status == "firing"}
    assert "volume" in signals


def test_bad_records_are_dead_lettered_with_reasons() -> None:
    engine = Engine(config(), clock=lambda: END / 1000)
    good = {"event_id": "e", "model": "fraud", "ts": END - 1000, "prediction": 0.3}
    raw = [
        orjson.dumps(good),
        b"{not json",
        orjson.dumps({k: v for k, v in good.items() if k != "ts"}),
        orjson.dumps({**good, "event_id": "e2", "prediction": "high"}),  # a label where the model sends numbers
        orjson.dumps({**good, "prediction": [0.3]}),
        orjson.dumps({**good, "model": "ghost"}),
        orjson.dumps({**good, "ts": END + 2 * HOUR_MS}),
        b"\xff\xfe\x00",
        b"x" * 70_000,
    ]
    out = engine.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw)])
    by_offset = {d.record.offset: d for d in out.dead_letters}
    assert {o: d.reason for o, d in sorted(by_offset.items())} == {
        1: "malformed_json", 2: "invalid_event", 3: "prediction_type", 4: "invalid_event",
        5: "unknown_model", 6: "future", 7: "not_utf8", 8: "oversized",
    }
    assert by_offset[1].record.value == b"{not json"  # the original bytes, untouched
    assert "ts: required field missing" in by_offset[2].detail
    assert "ghost" in by_offset[5].detail
    assert engine.stats.processed == 1 and engine.stats.consumed == len(raw)


def test_late_events_are_dead_lettered_not_dropped() -> None:
    engine = Engine(config(), clock=None)
    ev = lambda i, ts: orjson.dumps({"event_id": f"e{i}", "model": "fraud", "ts": ts, "prediction": 0.5})  # noqa: E731
    engine.process([Record(ev(i, END + i * 60_000), None, "in", 0, i) for i in range(60)])
    engine.process([Record(ev(100, END + 2 * HOUR_MS), None, "in", 0, 100)])  # watermark passes END + 1h
    out = engine.process([Record(ev(101, END + 5 * 60_000), None, "in", 0, 101), Record(ev(102, END + HOUR_MS + 1), None, "in", 0, 102)])
    assert [(d.reason, d.record.offset) for d in out.dead_letters] == [("late", 101)]
    assert engine.stats.consumed == engine.stats.processed + engine.stats.dead_lettered
    # A new segment whose events are all late creates no series (it would never expire), on the
    # column-wise path and on the event-by-event one (a repeated id sends the batch there).
    seg = lambda i, s, ts: orjson.dumps({"event_id": f"s{i}", "model": "fraud", "ts": ts, "segment": {"s": s},  # noqa: E731
                                         "prediction": 0.5})
    out = engine.process([Record(seg(1, "new", END + 60_000), None, "in", 0, 200)])
    out.extend(engine.process([Record(seg(2, "newer", END + 60_000), None, "in", 0, 201),
                               Record(seg(2, "newer", END + 60_000), None, "in", 0, 202)]))
    assert [(d.reason, d.record.offset) for d in out.dead_letters] == [("late", 200), ("duplicate", 202), ("late", 201)]
    assert sorted(engine.series_key) == [""]


def test_categorical_predictions_drift() -> None:
    import numpy as np

    rng = np.random.default_rng(9)
    start = END - 6 * WEEK_MS
    raw = []
    for h in range(6 * 168):
        t = start + h * HOUR_MS
        p_spam = 0.6 if t >= END - 2 * 24 * HOUR_MS else 0.2
        for i in range(80):
            label = "spam" if rng.random() < p_spam else "ham"
            pred = {"spam": 0.9, "ham": 0.1} if label == "spam" and i % 2 else label
            raw.append(orjson.dumps({"event_id": f"{h}-{i}", "model": "fraud", "ts": t + i * 40_000, "prediction": pred}))
    out = feed(Engine(config()), raw)
    firing = [a for a in out.alerts if a.status == "firing" and a.signal == "prediction"]
    assert firing and min(a.window_start for a in firing) >= END - 2 * 24 * HOUR_MS
    assert firing[0].current.histogram is not None and firing[0].current.histogram.labels is not None
    assert "spam" in firing[0].current.histogram.labels


def _segments(n: int) -> tuple[dict[str, str], ...]:
    return tuple({"region": f"r{i}"} for i in range(n))


def test_correlated_features_drifting_with_the_prediction_make_one_alert() -> None:
    from stream.simulate import Drift

    start = END - 2 * 24 * HOUR_MS
    sc = Scenario(weeks=5, end_ms=END, rate=120, segments=_segments(2), correlated_features=6,
                  drifts=(Drift(0, start, "features", 1.0),), day_volume=1.2, night_volume=0.8, weekend_volume=0.9)
    cfg = Config(models={"fraud": ModelConfig(features=[f"f{j:02d}" for j in range(6)] + ["tier"])})
    out = feed(Engine(cfg), events(sc, seed=6))
    new = [a for a in out.alerts if a.status == "firing" and a.notify_reason == "new"]
    assert len(new) == 1, [a.summary for a in new]
    alert = new[0]
    assert alert.signal == "prediction" and alert.segment == {"region": "r0"}
    assert set(alert.features) >= {f"f{j:02d}" for j in range(6)}
    assert any(len(g) >= 6 for g in alert.feature_groups)  # they were found to be correlated


def test_feature_only_drift_is_info_and_breaks_nothing() -> None:
    from stream.simulate import Drift

    start = END - 2 * 24 * HOUR_MS
    sc = Scenario(weeks=5, end_ms=END, rate=120, segments=_segments(1), drifts=(Drift(0, start, "category", 0.3),),
                  day_volume=1.2, night_volume=0.8, weekend_volume=0.9)
    cfg = Config(models={"fraud": ModelConfig(features=["tier", "amount"], action="circuit_break")})
    out = feed(Engine(cfg), events(sc, seed=7))
    new = [a for a in out.alerts if a.status == "firing" and a.notify_reason == "new"]
    assert [(a.signal, a.severity, a.features) for a in new] == [("feature", "info", ["tier"])]
    assert new[0].window_start >= start
    assert out.commands == []


def test_a_model_whose_feature_alerts_may_act_raises_them_as_warnings_and_breaks() -> None:
    from stream.config import ResponseConfig
    from stream.simulate import Drift

    start = END - 2 * 24 * HOUR_MS
    sc = Scenario(weeks=5, end_ms=END, rate=120, segments=_segments(1), drifts=(Drift(0, start, "category", 0.3),),
                  day_volume=1.2, night_volume=0.8, weekend_volume=0.9)
    cfg = Config(models={"fraud": ModelConfig(features=["tier", "amount"], action="circuit_break",
                                              response=ResponseConfig(feature=["circuit_break"]))})
    out = feed(Engine(cfg), events(sc, seed=7))
    new = [a for a in out.alerts if a.status == "firing" and a.notify_reason == "new"]
    assert [(a.signal, a.severity, a.features) for a in new] == [("feature", "warning", ["tier"])]
    assert [c.action for c in out.commands][:1] == ["circuit_break"]
    assert out.commands[0].reason.alert_id == new[0].alert_id


def test_many_segments_drifting_together_make_one_model_level_alert() -> None:
    from stream.simulate import Drift

    start = END - 30 * HOUR_MS
    sc = Scenario(weeks=5, end_ms=END, rate=80, segments=_segments(5),
                  drifts=tuple(Drift(i, start, "shift", 1.5) for i in range(4)))
    out = feed(Engine(config()), events(sc, seed=8))
    new = [a for a in out.alerts if a.status == "firing" and a.notify_reason == "new"]
    assert len(new) == 1 and new[0].segments is not None
    assert {s["region"] for s in new[0].segments} >= {"r0", "r1", "r2"}
    assert {s["region"] for a in out.alerts for s in (a.segments or [a.segment])} <= {"r0", "r1", "r2", "r3"}
    breaks = [c for c in out.commands if c.action == "circuit_break"]
    assert breaks and breaks[0].reason.alert_id == new[0].alert_id


def test_a_group_repeat_shows_the_window_it_is_sent_for() -> None:
    """A member with nothing to say in the window a group's repeat falls due in (its window lacked the
    power to confirm) leaves only an older note: the repeat's evidence is still this window's, so it
    is never the same transition twice (the calendar of this seed made one, 2026-12-02)."""
    end = 1796184000000  # 2026-12-02 04:00 UTC
    segs = tuple({"country": c, "channel": ch} for c in ("US", "DE", "BR", "FR") for ch in ("web", "app"))
    sc = Scenario(weeks=5, end_ms=end, rate=25, segments=segs,
                  drifts=tuple(Drift(s, end - h * HOUR_MS, k, z) for s, h, k, z in
                               ((1, 50, "shift", 1.5), (2, 50, "shift", 1.5), (5, 50, "shift", 1.5), (6, 20, "volume", 0.2))))
    out = feed(Engine(config(group_min_segments=3)), events(sc, seed=5))
    repeats = [a for a in out.alerts if a.segments is not None and a.notify_reason == "repeat"]
    assert len(repeats) >= 3
    assert all(a.window_end - a.window_start == HOUR_MS for a in out.alerts)
    seen = [(a.alert_id, a.status, a.notify_reason, a.window_start) for a in out.alerts]
    assert len(set(seen)) == len(seen)


def test_slow_drift_is_caught_by_the_online_detectors() -> None:
    """A drift too small for any single window: the residual detectors see it accumulate."""
    from stream.simulate import Drift

    start = END - 4 * 24 * HOUR_MS
    sc = Scenario(weeks=6, end_ms=END, rate=60, segments=_segments(1), drifts=(Drift(0, start, "shift", 0.3),),
                  day_volume=1.2, night_volume=0.8, weekend_volume=0.9)
    out = feed(Engine(config()), events(sc, seed=9))
    firing = [a for a in out.alerts if a.status == "firing"]
    assert firing and min(a.window_start for a in firing) >= start
    # The page says which test fired: an online detector's alert scores below the window test's
    # threshold, and says it would not have fired alone.
    from stream.explain import explain_text, why

    online = [a for a in firing if a.test == "page_hinkley" and a.score < a.threshold]
    assert online, "the drift is too small for a window test: Page-Hinkley finds it"
    assert why(online[0]).startswith("Page-Hinkley fired") and "would not have fired alone" in why(online[0])
    assert why(online[0]) in explain_text(online[0])


GOOD = {"event_id": "ok-1", "model": "fraud", "ts": END - 1000, "prediction": 0.3}
BAD_INPUT = [
    ("malformed JSON", b'{"event_id": "x", "model": ', "malformed_json"),
    ("not UTF-8", b'{"event_id": "\xff\xfe", "model": "fraud"}', "not_utf8"),
    ("empty message", b"", "empty"),
    ("oversized", b'{"pad": "' + b"x" * 70_000 + b'"}', "oversized"),
    ("not an object", b"[1, 2, 3]", "invalid_event"),
    ("missing field", orjson.dumps({k: v for k, v in GOOD.items() if k != "prediction"}), "invalid_event"),
    ("wrong type", orjson.dumps({**GOOD, "event_id": "w", "prediction": [0.3]}), "invalid_event"),
    ("NaN prediction", b'{"event_id": "n", "model": "fraud", "ts": 1795715999000, "prediction": NaN}', "invalid_event"),
    ("infinite feature", b'{"event_id": "i", "model": "fraud", "ts": 1795715999000, "prediction": 0.1, "features": {"a": Infinity}}', "invalid_event"),
    ("timestamp without offset", orjson.dumps({**GOOD, "event_id": "t", "ts": "2026-11-26T17:00:00"}), "invalid_event"),
    ("no model field (one model configured)", orjson.dumps({k: v for k, v in GOOD.items() if k != "model"}), "invalid_event"),
    ("timestamp beyond int64", orjson.dumps({**GOOD, "event_id": "b", "ts": 10**19}), "invalid_event"),
    ("integer prediction too large for a float", b'{"event_id": "h", "model": "fraud", "ts": 1795715999000, "prediction": 1'
     + b"0" * 400 + b"}", "invalid_event"),
    # Poison pills that once stopped the service (issue 12): event times outside what a datetime, an
    # int64 or a calendar can hold, or far from any real time. Each is refused where it enters.
    ("float timestamp beyond int64", b'{"event_id": "p-1", "model": "fraud", "ts": 1.7951864781e20, "prediction": 0.2}',
     "invalid_event"),
    ("timestamp 1e308", b'{"event_id": "p-2", "model": "fraud", "ts": 1e308, "prediction": 0.2}', "invalid_event"),
    ("negative timestamp beyond int64", b'{"event_id": "p-3", "model": "fraud", "ts": -1e20, "prediction": 0.2}',
     "invalid_event"),
    ("timestamp in the year -29719", b'{"event_id": "p-4", "model": "fraud", "ts": -1e15, "prediction": 0.2}',
     "invalid_event"),
    ("timestamp in seconds", orjson.dumps({**GOOD, "event_id": "p-5", "ts": END // 1000}), "invalid_event"),
    ("timestamp in microseconds", orjson.dumps({**GOOD, "event_id": "p-6", "ts": END * 1000}), "invalid_event"),
    ("RFC 3339 before year 1 in UTC", orjson.dumps({**GOOD, "event_id": "p-7", "ts": "0001-01-01T00:00:00+14:00"}),
     "invalid_event"),
    ("RFC 3339 in the year 9999", orjson.dumps({**GOOD, "event_id": "p-8", "ts": "9999-12-31T23:59:59Z"}),
     "invalid_event"),
    ("prediction that overflows a float", b'{"event_id": "p-9", "model": "fraud", "ts": 1795715999000, "prediction": 1e999}',
     "invalid_event"),
    # Text and maps beyond their bounds (they would end up in state and in size-limited alert records).
    ("segment value of 300 characters", orjson.dumps({**GOOD, "event_id": "z-1", "segment": {"c": "x" * 300}}),
     "invalid_event"),
    ("segment of 40 keys", orjson.dumps({**GOOD, "event_id": "z-2", "segment": {f"k{i}": "v" for i in range(40)}}),
     "invalid_event"),
    ("class label of 300 characters", orjson.dumps({**GOOD, "event_id": "z-3", "prediction": "y" * 300}), "invalid_event"),
    ("probability map of 2000 classes", orjson.dumps({**GOOD, "event_id": "z-4", "prediction": {f"c{i}": 0.0005 for i in range(2000)}}),
     "invalid_event"),
    ("model version of 300 characters", orjson.dumps({**GOOD, "event_id": "z-5", "model_version": "v" * 300}), "invalid_event"),
    ("unknown model", orjson.dumps({**GOOD, "event_id": "u", "model": "ghost"}), "unknown_model"),
    ("far future", orjson.dumps({**GOOD, "event_id": "f", "ts": END + 86_400_000}), "future"),
    ("label where numbers are sent", orjson.dumps({**GOOD, "event_id": "l", "prediction": "high"}), "prediction_type"),
    ("duplicate event_id (producer retry)", orjson.dumps(GOOD), "duplicate"),
]


@pytest.mark.parametrize("name, raw, reason", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_table(name: str, raw: bytes, reason: str) -> None:
    engine = Engine(config(), clock=lambda: END / 1000)
    first = engine.process([Record(orjson.dumps(GOOD), None, "in", 0, 0)])
    assert first.dead_letters == []
    out = engine.process([Record(raw, b"k", "in", 0, 1)])
    assert [(d.reason, d.record.value, d.record.offset) for d in out.dead_letters] == [(reason, raw, 1)], name
    assert out.dead_letters[0].detail
    assert engine.stats.consumed == engine.stats.processed + engine.stats.dead_lettered == 2


def test_series_cap_dead_letters_the_rest() -> None:
    engine = Engine(Config(models={"fraud": ModelConfig()}, defaults=Defaults(max_series_per_model=3)))
    raw = [orjson.dumps({**GOOD, "event_id": f"s{i}", "segment": {"user": str(i)}}) for i in range(5)]
    out = engine.process([Record(r, None, "in", 0, i) for i, r in enumerate(raw)])
    assert [(d.reason, d.record.offset) for d in out.dead_letters] == [("too_many_series", 3), ("too_many_series", 4)]


def test_series_that_stop_sending_expire() -> None:
    cfg = Config(models={"fraud": ModelConfig()}, defaults=Defaults(series_ttl="6h"))
    engine = Engine(cfg)
    raw = []
    for h in range(24):
        for seg in (["a", "b"] if h < 5 else ["b"]):
            for i in range(5):
                raw.append(orjson.dumps({"event_id": f"{seg}{h}-{i}", "model": "fraud", "ts": END + h * HOUR_MS + i,
                                         "segment": {"s": seg}, "prediction": 0.5}))
    feed(engine, raw, finish=False)
    m = engine.models["fraud"]
    assert [engine.series_key[s] for s in m.sids] == ["s=b"]
    assert 0 not in m.store.rows and engine.last_active[0] == -2
    # It comes back as a new series if it sends again.
    engine.process([Record(orjson.dumps({"event_id": "back", "model": "fraud", "ts": END + 24 * HOUR_MS,
                                         "segment": {"s": "a"}, "prediction": 0.5}), None, "in", 0, 0)])
    assert sorted(engine.series_key[s] for s in m.sids) == ["s=a", "s=b"]


def test_alerts_do_not_depend_on_how_the_stream_is_cut_into_batches() -> None:
    """Bin edges come from exactly the first values, and windows wait for them: a consumer's batch
    sizes (which vary with timing) change nothing."""
    sc = Scenario(weeks=5, end_ms=END, rate=40, drifts=(Drift(1, END - 50 * HOUR_MS, "shift", 1.5),))
    raw = [orjson.dumps(e) for e in simulate(sc, seed=5)]
    cfg = Config(models={"fraud": ModelConfig(segment_by=["country", "channel"], action="circuit_break")})
    runs = []
    for chunk in (300, 2000, 7000):
        engine = Engine(cfg)
        out = Output()
        for i in range(0, len(raw), chunk):
            out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]))
        out.extend(engine.finish())
        runs.append([(a.alert_id, a.notify_reason, a.window_start, a.test, round(a.score, 9)) for a in out.alerts])
    assert runs[0] and runs[0] == runs[1] == runs[2]


def test_a_series_with_events_in_an_open_window_is_not_expired() -> None:
    """Stale by its last closed window, but sending again: it keeps its row and its counts."""
    cfg = Config(models={"m": ModelConfig(segment_by=["s"])}, defaults=Defaults(series_ttl="2h"))
    engine = Engine(cfg)
    n = [0]

    def ev(seg: str, ts: int, k: int = 1) -> list[Record]:
        out = []
        for i in range(k):
            n[0] += 1
            body = {"event_id": f"e{n[0]}", "model": "m", "ts": ts + i, "segment": {"s": seg}, "prediction": "a"}
            out.append(Record(orjson.dumps(body), None, "in", 0, n[0]))
        return out

    engine.process(ev("A", END + 10) + ev("B", END + 20))
    for h in range(1, 5):
        engine.process(ev("B", END + h * HOUR_MS + 1))
    engine.process(ev("A", END + 5 * HOUR_MS + 300_000, 7) + ev("B", END + 5 * HOUR_MS + 900_000))
    engine.process(ev("C", END + 5 * HOUR_MS + 1_200_000))
    engine.process(ev("B", END + 6 * HOUR_MS + 1_200_000, 1))
    engine.process(ev("B", END + 7 * HOUR_MS + 1_200_000, 1))
    m = engine.models["m"]
    at5 = END + 5 * HOUR_MS
    counts = {engine.series_key[sid]: {int(p["start"]): int(p["count"]) for p in m.store.history(sid, ("x",))[0]}
              for sid in m.store.rows}
    assert counts["s=A"][at5] == 7 and counts["s=C"][at5] == 1


def _alerts(out: Output) -> list[tuple[str, str, int, str, float, tuple[str, ...]]]:
    return [(a.alert_id, a.notify_reason, a.window_start, a.test, round(a.score, 9), tuple(a.features))
            for a in out.alerts]


def test_events_the_typed_decoder_refuses_give_the_same_alerts_through_the_generic_path() -> None:
    """Extra segment keys and unmonitored features send every event down the generic path (full
    validation); the alerts must be those of the typed path, event for event."""
    sc = Scenario(weeks=5, end_ms=END, rate=40, segments=_segments(3), correlated_features=3,
                  drifts=(Drift(1, END - 50 * HOUR_MS, "shift", 1.5),))
    raw = events(sc, seed=4)
    padded = []
    for r in raw:
        e = orjson.loads(r)
        e["segment"] = {**e["segment"], "host": "h1"}
        e["features"] = {**e["features"], "unmonitored": "x"}
        padded.append(orjson.dumps(e))
    cfg = Config(models={"fraud": ModelConfig(segment_by=["region"], features=["amount", "tier", "f00", "f01", "f02"],
                                              action="circuit_break")})
    typed, generic = Engine(cfg), Engine(cfg)
    a = feed(typed, raw[:100], finish=False)
    decode = typed.typed.decoder()
    assert type(decode(raw[0])).__name__ == "TypedEvent"
    with pytest.raises(msgspec.ValidationError):
        decode(padded[0])
    a.extend(feed(typed, raw[100:]))
    b = feed(generic, padded)
    assert [e for e in a.alerts if e.status == "firing"], "the drifted segment must alert"
    assert _alerts(a) == _alerts(b)
    assert typed.stats.processed == generic.stats.processed == len(raw)


def test_a_feature_of_the_wrong_kind_counts_as_null_on_either_path() -> None:
    """Once a feature is known numeric the decoder types it so: a text value then fails the typed
    decode and the generic path counts it in the null bin, as the sketch does for any wrong type."""
    cfg = Config(models={"m": ModelConfig(features=["x"])})
    engine = Engine(cfg)
    first = [orjson.dumps({"event_id": f"a{i}", "model": "m", "ts": END + i * 20_000, "prediction": 0.5,
                           "features": {"x": i}}) for i in range(600)]  # over 3h20m: the prediction's edges are set
    feed(engine, first, finish=False)
    assert engine.typed.schemas["m"].kinds == ("numeric",)
    at = END + 3 * HOUR_MS + 1_300_000
    odd = [orjson.dumps({"event_id": f"b{i}", "model": "m", "ts": at + i, "prediction": 0.5,
                         "features": {"x": "seven" if i % 2 else float(i)}}) for i in range(10)]
    out = engine.process([Record(r, None, "in", 0, i) for i, r in enumerate(odd)])
    assert out.dead_letters == []
    m = engine.models["m"]
    assert m.features is not None
    sums = m.windows._open[at - at % m.cfg.window]
    row = m.store.rows[0]
    null_bin = m.features.size("x") - 1
    assert int(sums.count[row]) > 10 and int(sums.feat[row, 0, null_bin]) == 5


def test_events_of_several_models_in_one_batch_keep_their_order() -> None:
    cfg = Config(models={"a": ModelConfig(), "b": ModelConfig(segment_by=["s"])})
    engine = Engine(cfg)
    recs = []
    for i in range(20):
        model = "a" if i % 3 else "b"
        recs.append(Record(orjson.dumps({"event_id": "same" if i in (4, 5) else f"e{i}", "model": model,
                                         "ts": END + i, "segment": {"s": "x"}, "prediction": 0.1 * i}), None, "in", 0, i))
    recs.append(Record(orjson.dumps({"event_id": "g", "model": "ghost", "ts": END, "prediction": 1.0}), None, "in", 0, 20))
    out = engine.process(recs)
    # e4 and e5 share an id and a model ("a"): the later one is the repeat.
    assert [(d.reason, d.record.offset) for d in out.dead_letters] == [("unknown_model", 20), ("duplicate", 5)]
    assert engine.stats.processed == 19
    assert [engine.series_key[s] for s in engine.models["b"].sids] == ["s=x"]


def test_extreme_values_leave_the_statistics_finite_and_the_drift_found_in_the_same_window() -> None:
    """1e300, -1e300, 1e-300, subnormals and the largest floats in one segment's window a week before
    a real drift there: no NaN or inf anywhere in the state, and the drift alerts in the same window."""
    import numpy as np

    start = END - 30 * HOUR_MS
    sc = Scenario(weeks=5, end_ms=END, rate=40, drifts=(Drift(1, start, "shift", 1.5),))
    good = events(sc, seed=6)
    at = next(i for i, r in enumerate(good) if orjson.loads(r)["ts"] >= start - WEEK_MS)
    template = orjson.loads(good[at])
    extremes = [1e300, -1e300, 1e-300, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 2.2e-308]
    hostile = good[:at] + [orjson.dumps({**template, "event_id": f"x{k}", "prediction": v})
                           for k, v in enumerate(extremes)] + good[at:]

    def first_drift(raw: list[bytes]) -> tuple[Engine, int]:
        engine = Engine(config())
        out = feed(engine, raw)
        firing = [a for a in out.alerts if a.status == "firing" and a.signal == "prediction" and a.window_start >= start]
        assert firing, "the drift must be found"
        return engine, min(a.window_start for a in firing)

    _clean, want = first_drift(good)
    engine, got = first_drift(hostile)
    assert got == want
    st = engine.models["fraud"].store
    for name in ("scal", "hist", "fhist", "fdisp", "ph"):
        arr = getattr(st, name)
        assert np.isfinite(arr).all(), f"{name} holds NaN or inf"
    for field in st.recent.dtype.names or ():
        assert not np.isinf(st.recent[field]).any()
    assert engine.stats.processed == len(hostile)


@pytest.mark.parametrize("window", ["2h", "6h", "1d"])
def test_long_windows_keep_their_local_slots_through_a_dst_change(window: str) -> None:
    """2 h, 6 h and 1 d windows in New York across the fall-back change of 2026-11-01: the windows start
    at the same local times before and after it (00:00, 06:00, ... local), so every slot keeps its
    history and nothing alerts. On the UTC grid, each 6 h slot's local start moved by an hour at
    the change: eight slot hours instead of four, every baseline started over."""
    end = 1796176800000  # 2026-12-01 02:00 UTC: five weeks after the change
    sc = Scenario(weeks=10, end_ms=end, rate=60, timezone="America/New_York")
    cfg = Config(models={"fraud": ModelConfig()}, defaults=Defaults(window=window, timezone="America/New_York"))  # type: ignore[arg-type]
    engine = Engine(cfg)
    out = feed(engine, events(sc, seed=3))
    assert out.alerts == []
    keys = set(engine.models["fraud"].store.keys)
    hours = {k[-1] for k in keys if k[0] == "how"}
    assert hours == {"2h": set(range(0, 24, 2)), "6h": {0, 6, 12, 18}, "1d": {0}}[window]
    m = engine.models["fraud"]
    assert m.grid.local and m.calendar.slot(m.grid.start(end - 3 * HOUR_MS)).local_start.hour in hours


def test_a_forecast_the_same_for_a_whole_hour_alerts_only_when_it_moves() -> None:
    """A demand forecast: one number for every event of a segment's hour, moving a little from
    week to week. Taken as independent draws, each hour's events are n pieces of evidence: a
    week's small move into the next bin scored the Jensen-Shannon maximum, 1.0, against a
    threshold of 0.07 (critical), and the fast lane fired where edges learned from a few such
    values sat a sliver apart (89 false critical alerts in eight weeks of four segments). A move
    far beyond how its hours vary (15 times) is found by the mean-shift test within two windows:
    how wide a slot's threshold is depends on how many past weeks measured its spread (the first
    window's slot scored 14.6 against 36.2, the second 22.4 against 10.4)."""
    healthy = Scenario(weeks=8, end_ms=END, rate=20, forecast=0.01)
    out = feed(Engine(config()), events(healthy, seed=4))
    assert [a.summary for a in out.alerts if a.status == "firing"] == []
    start = END - 2 * 24 * HOUR_MS
    moved = Scenario(weeks=8, end_ms=END, rate=20, forecast=0.01, drifts=(Drift(1, start, "shift", shift_abs=0.15),))
    firing = [a for a in feed(Engine(config()), events(moved, seed=4)).alerts if a.status == "firing"]
    assert firing and {segment_key(a.segment) for a in firing} == {segment_key(moved.segments[1])}
    assert start <= min(a.window_start for a in firing) <= start + HOUR_MS
    assert {a.test for a in firing} == {"mean_shift"}


def test_the_budget_is_the_dial_of_every_test() -> None:
    """``false_alarms_per_4_weeks`` is the one dial: on the same healthy but strongly
    autocorrelated stream (each segment's volume and prediction wander for hours at a time), a
    budget 256 times larger raises several times as many alerts (seeded: 21 against 3). Whether
    the rate stays within the budget is measured on a thousand series by bench/budget.py
    (BENCHMARKS.md), not here."""
    sc = Scenario(weeks=6, end_ms=END, rate=10, segments=tuple({"s": str(i)} for i in range(12)), segment_spread=0.0,
                  wobble=1.0, wobble_volume=0.4, timezone="America/New_York")
    raw = events(sc, seed=2)

    def false_alerts(budget: float) -> int:
        out = feed(Engine(config(timezone="America/New_York", false_alarms_per_4_weeks=budget)), raw)
        return sum(a.status == "firing" and a.notify_reason == "new" for a in out.alerts)

    quiet, loud = false_alerts(0.25), false_alerts(64.0)
    assert loud > 2 * max(quiet, 1)


def test_sub_hour_windows_are_compared_with_their_own_quarter_hour() -> None:
    """15 min windows: each quarter hour of the week is a slot of its own (Monday 08:15 with past
    Mondays' 08:15), so the baseline of a slot is the same quarter hour of past weeks."""
    end = 1796176800000
    sc = Scenario(weeks=4, end_ms=end, rate=240, segments=({"country": "US"},), timezone="America/New_York")
    cfg = Config(models={"fraud": ModelConfig()}, defaults=Defaults(window="15m", timezone="America/New_York"))  # type: ignore[arg-type]
    engine = Engine(cfg)
    feed(engine, events(sc, seed=5))
    keys = {k for k in engine.models["fraud"].store.keys if k[0] == "how"}
    assert ("how", 0, "08:15") in keys and ("how", 0, "08:00") in keys
    assert len(keys) == 7 * 96
    assert engine.models["fraud"].calendar.label_for_key(("how", 0, "08:15")) == "Monday 08:15 America/New_York"


def test_a_bridge_day_taken_off_raises_nothing() -> None:
    """The Friday after Thanksgiving, taken off: traffic like a Saturday's, on a Friday. As an
    ordinary Friday it would drift (prediction and volume, all day, every segment); as a bridge day
    without history of its own it is judged like a Friday or like a day off, and it is like one."""
    end = 1795852800000  # 2026-11-28 07:00 UTC: the Friday is over
    sc = Scenario(weeks=7, end_ms=end, rate=40, timezone="America/New_York", days_off=("2026-11-27",))
    out = feed(Engine(config(timezone="America/New_York")), events(sc, seed=6))
    assert [a.summary for a in out.alerts if a.status == "firing"] == []
    ordinary = feed(Engine(config(timezone="America/New_York", bridge_days=0)), events(sc, seed=6))
    assert any(a.status == "firing" for a in ordinary.alerts)  # without bridge days it does drift
