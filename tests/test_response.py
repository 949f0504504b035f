"""The response follows the cause (issue 15): a release that drifts is rolled back, a drift without a
release breaks the circuit and, once it lasts, asks for a retrain; a release that does not drift
gives nothing. Timelines: four weeks of version 3.1.0, then at ``ROLLOUT`` version 3.2.0 takes all
the traffic (or not), and the predictions shift there (or not)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.config import Config, ConfigError, Defaults, ModelConfig, ResponseConfig, load_config
from stream.contract import Command
from stream.decode import Record
from stream.engine import Engine, Output
from stream.simulate import HOUR_MS, Drift, Scenario, simulate

END = 1795716000000  # 2026-11-26 18:00 UTC
ROLLOUT = END - 30 * HOUR_MS + 20 * 60_000  # 12:20 UTC the day before, a third into a window
WINDOW = HOUR_MS


def run(release: bool, drift_at: int | None, end: int = END, weeks: int = 4, response: ResponseConfig | None = None,
        **defaults: object) -> Output:
    drifts = tuple(Drift(segment=s, start_ms=drift_at, shift_abs=0.25) for s in range(4)) if drift_at is not None else ()
    raw = []
    for e in simulate(Scenario(weeks=weeks, end_ms=end, rate=60, drifts=drifts), seed=5):
        if release and int(e["ts"]) >= ROLLOUT:  # type: ignore[call-overload]
            e = {**e, "model_version": "3.2.0"}
        raw.append(orjson.dumps(e))
    engine = Engine(Config(models={"fraud": ModelConfig(action="circuit_break", response=response)},
                           defaults=Defaults(**defaults)))  # type: ignore[arg-type]
    out = Output()
    for i in range(0, len(raw), 4000):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + 4000])]))
    out.extend(engine.finish())
    return out


def actions(out: Output) -> list[str]:
    return [c.action for c in out.commands]


def test_a_release_that_drifts_is_rolled_back_to_the_version_before_it() -> None:
    out = run(release=True, drift_at=ROLLOUT)
    rollbacks = [c for c in out.commands if c.action == "rollback"]
    assert len(rollbacks) == 1, actions(out)
    cmd: Command = rollbacks[0]
    assert cmd.model_version == "3.2.0" and cmd.target_version == "3.1.0"
    assert cmd.release is not None and cmd.release.version == "3.2.0" and cmd.release.share > 0.5
    assert cmd.release.first_traffic == ROLLOUT - ROLLOUT % WINDOW
    assert ROLLOUT <= cmd.issued_at <= ROLLOUT - ROLLOUT % WINDOW + 3 * WINDOW  # within 3 windows of the rollout
    assert cmd.expires_at is None and cmd.sequence is not None
    assert "circuit_break" not in actions(out)[:actions(out).index("rollback")]  # rolled back, not taken out first
    # Given two windows to take effect; here the server never rolled back, the drift goes on: it breaks.
    breaks = [c for c in out.commands if c.action == "circuit_break"]
    assert breaks and breaks[0].issued_at >= cmd.issued_at + 2 * WINDOW
    assert cmd.record_key() == "fraud#rollback"


def test_a_drift_without_a_release_breaks_the_circuit_and_never_rolls_back() -> None:
    out = run(release=False, drift_at=ROLLOUT)
    assert actions(out) and actions(out)[0] == "circuit_break"
    assert "rollback" not in actions(out)


def test_a_release_that_does_not_drift_gives_nothing() -> None:
    out = run(release=True, drift_at=None)
    assert out.commands == []
    assert [a for a in out.alerts if a.signal == "prediction"] == []


def test_a_drift_that_lasts_asks_once_for_a_retrain_with_its_window() -> None:
    start = END - 3 * 24 * HOUR_MS + 20 * 60_000
    out = run(release=False, drift_at=start, weeks=5)
    retrains = [c for c in out.commands if c.action == "retrain"]
    assert len(retrains) == 1, actions(out)
    tw = retrains[0].training_window
    assert tw is not None
    cause = next(a for a in out.alerts if a.alert_id == retrains[0].reason.alert_id and a.notify_reason == "new")
    assert tw.start == cause.starts_at and start - start % WINDOW <= tw.start < start + 3 * WINDOW
    assert tw.end - tw.start >= 2 * 24 * HOUR_MS  # retrain_after: 2 days by default
    assert tw.segments  # the drifted segments, named
    assert actions(out).index("circuit_break") < actions(out).index("retrain")


# The response policy per model (issue 15, item 3): which steps each signal may take, in the order
# they escalate.

def test_a_model_without_rollback_in_its_steps_breaks_the_circuit_on_a_bad_release() -> None:
    out = run(release=True, drift_at=ROLLOUT, response=ResponseConfig(prediction=["circuit_break"]))
    assert actions(out) and actions(out)[0] == "circuit_break"
    assert "rollback" not in actions(out)


def test_a_model_that_only_rolls_back_never_breaks_and_never_asks_for_a_retrain() -> None:
    out = run(release=True, drift_at=ROLLOUT, response=ResponseConfig(prediction=["rollback"]))
    assert actions(out) == ["rollback"]  # the drift outlives it: nothing more, the alert still pages


def test_retrain_alone_asks_for_a_retrain_and_takes_nothing_out_of_service() -> None:
    start = END - 3 * 24 * HOUR_MS + 20 * 60_000
    out = run(release=False, drift_at=start, weeks=5, response=ResponseConfig(prediction=["retrain"]))
    assert actions(out) == ["retrain"]


def test_the_steps_of_a_signal_are_checked_at_start_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "driftline.toml"
    cfg.write_text('[models.fraud]\naction = "circuit_break"\n[models.fraud.response]\n'
                   'prediction = ["circuit_break", "rollback"]\n')
    with pytest.raises(ConfigError, match=r"models\.fraud\.response\.prediction: steps escalate in the order"):
        load_config(cfg)
    cfg.write_text('[defaults.response]\nvolume = ["page"]\n')
    with pytest.raises(ConfigError, match=r"defaults\.response\.volume\.0"):
        load_config(cfg)
    cfg.write_text('[defaults.response]\nvolume = []\n[models.fraud]\nsegment_by = ["country"]\n')
    assert load_config(cfg).resolved("fraud").response.volume == []  # the defaults' policy, where a model has none


# A canary: the release serves a tenth of the traffic, compared with the version before it in the
# same windows and series (issue 15, item 1): no calendar baseline needed, and a tenth of the
# traffic moves the series' own tests ten times less.

CANARY = ROLLOUT  # 12:20 UTC: a canary needs 100 events per segment and window to be compared


def canary(shift: float) -> Output:
    raw = []
    for e in simulate(Scenario(weeks=1, end_ms=END, rate=1500), seed=9):
        if int(e["ts"]) >= CANARY and int(str(e["event_id"]).encode().hex(), 16) % 10 == 0:  # type: ignore[call-overload]
            e = {**e, "model_version": "3.2.0", "prediction": min(1.0, float(e["prediction"]) + shift)}  # type: ignore[arg-type]
        else:
            e = {**e, "model_version": "3.1.0"}
        raw.append(orjson.dumps(e))
    engine = Engine(Config(models={"fraud": ModelConfig(action="circuit_break")}))
    out = Output()
    for i in range(0, len(raw), 20000):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + 20000])]))
    out.extend(engine.finish())
    return out


def test_a_canary_that_predicts_differently_from_the_version_before_it_is_rolled_back() -> None:
    out = canary(0.15)
    assert actions(out)[:1] == ["rollback"] and actions(out).count("rollback") == 1
    cmd = out.commands[0]
    assert cmd.model_version == "3.2.0" and cmd.target_version == "3.1.0" and cmd.reason.signal == "shadow"
    assert cmd.release is not None and cmd.release.share is not None and 0.05 < cmd.release.share < 0.2
    assert CANARY <= cmd.issued_at <= CANARY - CANARY % WINDOW + 3 * WINDOW
    cause = next(a for a in out.alerts if a.alert_id == cmd.reason.alert_id)
    assert "release 3.2.0 predicts differently from 3.1.0, the version serving before it" in cause.summary


def test_a_canary_that_predicts_as_the_version_before_it_gives_nothing() -> None:
    out = canary(0.0)
    assert out.commands == [] and [a for a in out.alerts if a.signal == "shadow"] == []
