"""Operators' commands to driftline itself (issue 15, item 4), on the engine: timelines of four
weeks of a healthy model whose predictions shift at ``DRIFT`` on every segment, with an operator
stepping in at a given time."""

from __future__ import annotations

import orjson

from stream.act import sign
from stream.config import CommandsConfig, Config, ModelConfig
from stream.contract import Operation
from stream.decode import Record
from stream.engine import Engine, Output
from stream.simulate import HOUR_MS, Drift, Scenario, simulate

END = 1795716000000  # 2026-11-26 18:00 UTC
DRIFT = END - 40 * HOUR_MS + 20 * 60_000


def timeline(at: int, op: Operation, key: bytes | None = None, engine: list[Engine] | None = None) -> tuple[Output, Output]:
    """The output before the operation, and from it on (its own included); the engine into ``engine``."""
    drifts = tuple(Drift(segment=s, start_ms=DRIFT, shift_abs=0.25) for s in range(4))
    raw = [orjson.dumps(e) for e in simulate(Scenario(weeks=4, end_ms=END, rate=60, drifts=drifts), seed=5)]
    ts = [int(orjson.loads(r)["ts"]) for r in raw]
    cfg = Config(models={"fraud": ModelConfig(action="circuit_break")},
                 commands=CommandsConfig(signing_key=key.decode()) if key else CommandsConfig())  # type: ignore[arg-type]
    eng = Engine(cfg)
    if engine is not None:
        engine.append(eng)
    before, after = Output(), Output()
    cut = next(i for i, t in enumerate(ts) if t >= at)
    for lo, hi, out in ((0, cut, before), (cut, len(raw), after)):
        for i in range(lo, hi, 4000):
            out.extend(eng.process([Record(r, None, "in", 0, j) for j, r in enumerate(raw[i:min(i + 4000, hi)], i)]))
        if out is before:
            after.extend(eng.operate(op))
            if engine is not None:  # what the accept left: the series' alert states gone, nothing held aside
                assert not [k for k in eng.alert_states if k[1] == "prediction"] and not eng.models["fraud"].store.held
    after.extend(eng.finish())
    return before, after


def accept(at: int, **kw: object) -> Operation:
    return Operation(command_id=f"o-{at}", model="fraud", action="accept", issued_at=at, by="ana", **kw)  # type: ignore[arg-type]


def test_an_accepted_drift_resolves_restores_the_breaker_and_stays_quiet() -> None:
    at = DRIFT + 6 * HOUR_MS
    before, after = timeline(at, accept(at, note="new pricing"), engine=[])
    firing = [a for a in before.alerts if a.status == "firing" and a.signal == "prediction"]
    assert firing and [c.action for c in before.commands][:1] == ["circuit_break"]
    accepted = [a for a in after.alerts if a.notify_reason == "accepted"]
    assert {a.alert_id for a in accepted} == {a.alert_id for a in firing}
    assert all(a.status == "resolved" and "accepted as the new normal" in a.summary for a in accepted)
    restore = after.commands[0]
    assert restore.action == "restore" and restore.reason.signal == "operator" and "by ana (new pricing)" in restore.reason.summary
    # The same world goes on for a day and a half: the rebased series do not alert on it again.
    assert [a for a in after.alerts if a.status == "firing"] == []
    assert [c.action for c in after.commands] == ["restore"]


def test_an_accept_of_other_segments_leaves_the_drifting_ones_alone() -> None:
    at = DRIFT + 6 * HOUR_MS
    _before, after = timeline(at, accept(at, segments=[{"country": "FR", "channel": "web"}]))
    assert [a for a in after.alerts if a.notify_reason == "accepted"] == []
    assert "restore" not in [c.action for c in after.commands]
    assert any(a.status == "firing" for a in after.alerts)  # its repeats go on


def test_a_silence_marks_the_alerts_and_nothing_acts_until_it_ends() -> None:
    at = DRIFT - HOUR_MS
    silence = Operation(command_id="o-s", model="fraud", action="silence", duration_ms=12 * HOUR_MS, issued_at=at)
    _before, after = timeline(at, silence)
    during = [a for a in after.alerts if a.window_end < at + 12 * HOUR_MS]
    assert during and all(a.silenced_until == at + 12 * HOUR_MS for a in during)
    assert all(c.issued_at >= at + 12 * HOUR_MS for c in after.commands)
    assert "circuit_break" in [c.action for c in after.commands]  # the next repeat after it acts
    assert all(a.silenced_until is None for a in after.alerts if a.window_end >= at + 12 * HOUR_MS)


def test_an_unsigned_or_old_operation_is_refused_when_a_key_is_configured() -> None:
    at = DRIFT + 6 * HOUR_MS
    _before, after = timeline(at, accept(at), key=b"k")
    assert [a for a in after.alerts if a.notify_reason == "accepted"] == [] and "restore" not in [c.action for c in after.commands]
    _before, after = timeline(at, sign(accept(at), b"k"), key=b"k")
    assert [c.action for c in after.commands][:1] == ["restore"]
