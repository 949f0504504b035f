"""No record can stop the service (issue 12), on the real broker.

A topic of good events (four weeks, one drift) with hostile records mixed in: the poison pills that
once stopped ``driftline run`` (event times beyond int64 or any calendar, extreme values), and
records that trip a bug planted in the engine (so that the guard itself is exercised: the engine has
no known record that makes it raise). The service must never exit, commit every offset, dead-letter
each hostile record with its reason and original bytes, and publish exactly the alerts and commands
of a run over the good events alone.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.simulate import HOUR_MS, Drift, Scenario
from stream.topics import create_topic, produce, read_topic

from .test_engine import BAD_INPUT
from .test_guard import POISON, planted_bug  # noqa: F401 - the fixture, used by name
from .test_kafka_faults import assert_same_output, config, scenario_events, transitions

pytestmark = pytest.mark.kafka

CRASH_KINDS = ("float timestamp beyond int64", "timestamp 1e308", "negative timestamp beyond int64",
               "timestamp in the year -29719", "timestamp in seconds", "timestamp in microseconds",
               "RFC 3339 before year 1 in UTC", "RFC 3339 in the year 9999", "prediction that overflows a float",
               "NaN prediction", "malformed JSON", "not UTF-8")


def test_hostile_records_are_dead_lettered_and_the_alerts_are_those_of_the_good_events(
        kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from stream.config import load_config
    from stream.service import Service

    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    sc = Scenario(weeks=4, end_ms=end, rate=30, drifts=(Drift(1, end - 40 * HOUR_MS, "shift", 1.5),))
    good = scenario_events(sc, seed=11)
    crash = [(raw, reason) for name, raw, reason in BAD_INPUT if name in CRASH_KINDS]
    assert len(crash) == len(CRASH_KINDS)
    hostile: list[tuple[bytes, bytes, str]] = []  # (key, value, reason), in the order they are mixed in
    step = len(good) // (len(crash) + 6)
    for k, (raw, reason) in enumerate(crash):
        hostile.append((good[(k + 1) * step][0], raw, reason))
    for k in range(6):  # after the first few thousand events, when the bins are learned
        key, value = good[(len(crash) + 1 + k) * step - 7]
        e = orjson.loads(value)
        hostile.append((key, orjson.dumps({**e, "event_id": f"poison-{k}", "prediction": POISON}), "engine_error"))
    mixed = list(good)
    for k, (key, value, _reason) in enumerate(hostile):
        mixed.insert((k + 1) * step + k, (key, value))

    run = uuid.uuid4().hex[:8]
    clean_topic, hostile_topic = f"poison-{run}.clean", f"poison-{run}.hostile"
    for topic, records in ((clean_topic, good), (hostile_topic, mixed)):
        create_topic(kafka_bootstrap, topic, partitions=2)
        produce(kafka_bootstrap, topic, records)

    ref = f"ref-{run}"
    Service(load_config(config(tmp_path, ref, kafka_bootstrap, clean_topic)), commit_interval=0.5).run(idle_exit=4)
    want_alerts, want_commands = transitions(kafka_bootstrap, ref)
    assert want_alerts and want_commands

    request.getfixturevalue("planted_bug")  # only now: the reference run above is without the bug
    name = f"hostile-{run}"
    service = Service(load_config(config(tmp_path, name, kafka_bootstrap, hostile_topic)), commit_interval=0.5)
    summary = service.run(idle_exit=4)

    assert (summary.consumed, summary.processed, summary.dead_lettered) == (len(mixed), len(good), len(hostile))
    assert_same_output(kafka_bootstrap, name, hostile_topic, 2, want_alerts, want_commands)  # and lag 0
    dlq = read_topic(kafka_bootstrap, f"{name}.dlq", with_headers=True)
    got = sorted((v, h["driftline.reason"].decode()) for _k, v, h in dlq)  # type: ignore[misc]
    assert got == sorted((value, reason) for _key, value, reason in hostile)
    poisoned = [h for _k, v, h in dlq if h["driftline.reason"] == b"engine_error"]  # type: ignore[misc]
    assert all(b"ZeroDivisionError: planted bug" in h["driftline.detail"] for h in poisoned)
    assert service.metrics.engine_errors._value.get() == 6
    assert service.metrics.batches_failed._value.get() >= 1
    assert service.healthy()[0]
