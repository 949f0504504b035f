"""The guard: a batch that makes the engine raise costs its culprits, never the run (no broker).

The engine has no known record that makes it raise (each one found got its own validation), so the
tests plant a bug: ``NumericSpec.clip`` raises on one prediction value, half-way through ingest
(after routing made series and noted ids), as a real bug would.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from stream.config import Config, Defaults, ModelConfig
from stream.decode import Record
from stream.engine import Engine, Output
from stream.guard import REASON, EngineFailure, Guard, isolate
from stream.replay import replay_batches
from stream.simulate import HOUR_MS, Drift, Scenario, simulate
from stream.sketch import NumericSpec

from .test_engine import END

POISON = 0.42424242  # the planted bug's trigger (the simulator rounds to 4 decimals: no event has it)


@pytest.fixture
def planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    real = NumericSpec.clip

    def clip(self: NumericSpec, values):  # type: ignore[no-untyped-def]
        if (values == POISON).any():
            raise ZeroDivisionError("planted bug")
        return real(self, values)

    monkeypatch.setattr(NumericSpec, "clip", clip)


def _config(native: bool = True) -> Config:
    return Config(models={"fraud": ModelConfig(segment_by=["country", "channel"], action="circuit_break")},
                  defaults=Defaults(native_decoder=native))


def _stream() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Five weeks with a drift, and the same with poison records and validation's crash kinds mixed in."""
    sc = Scenario(weeks=5, end_ms=END, rate=30, drifts=(Drift(1, END - 40 * HOUR_MS, "shift", 1.5),))
    good = [orjson.dumps(e) for e in simulate(sc, seed=4)]
    poison = []
    for k, i in enumerate(range(5000, len(good), len(good) // 9)):
        e = orjson.loads(good[i])
        poison.append(orjson.dumps({**e, "event_id": f"poison-{k}", "prediction": POISON}))
    mixed = list(good)
    for k, p in enumerate(poison):
        mixed.insert(5000 + k * (len(good) // 9) + k, p)
    return good, mixed, poison


def _batches(raw: list[bytes], chunk: int = 3000) -> Iterator[list[Record]]:
    for i in range(0, len(raw), chunk):
        yield [Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]


def _alerts(out: list[object]) -> list[tuple[str, str, str, int, float]]:
    return [(a.alert_id, a.status, a.notify_reason, a.window_start, round(a.score, 9)) for a in out]  # type: ignore[attr-defined]


@pytest.mark.parametrize("keep_bytes", [1, 1 << 40], ids=["checkpoint-every-batch", "checkpoint-once"])
def test_replay_dead_letters_the_culprits_and_alerts_as_without_them(planted_bug: None, keep_bytes: int) -> None:
    good, mixed, poison = _stream()
    want_alerts: list[object] = []
    want = replay_batches(_batches(good), _config(), on_alert=want_alerts.append)
    assert want.alerts and want.commands

    engine = Engine(_config())
    guard = Guard(engine, keep_bytes=keep_bytes, overhead=1e-9 if keep_bytes > 1 else 0.05)
    out = Output()
    for batch in _batches(mixed):
        out.extend(guard.process(batch))
    out.extend(guard.engine.finish())
    assert guard.failures == len(poison)
    assert _alerts(out.alerts) == _alerts(want_alerts)
    dead = [(d.reason, d.record.value) for d in out.dead_letters]
    assert dead == [(REASON, p) for p in poison]
    assert all("ZeroDivisionError: planted bug" in d.detail and "in clip" in d.detail for d in out.dead_letters)
    s = guard.engine.stats
    assert (s.consumed, s.processed, s.dead_lettered) == (len(mixed), len(good), len(poison))
    assert guard.engine.metrics.engine_errors._value.get() == len(poison)


def test_replay_command_runs_the_guard(planted_bug: None) -> None:
    good, mixed, poison = _stream()
    want_alerts: list[object] = []
    replay_batches(_batches(good), _config(), on_alert=want_alerts.append)
    got_alerts: list[object] = []
    result = replay_batches(_batches(mixed), _config(), on_alert=got_alerts.append)
    assert _alerts(got_alerts) == _alerts(want_alerts)
    assert result.by_reason == {REASON: len(poison)} and result.events == len(mixed)


@pytest.mark.parametrize("native", [True, False])
def test_isolate_finds_every_culprit_of_a_batch_on_copies(planted_bug: None, native: bool) -> None:
    """Several culprits in one batch, on both decode paths and with a clock: the real engine ends as
    if the batch had come without them."""
    good, _mixed, _poison = _stream()
    head, batch = good[:6000], good[6000:9000]
    bad_at = [3, 1500, 1501, 2999]
    hostile = list(batch)
    for k, i in enumerate(bad_at):
        e = orjson.loads(hostile[i])
        hostile[i] = orjson.dumps({**e, "event_id": f"bad-{k}", "prediction": POISON})
    now = orjson.loads(batch[-1])["ts"] / 1000
    clean, guarded = Engine(_config(native), clock=lambda: now), Engine(_config(native), clock=lambda: now)
    for e in (clean, guarded):
        for b in _batches(head):
            e.process(b)
    want = clean.process([Record(r, None, "in", 0, j) for j, r in enumerate(batch) if j not in bad_at])
    recs = [Record(r, None, "in", 0, j) for j, r in enumerate(hostile)]
    with pytest.raises(ZeroDivisionError):
        _raises(guarded, recs)
    got = isolate(guarded, recs)
    assert [d.record.offset for d in got.dead_letters if d.reason == REASON] == bad_at
    assert _alerts(got.alerts) == _alerts(want.alerts)
    from stream.state import snapshot

    def comparable(e: Engine) -> bytes:
        snap = snapshot(e)
        snap["stats"] = None
        for m in snap["models"].values():
            m["store"]["gen"] = None  # each store's own random generation
        return orjson.dumps(snap, option=orjson.OPT_SERIALIZE_NUMPY)

    assert comparable(guarded) == comparable(clean)
    assert guarded.stats.consumed == clean.stats.consumed + len(bad_at)
    assert guarded.clock is not None and guarded.clock() == now


def _raises(engine: Engine, recs: list[Record]) -> None:
    """The batch as it is does make the engine raise (on a copy, so that ``engine`` stays whole)."""
    from stream.state import dumps, loads

    loads(engine.config, dumps(engine)).process(recs)


def test_a_failure_no_record_causes_stops_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(_config())
    monkeypatch.setattr(Engine, "_close_due", lambda self, out, wm: 1 / 0)
    rec = Record(orjson.dumps({"event_id": "a", "model": "fraud", "ts": END, "prediction": 0.5}), None, "in", 0, 0)
    with pytest.raises(EngineFailure, match="no record at all"):
        isolate(engine, [rec])


def test_a_bug_at_a_window_close_stops_rather_than_blame_the_records_that_close_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record that moves the watermark past the window fails: that is no few bad records, and
    dead-lettering them (batch after batch) would hide the bug while losing data."""
    good, _mixed, _poison = _stream()
    engine = Engine(_config())
    for b in _batches(good[:6000]):
        engine.process(b)
    real = Engine._close
    broken = min(engine.models["fraud"].windows._open)

    def close(self: Engine, m, ws, out):  # type: ignore[no-untyped-def]
        if ws == broken:
            raise RuntimeError("planted close-time bug")
        return real(self, m, ws, out)

    monkeypatch.setattr(Engine, "_close", close)
    with pytest.raises(EngineFailure, match="more than 16 records"):
        isolate(engine, list(_batches(good[6000:9000], chunk=3000))[0])


def test_data_resuming_after_an_outage_at_the_end_of_a_batch_is_believed() -> None:
    """Without a clock: 995 events, then the data comes back 14 days later for the batch's last 5."""
    start = END - 30 * 86_400_000
    raw = [orjson.dumps({"event_id": f"e{i}", "model": "fraud", "ts": start + i * 60_000, "prediction": 0.5})
           for i in range(995)]
    raw += [orjson.dumps({"event_id": f"r{i}", "model": "fraud", "ts": start + 15 * 86_400_000 + i * 60_000,
                          "prediction": 0.5}) for i in range(5)]
    out = Engine(_config()).process([Record(r, None, "in", 0, i) for i, r in enumerate(raw)])
    assert out.dead_letters == []
