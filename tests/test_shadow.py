"""Shadow mode: a challenger version's predictions against the champion's on the same traffic."""

from __future__ import annotations

import numpy as np
import orjson

from stream.act import verify
from stream.config import Config, Defaults, ModelConfig, ShadowConfig
from stream.contract import Command
from stream.decode import Record
from stream.engine import Engine, Output
from stream.shadow import ShadowTracker, divergence_test
from stream.simulate import HOUR_MS, WEEK_MS, Scenario, simulate
from stream.state import dumps, loads
from stream.subscriber import BreakerBook

END = 1795716000000
SEGS = tuple({"region": f"r{i}"} for i in range(3))


def feed(engine: Engine, raw: list[bytes], start: int = 0, chunk: int = 3000, finish: bool = True) -> Output:
    out = Output()
    for i in range(start, len(raw), chunk):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]))
    if finish:
        out.extend(engine.finish())
    return out


def config(verdict_after: int = 24) -> Config:
    sc = ShadowConfig(champion="3.1.0", verdict_after=verdict_after, publish_verdict=True)
    return Config(models={"fraud": ModelConfig(segment_by=["region"], action="circuit_break", shadow=sc)},
                  commands={"signing_key": "k"}, defaults=Defaults())  # type: ignore[arg-type]


def events(**challenger: object) -> list[bytes]:
    sc = Scenario(weeks=4, end_ms=END, rate=150, segments=SEGS, challenger="3.2.0", **challenger)  # type: ignore[arg-type]
    return [orjson.dumps(e) for e in simulate(sc, seed=21)]


def test_the_g_test_threshold_keeps_false_breaches_near_alpha() -> None:
    """Two samples of one distribution: the share of breaches is about alpha (seeded: an exact count)."""
    rng = np.random.default_rng(5)
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    breaches = 0
    for _ in range(4000):
        a, b = rng.multinomial(400, p).astype(float), rng.multinomial(250, p).astype(float)
        score, threshold = divergence_test(a, b, alpha=0.01)
        breaches += score > threshold
    assert 0.005 < breaches / 4000 < 0.015  # about alpha: the threshold is calibrated, not hand-set
    assert breaches == 51  # this seed: 1.3% (the G-test runs slightly liberal at these counts)


def test_an_equal_challenger_raises_nothing_and_is_promoted_once() -> None:
    raw = events(challenger_shift=0.0)
    engine = Engine(config())
    out = feed(engine, raw)
    assert [a for a in out.alerts if a.signal == "shadow"] == []
    verdicts = [c for c in out.commands if c.action in ("promote", "reject")]
    assert [(c.action, c.model_version) for c in verdicts] == [("promote", "3.2.0")]
    assert verify(verdicts[0], b"k") and verdicts[0].record_key() == "fraud@3.2.0"
    # The challenger's events are counted, but never in the model's own series or bins.
    assert engine.stats.processed == len(raw)
    m = engine.models["fraud"]
    assert len(m.sids) == 3 and m.shadow is not None and m.shadow.compared["3.2.0"] >= 24
    assert not [a for a in out.alerts if a.signal == "prediction"]


def test_a_challenger_that_differs_on_one_segment_alerts_there_and_is_rejected() -> None:
    differs_from = END - WEEK_MS
    raw = events(challenger_shift=0.15, challenger_differs=(1,), challenger_from_ms=differs_from)
    out = feed(Engine(config(verdict_after=10_000)), raw)  # no verdict in this run
    shadow = [a for a in out.alerts if a.signal == "shadow"]
    firing = [a for a in shadow if a.status == "firing"]
    assert firing and {a.segment["region"] for a in shadow} == {"r1"}
    first = min(firing, key=lambda a: a.window_start)
    assert differs_from <= first.window_start < differs_from + 3 * HOUR_MS
    assert first.model_version == "3.2.0" and first.severity == "warning" and first.score > first.threshold
    assert first.baseline_info.slot == "champion 3.1.0 in the same window"
    assert (first.current.mean or 0) > (first.baseline.mean or 0)  # the challenger predicts higher
    assert [c for c in out.commands if c.action in ("promote", "reject")] == []
    # Different from the start: still firing when the verdict is due, so it is a rejection.
    out = feed(Engine(config()), events(challenger_shift=0.15, challenger_differs=(1,)))
    verdicts = [c for c in out.commands if c.action in ("promote", "reject")]
    assert [(c.action, c.model_version) for c in verdicts] == [("reject", "3.2.0")]
    # No breaker moves: shadow alerts are not the served model's drift, and a verdict is no command to it.
    assert [c for c in out.commands if c.action == "circuit_break"] == []
    book = BreakerBook(signing_key=b"k")
    assert book.apply(verdicts[0]) == "applied" and not book.is_open("fraud")
    assert book.verdicts == {("fraud", "3.2.0"): "reject"}


def test_shadow_state_survives_a_restore_mid_stream() -> None:
    raw = events(challenger_shift=0.15, challenger_differs=(1,), challenger_from_ms=END - WEEK_MS)
    cut = (len(raw) * 4 // 5) // 3000 * 3000
    whole = Engine(config())
    feed(whole, raw[:cut], finish=False)
    expected = feed(whole, raw, start=cut)
    first = Engine(config())
    feed(first, raw[:cut], finish=False)
    resumed = loads(config(), dumps(first))
    got = feed(resumed, raw, start=cut)
    assert [a.model_dump_json() for a in got.alerts] == [a.model_dump_json() for a in expected.alerts]
    assert [c.model_dump_json() for c in got.commands] == [c.model_dump_json() for c in expected.commands]
    assert any(a.signal == "shadow" for a in expected.alerts)


def test_tracker_snapshot_round_trips() -> None:
    t = ShadowTracker("1")
    t.add(np.array([0, 0, 3600]), np.array([1, 1, 2]), np.array([0, 2, 1]), ["2", "2", "3"], size=4)
    t.close(0, {1: np.array([50, 50, 50, 50])}, alpha=0.01)
    u = ShadowTracker("1")
    u.restore(orjson.loads(orjson.dumps(t.snapshot())))
    assert {k: v.tolist() for k, v in u.open[3600].items()} == {(2, "3"): [0, 1, 0, 0]}
    assert u.compared == t.compared and u.verdicts == t.verdicts and list(u.recent) == list(t.recent)


def test_a_verdict_does_not_replace_the_breaker_command_on_the_compacted_topic() -> None:
    cmd = Command.model_validate({"command_id": "c", "model": "fraud", "action": "circuit_break", "issued_at": 0,
                                  "expires_at": None, "reason": {"alert_id": "a", "fingerprint": "f",
                                                                 "signal": "prediction", "summary": "s"}})
    assert cmd.record_key() == "fraud"
    assert cmd.model_copy(update={"action": "promote", "model_version": "2"}).record_key() == "fraud@2"


def test_a_verdict_counts_only_its_own_models_shadow_alerts() -> None:
    """Two models shadow a challenger of the same version name: one differs, the other does not."""
    sc = ShadowConfig(champion="3.1.0", verdict_after=24, publish_verdict=True)
    cfg = Config(models={m: ModelConfig(segment_by=["region"], shadow=sc) for m in ("fraud", "churn")})
    common = {"weeks": 3, "end_ms": END, "rate": 150, "segments": SEGS, "challenger": "3.2.0"}
    raw = [(e["ts"], orjson.dumps(e)) for e in simulate(Scenario(model="fraud", challenger_shift=0.15, **common), seed=3)]  # type: ignore[arg-type]
    raw += [(e["ts"], orjson.dumps(e)) for e in simulate(Scenario(model="churn", **common), seed=4)]  # type: ignore[arg-type]
    raw.sort(key=lambda t: t[0])  # type: ignore[arg-type, return-value]
    out = feed(Engine(cfg), [r for _ts, r in raw])
    verdicts = sorted((c.model, c.action) for c in out.commands if c.action in ("promote", "reject"))
    assert verdicts == [("churn", "promote"), ("fraud", "reject")]
