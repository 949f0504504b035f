"""The breaker's lifecycle on the real broker (issue 14): break on evidence, restore on evidence.

Three weeks of history, then one segment's predictions turn null: the service breaks the model from
inside the open window. Its server scores in the dark (``served: false``); once those predictions are
good again, clean windows close and ``restore`` follows, and no clean window breaks it again.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.contract import Alert, Command
from stream.series.tables import segment_key
from stream.simulate import HOUR_MS, Scenario, simulate
from stream.topics import create_topic, produce, read_topic

from .test_kafka_faults import config, log_tail, start

pytestmark = pytest.mark.kafka

BROKEN = {"country": "US", "channel": "web"}


def test_null_predictions_break_the_model_and_dark_scoring_restores_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"breaker-{run}.predictions"
    create_topic(kafka_bootstrap, topic, partitions=2)
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS - 2 * HOUR_MS
    broken_at = end - 10 * HOUR_MS + 25 * 60_000  # 25 minutes into a window; hours of dark scoring after
    fixed_at = broken_at + 50 * 60_000
    events = []
    for e in simulate(Scenario(weeks=3, end_ms=end, rate=60), seed=11):
        if e["segment"] == BROKEN and int(e["ts"]) >= broken_at:  # type: ignore[call-overload]
            e = {**e, "served": False} if int(e["ts"]) >= fixed_at else {**e, "prediction": None}  # type: ignore[call-overload]
        events.append((f"fraud|{segment_key(e['segment'])}".encode(), orjson.dumps(e)))  # type: ignore[arg-type]
    produce(kafka_bootstrap, topic, events)

    name = f"breaker-{run}"
    proc = start(config(tmp_path, name, kafka_bootstrap, topic), idle_exit=8)
    assert proc.wait(timeout=600) == 0, log_tail(proc)

    commands = [Command.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{name}.control")]  # type: ignore[misc]
    alerts = [Alert.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{name}.alerts")]  # type: ignore[misc]
    actions = [(c.action, c.issued_at) for c in commands]
    assert [a for a, _t in actions] == ["circuit_break", "restore"], actions
    cause = next(a for a in alerts if a.alert_id == commands[0].reason.alert_id and a.status == "firing")
    assert cause.test == "invalid" and cause.segment == BROKEN and cause.severity == "critical"
    assert broken_at < commands[0].issued_at < broken_at + 30 * 60_000  # at one event a minute: a few dozen at most
    assert commands[0].issued_at < broken_at - broken_at % HOUR_MS + HOUR_MS
    # Restored on the evidence of windows scored in the dark, not by a timer (the break lasts 24 h).
    assert commands[1].issued_at >= fixed_at + 3 * HOUR_MS  # three clean windows after the fix
    assert commands[1].expires_at is None and commands[0].expires_at is not None
    assert commands[1].issued_at < commands[0].expires_at
    dead = [orjson.loads(v) for _k, v in read_topic(kafka_bootstrap, f"{name}.dlq")]  # type: ignore[misc]
    assert dead and all(d["prediction"] is None and d["segment"] == BROKEN for d in dead)  # every null kept
