"""The two stages on the real broker (issue 13): one decision per model across partitions.

Input keyed by model|segment over several partitions; the service's series tasks report each
closed window to the internal verdicts topic, and the one model task decides. The service must
decide as ``driftline replay --topic`` does over the same topic (the same two stages in one
process), and the global breaker cap must hold across partitions.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.contract import Alert, Command
from stream.series.tables import segment_key
from stream.simulate import HOUR_MS, Drift, Scenario
from stream.topics import create_topic, produce, read_topic

from .test_kafka_faults import config, fresh_input, scenario_events, transitions

pytestmark = pytest.mark.kafka


def _replay(bootstrap: str, topic: str, cfg_path: Path) -> tuple[list[Alert], list[Command]]:
    from stream.config import load_config
    from stream.replay import replay_kafka

    alerts, commands = io.BytesIO(), io.BytesIO()
    replay_kafka(bootstrap, topic, None, load_config(cfg_path), alerts_out=alerts, commands_out=commands)
    return ([Alert.model_validate_json(line) for line in alerts.getvalue().splitlines()],
            [Command.model_validate_json(line) for line in commands.getvalue().splitlines()])


def test_the_service_decides_as_a_replay_of_its_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    from stream.config import load_config
    from stream.service import Service

    segs = tuple({"country": c, "channel": ch} for c in ("US", "DE", "BR", "FR") for ch in ("web", "app"))
    run_id, topic, _total = fresh_input(kafka_bootstrap, "stages", 6, 5, 25,
                                        [(1, 50, "shift", 1.5), (2, 50, "shift", 1.5), (5, 50, "shift", 1.5),
                                         (6, 20, "volume", 0.2)], segments=segs)
    name = f"stages-{run_id}"
    path = config(tmp_path, name, kafka_bootstrap, topic)
    path.write_text(path.read_text().replace("[metrics]", "[defaults]\ngroup_min_segments = 3\n\n[metrics]"))
    Service(load_config(path), commit_interval=0.5).run(idle_exit=6)
    got_alerts, got_commands = transitions(kafka_bootstrap, name)
    assert got_alerts and got_commands
    assert len(set(got_alerts)) == len(got_alerts) and len(set(got_commands)) == len(got_commands)

    alerts, commands = _replay(kafka_bootstrap, topic, path)
    # The replay closes the windows still open at the end of the topic; the service does not.
    last = max(w for *_x, w in got_alerts)
    want_alerts = [(a.alert_id, a.status, a.notify_reason, a.window_start) for a in alerts if a.window_start <= last]
    assert sorted(got_alerts) == sorted(want_alerts)
    decided = {c.command_id for c in commands if c.issued_at <= last + HOUR_MS}
    assert set(got_commands) == decided
    assert len({segment_key(a.segment) for a in alerts if a.signal == "prediction"}) >= 3  # several partitions' series


def test_at_most_max_open_breakers_across_the_whole_service(kafka_bootstrap: str, tmp_path: Path) -> None:
    from stream.config import load_config
    from stream.service import Service

    run = uuid.uuid4().hex[:8]
    topic = f"breakers-{run}.predictions"
    create_topic(kafka_bootstrap, topic, partitions=5)
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    events: list[tuple[int, bytes, bytes]] = []
    for i in range(5):
        sc = Scenario(model="fraud", weeks=5, end_ms=end, rate=30, segments=({"country": f"C{i}", "channel": "web"},),
                      drifts=(Drift(0, end - (30 - 2 * i) * HOUR_MS, "shift", 1.5),))
        events += [(orjson.loads(v)["ts"], k.replace(b"fraud|", f"m{i}|".encode()),
                    v.replace(b'"model":"fraud"', f'"model":"m{i}"'.encode())) for k, v in scenario_events(sc, seed=30 + i)]
    events.sort(key=lambda t: t[0])
    produce(kafka_bootstrap, topic, [(k, v) for _ts, k, v in events])
    name = f"breakers-{run}"
    path = config(tmp_path, name, kafka_bootstrap, topic)
    text = path.read_text().replace("[models.fraud]", "[defaults]\nmax_open_breakers = 2\n\n[models.fraud]")
    text += "".join(f'\n[models.m{i}]\naction = "circuit_break"\nsegment_by = ["country", "channel"]\n' for i in range(5))
    path.write_text(text)
    Service(load_config(path), commit_interval=0.5).run(idle_exit=6)

    control = [Command.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{name}.control")]  # type: ignore[misc]
    broken: set[str] = set()
    peak = 0
    for c in control:  # in the order published (one partition)
        if c.action == "circuit_break":
            broken.add(c.model)
        elif c.action == "restore":
            broken.discard(c.model)
        peak = max(peak, len(broken))
    assert {c.model for c in control if c.action == "circuit_break"} and peak <= 2
    assert peak == 2
