"""The two stages on the real broker (issue 13): one decision per model across partitions.

Input keyed by model|segment over several partitions; the service's series tasks report each
closed window to the internal verdicts topic, and the one model task decides. The service must
decide as ``driftline replay --topic`` does over the same topic (the same two stages in one
process), and the global breaker cap must hold across partitions.
"""

from __future__ import annotations

import io
import re
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.contract import Alert, Command
from stream.series.tables import segment_key
from stream.simulate import HOUR_MS, Drift, Scenario
from stream.topics import create_topic, produce, read_topic

from .test_kafka_faults import (
    LOGS,
    config,
    free_port,
    fresh_input,
    lag,
    log_tail,
    scenario_events,
    start,
    transitions,
    wait_ready,
)

pytestmark = pytest.mark.kafka


def _replay(bootstrap: str, topic: str, cfg_path: Path) -> tuple[list[Alert], list[Command]]:
    from stream.config import load_config
    from stream.replay import replay_kafka

    alerts, commands = io.BytesIO(), io.BytesIO()
    replay_kafka(bootstrap, topic, None, load_config(cfg_path), alerts_out=alerts, commands_out=commands)
    return ([Alert.model_validate_json(line) for line in alerts.getvalue().splitlines()],
            [Command.model_validate_json(line) for line in commands.getvalue().splitlines()])


def _as_replayed(bootstrap: str, topic: str, cfg: Path, got_alerts: list[tuple[str, str, str, int]]
                 ) -> tuple[list[tuple[str, str, str, int]], set[str]]:
    """The transitions and command ids ``driftline replay --topic`` gives, up to the service's last window
    (the replay closes the windows still open at the end of the topic; the service does not)."""
    alerts, commands = _replay(bootstrap, topic, cfg)
    last = max(w for *_x, w in got_alerts)
    return ([(a.alert_id, a.status, a.notify_reason, a.window_start) for a in alerts if a.window_start <= last],
            {c.command_id for c in commands if c.issued_at <= last + HOUR_MS})


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
    service = Service(load_config(path), commit_interval=0.5)
    paused: list[int] = []  # partitions holding their first windows are paused until the parameters come
    service.run(idle_exit=6, on_batch=lambda _s: paused.append(len(service.series.paused)))
    assert max(paused) > 0  # partitions were paused, and resumed: the whole topic was read
    got_alerts, got_commands = transitions(kafka_bootstrap, name)
    assert got_alerts and got_commands
    assert len(set(got_alerts)) == len(got_alerts) and len(set(got_commands)) == len(got_commands)

    want_alerts, want_commands = _as_replayed(kafka_bootstrap, topic, path, got_alerts)
    assert sorted(got_alerts) == sorted(want_alerts)
    assert set(got_commands) == want_commands
    alerts, _c = _replay(kafka_bootstrap, topic, path)
    drifting = {segment_key(s) for a in alerts if a.signal == "prediction" for s in (a.segments or [a.segment])}
    assert len(drifting - {""}) >= 3  # several partitions' series (alone, or as members of a model-level alert)


RESTORED = re.compile(r"assigned partitions \[[^]]*\] \((\d+) restored from state")


def test_processes_joining_and_leaving_decide_as_a_replay(kafka_bootstrap: str, tmp_path: Path) -> None:
    """1, then 2, then 3 processes, then one leaves, while the input keeps coming: the replay's decisions.

    The input is produced in five parts in time order; each process joins (is ready, with partitions)
    before the next part is produced, so every join and the leave move partitions, with their
    state, in the middle of the stream, and the model task moves with its group's member.
    """
    run = uuid.uuid4().hex[:8]
    topic = f"join-{run}.predictions"
    create_topic(kafka_bootstrap, topic, partitions=6)
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    segs = tuple({"country": c, "channel": ch} for c in ("US", "DE", "BR", "FR") for ch in ("web", "app"))
    sc = Scenario(weeks=5, end_ms=end, rate=25, segments=segs,  # type: ignore[arg-type]
                  drifts=(Drift(1, end - 100 * HOUR_MS, "shift", 1.5), Drift(6, end - 20 * HOUR_MS, "volume", 0.2)))
    events = scenario_events(sc, seed=5)
    cuts = [0, *(int(len(events) * f) for f in (0.55, 0.7, 0.85, 0.93)), len(events)]
    parts = [events[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]

    name = f"join-{run}"
    base = config(tmp_path, name, kafka_bootstrap, topic).read_text()
    produced = produce(kafka_bootstrap, topic, parts[0])
    procs = []
    for i in range(3):  # each joins while parts i+1.. are still to come
        port = free_port()
        cfg = tmp_path / f"{name}-{i}.toml"
        cfg.write_text(base.replace(f'instance_id = "{name}-1"', f'instance_id = "{name}-{i}"')
                       .replace("port = 0", f"port = {port}"))
        procs.append(start(cfg, idle_exit=20 if i < 2 else None, log_level="INFO"))
        wait_ready(port, procs[-1])
        assert produced < len(events)
        produced += produce(kafka_bootstrap, topic, parts[i + 1])
    leaving = procs[2]
    leaving.send_signal(signal.SIGTERM)  # leaves while part 3 is being consumed and part 4 is still to come
    assert leaving.wait(timeout=60) == 0, log_tail(leaving)
    produced += produce(kafka_bootstrap, topic, parts[4])
    assert produced == len(events)
    for p in procs[:2]:
        assert p.wait(timeout=300) == 0, log_tail(p)
    # The joins took partitions that had state: it moved between processes mid-stream.
    for p in procs[1:]:
        restored = [int(n) for n in RESTORED.findall(LOGS[p.pid].read_text(errors="replace"))]
        assert restored and max(restored) > 0, log_tail(p)
    assert lag(kafka_bootstrap, f"{name}-group", topic, 6) == 0

    got_alerts, got_commands = transitions(kafka_bootstrap, name)
    assert got_alerts and got_commands
    assert len(set(got_alerts)) == len(got_alerts) and len(set(got_commands)) == len(got_commands)
    want_alerts, want_commands = _as_replayed(kafka_bootstrap, topic, tmp_path / f"{name}-0.toml", got_alerts)
    assert sorted(got_alerts) == sorted(want_alerts)
    assert set(got_commands) == want_commands


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
