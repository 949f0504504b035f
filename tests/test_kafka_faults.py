"""Fault injection against the real broker: kill -9 the service mid-stream, again and again.

Afterwards a read_committed reader of the alerts and control topics must see exactly what one
uninterrupted run over the same input produced: no duplicate transitions or command ids, none
missing, and the consumer group's committed offsets at the end of the input. The number of kills
is DRIFTLINE_FAULT_KILLS (default 5 here; `python bench/faults.py` runs 20).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream.contract import Alert, Command
from stream.engine import segment_key
from stream.simulate import HOUR_MS, Drift, Scenario, simulate
from stream.topics import create_topic, produce, read_topic

from .conftest import ROOT

pytestmark = pytest.mark.kafka


def config(tmp_path: Path, name: str, bootstrap: str, input_topic: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{name}-group"
input_topic = "{input_topic}"
alerts_topic = "{name}.alerts"
control_topic = "{name}.control"
dead_letter_topic = "{name}.dlq"
state_topic = "{name}.state"
batch_size = 2000
commit_interval = "500ms"
instance_id = "{name}-1"
session_timeout = "10s"

[metrics]
port = 0

[models.fraud]
action = "circuit_break"
segment_by = ["country", "channel"]
""")
    return p


def start(cfg: Path, idle_exit: float | None = None, log_level: str = "WARNING") -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "stream", "--log-level", log_level, "run", "--config", str(cfg)]
    if idle_exit is not None:
        args += ["--idle-exit", str(idle_exit)]
    # The log goes to a file: a pipe nobody reads until the end fills up and blocks the service.
    log = cfg.with_suffix(f".{len(LOGS)}.log")
    with log.open("wb") as f:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f)
    LOGS[proc.pid] = log
    return proc


LOGS: dict[int, Path] = {}


def log_tail(proc: subprocess.Popen[bytes]) -> str:
    """The end of a service's log, for assertion messages."""
    return LOGS[proc.pid].read_text(errors="replace")[-5000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "service exited before it was ready:\n" + log_tail(proc)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("service never became ready")


def windows_uncommitted(port: int) -> float:
    """The model stage's windows decided since its last commit, from a running service's /metrics (-1 if unread)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    for family in text_string_to_metric_families(text):
        if family.name == "driftline_model_windows_uncommitted":
            return float(family.samples[0].value)
    return -1.0


def transitions(bootstrap: str, name: str) -> tuple[list[tuple[str, str, str, int]], list[str]]:
    alerts = [Alert.model_validate_json(v) for _k, v in read_topic(bootstrap, f"{name}.alerts")]  # type: ignore[misc]
    commands = [Command.model_validate_json(v) for _k, v in read_topic(bootstrap, f"{name}.control")]  # type: ignore[misc]
    return ([(a.alert_id, a.status, a.notify_reason, a.window_start) for a in alerts], [c.command_id for c in commands])


def lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for attempt in range(5):  # the coordinator may be busy with a rebalance
            try:
                committed = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
                break
            except KafkaException:
                if attempt == 4:
                    raise
                time.sleep(2)
        total = 0
        for tp in committed:
            _low, high = c.get_watermark_offsets(tp, timeout=30)
            total += high - max(tp.offset, 0)
        return total
    finally:
        c.close()


def scenario_events(sc: Scenario, seed: int) -> list[tuple[bytes, bytes]]:
    """The scenario's events, keyed by model|segment as model servers key them."""
    return [(f"fraud|{segment_key(e['segment'])}".encode(), orjson.dumps(e)) for e in simulate(sc, seed=seed)]  # type: ignore[arg-type]


def fresh_input(bootstrap: str, prefix: str, partitions: int, seed: int, rate: float,
                drifts: list[tuple[int, int, str, float]], segments: tuple[dict[str, str], ...] | None = None,
                bad: tuple[int, bytes] | None = None) -> tuple[str, str, int]:
    """A new input topic with five simulated weeks ending now; drifts are (segment, hours before the
    end, kind, size); ``bad`` inserts one bad record at an index. Returns run id, topic, records."""
    run_id = uuid.uuid4().hex[:8]
    topic = f"{prefix}-{run_id}.predictions"
    create_topic(bootstrap, topic, partitions=partitions)
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    sc = Scenario(weeks=5, end_ms=end, rate=rate, **({"segments": segments} if segments else {}),  # type: ignore[arg-type]
                  drifts=tuple(Drift(seg, end - hours * HOUR_MS, kind, size) for seg, hours, kind, size in drifts))  # type: ignore[arg-type]
    events = scenario_events(sc, seed=seed)
    if bad is not None:
        events.insert(bad[0], (b"bad", bad[1]))
    return run_id, topic, produce(bootstrap, topic, events)


def assert_same_output(bootstrap: str, name: str, topic: str, partitions: int,
                       want_alerts: list[tuple[str, str, str, int]], want_commands: list[str]) -> None:
    """What a read_committed reader sees equals the reference run: no duplicates, none missing, lag 0."""
    got_alerts, got_commands = transitions(bootstrap, name)
    assert len(set(got_alerts)) == len(got_alerts), "duplicate alert transitions"
    assert len(set(got_commands)) == len(got_commands), "duplicate command ids"
    assert sorted(got_alerts) == sorted(want_alerts)
    assert sorted(got_commands) == sorted(want_commands)
    assert lag(bootstrap, f"{name}-group", topic, partitions) == 0


def test_kill_minus_nine_loses_and_doubles_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    kills = int(os.environ.get("DRIFTLINE_FAULT_KILLS", "5"))
    run_id, topic, total = fresh_input(kafka_bootstrap, "faults", 3, 21, 100, [(1, 60, "shift", 1.5), (3, 30, "volume", 0.2)],
                                       bad=(500, b"{broken json"))

    ref = f"ref-{run_id}"
    proc = start(config(tmp_path, ref, kafka_bootstrap, topic), idle_exit=5)
    assert proc.wait(timeout=300) == 0, log_tail(proc)
    want_alerts, want_commands = transitions(kafka_bootstrap, ref)
    assert want_alerts and want_commands

    faulty = f"kill-{run_id}"
    cfg = config(tmp_path, faulty, kafka_bootstrap, topic)
    rng = random.Random(7)
    lags, in_flight = [], []
    text = cfg.read_text()
    for k in range(kills):
        before = lag(kafka_bootstrap, f"{faulty}-group", topic, 3) if lags else total
        port = free_port()
        cfg.write_text(text.replace("port = 0", f"port = {port}"))
        proc = start(cfg)
        # Kill it at a random moment once it is working: its first commit moved the input offsets,
        # and (after the first kill: at the start of a stream the model stage waits for the shared
        # bin edges, then for the series stage's first windows) the model stage is deciding windows.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            behind = lag(kafka_bootstrap, f"{faulty}-group", topic, 3)
            if behind < before and (k == 0 or behind == 0 or windows_uncommitted(port) > 0):
                break
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 1.5))
        # What each stage had in hand just before the kill: input not yet committed (series stage),
        # windows decided and not yet committed (model stage). After the first kill, the kill waits
        # (a few seconds at most) for a moment when the model stage has decisions uncommitted:
        # right after a commit it has none.
        pending = windows_uncommitted(port)
        until = time.monotonic() + 3.0
        while k > 0 and pending <= 0 and time.monotonic() < until:
            time.sleep(0.02)
            pending = windows_uncommitted(port)
        in_flight.append(pending)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        lags.append(lag(kafka_bootstrap, f"{faulty}-group", topic, 3))
    print("lag after each kill:", lags, "of", total, "; model windows decided and uncommitted before it:", in_flight)
    # The kills must have hit a service in the middle of the stream, not an idle one, and with
    # work in flight in both stages.
    assert sum(1 for x in lags if 0 < x < total) >= min(2, kills), lags
    assert any(0 < x < total and w > 0 for x, w in zip(lags, in_flight, strict=True)), (lags, in_flight)
    proc = start(cfg, idle_exit=5)
    assert proc.wait(timeout=300) == 0, log_tail(proc)

    assert_same_output(kafka_bootstrap, faulty, topic, 3, want_alerts, want_commands)
    dlq = read_topic(kafka_bootstrap, f"{faulty}.dlq")
    assert [v for _k, v in dlq] == [b"{broken json"]  # type: ignore[misc]


def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """A private broker is stopped and started again under a running service."""
    from stream import broker

    state = tmp_path / "broker"
    info = broker.start(state, heap="384m")
    try:
        bootstrap = info.bootstrap
        run_id, topic, total = fresh_input(bootstrap, "restart", 3, 3, 100, [(2, 40, "shift", 1.5)])

        ref = f"ref-{run_id}"
        proc = start(config(tmp_path, ref, bootstrap, topic), idle_exit=5)
        assert proc.wait(timeout=300) == 0
        want_alerts, want_commands = transitions(bootstrap, ref)
        assert want_alerts

        name = f"restart-{run_id}"
        proc = start(config(tmp_path, name, bootstrap, topic), idle_exit=30)
        deadline = time.monotonic() + 120
        while lag(bootstrap, f"{name}-group", topic, 3) >= total and time.monotonic() < deadline:
            time.sleep(0.5)
        remaining = lag(bootstrap, f"{name}-group", topic, 3)
        broker.restart(state)
        assert proc.wait(timeout=300) == 0, log_tail(proc)
        assert 0 < remaining < total  # the restart hit the service mid-stream

        assert_same_output(bootstrap, name, topic, 3, want_alerts, want_commands)
    finally:
        broker.stop(state)


@pytest.fixture(scope="module")
def fenced_input(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int, list[tuple[str, str, str, int]], list[str], Path]:
    tmp_path = tmp_path_factory.mktemp("fenced")
    run_id, topic, total = fresh_input(kafka_bootstrap, "fenced", 3, 4, 100, [(2, 40, "shift", 1.5)])
    ref = f"ref-{run_id}"
    proc = start(config(tmp_path, ref, kafka_bootstrap, topic), idle_exit=5)
    assert proc.wait(timeout=300) == 0, log_tail(proc)
    want_alerts, want_commands = transitions(kafka_bootstrap, ref)
    assert want_alerts
    return topic, total, want_alerts, want_commands, tmp_path


@pytest.mark.parametrize("stage", ["input", "model"])
def test_a_consumer_fenced_by_its_own_static_identity_is_replaced_and_loses_nothing(
        kafka_bootstrap: str, fenced_input: tuple[str, int, list[tuple[str, str, str, int]], list[str], Path],
        stage: str) -> None:
    """A consumer that joins with the ``group.instance.id`` of the service's input (or model-stage)
    consumer fences it, as after a broker restart when the service's former self still holds its
    identity (a fatal error: it reads nothing ever again). The service replaces it, and its output
    still equals an uninterrupted run's."""
    topic, total, want_alerts, want_commands, tmp_path = fenced_input
    name = f"fenced-{stage}-{uuid.uuid4().hex[:8]}"
    proc = start(config(tmp_path, name, kafka_bootstrap, topic), idle_exit=20, log_level="INFO")
    deadline = time.monotonic() + 120
    while lag(kafka_bootstrap, f"{name}-group", topic, 3) >= total and time.monotonic() < deadline:
        time.sleep(0.3)
    group, member, read = ((f"{name}-group", f"{name}-1", topic) if stage == "input"
                           else (f"{name}-group.model", f"{name}-1.model", f"{name}-group.verdicts"))
    intruder = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "group.instance.id": member,
                         "session.timeout.ms": 10_000, "enable.auto.commit": False})
    intruder.subscribe([read])
    until = time.monotonic() + 3
    while time.monotonic() < until:
        intruder.poll(0.1)
    remaining = lag(kafka_bootstrap, f"{name}-group", topic, 3)
    intruder.close()
    assert proc.wait(timeout=300) == 0, log_tail(proc)
    assert 0 < remaining < total  # fenced mid-stream
    said = "input consumer failed for good" if stage == "input" else "verdicts consumer failed for good"
    assert said in LOGS[proc.pid].read_text(errors="replace")
    assert_same_output(kafka_bootstrap, name, topic, 3, want_alerts, want_commands)


@pytest.fixture(scope="module")
def txn_input(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int, list[tuple[str, str, str, int]], list[str], Path]:
    """One input topic and the output of one clean run over it, shared by the failure cases."""
    from stream.config import load_config
    from stream.service import Service

    tmp_path = tmp_path_factory.mktemp("txn")
    run_id, topic, total = fresh_input(kafka_bootstrap, "txn", 2, 5, 40, [(1, 50, "shift", 1.5)], bad=(300, b"\xff\xfe not utf-8"))
    ref = f"ref-{run_id}"
    Service(load_config(config(tmp_path, ref, kafka_bootstrap, topic)), commit_interval=0.3).run(idle_exit=4)
    want_alerts, want_commands = transitions(kafka_bootstrap, ref)
    assert want_alerts and want_commands
    return topic, total, want_alerts, want_commands, tmp_path


@pytest.mark.parametrize("kind", ["abortable", "fatal", "stuck"])
def test_failed_transactions_rewind_and_lose_nothing(
    kafka_bootstrap: str, txn_input: tuple[str, int, list[tuple[str, str, str, int]], list[str], Path], kind: str
) -> None:
    """Every second transaction (three in all) fails in a way librdkafka reports; the output still equals a clean run.

    The broker is real; only the failure is injected, at the point the client would raise it:
    an abortable error (abort, rewind), a fatal one (new producer, rewind everything) and a call
    that never returns (librdkafka#5456: abandon the producer).
    """
    from confluent_kafka import KafkaError

    from stream import publish
    from stream.config import load_config
    from stream.service import Service

    topic, total, want_alerts, want_commands, tmp_path = txn_input
    name = f"{kind}-{uuid.uuid4().hex[:8]}"
    service = Service(load_config(config(tmp_path, name, kafka_bootstrap, topic)), commit_interval=0.3)
    calls = {"n": 0, "failed": 0}
    real_commit = publish.Publisher.commit

    def flaky_commit(self: publish.Publisher, offsets: list[TopicPartition], meta: object, timeout: float = 20.0,
                     more: tuple[tuple[list[TopicPartition], object], ...] = ()) -> None:
        calls["n"] += 1
        if calls["n"] % 2 == 0 and calls["failed"] < 3:
            calls["failed"] += 1
            if kind == "abortable":
                raise KafkaException(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))
            if kind == "fatal":
                raise KafkaException(KafkaError(KafkaError._FENCED, "injected", fatal=True))
            self.stuck = True
            raise publish.ProducerStuck("injected")
        real_commit(self, offsets, meta, timeout, more)

    publish.Publisher.commit = flaky_commit  # type: ignore[method-assign]
    try:
        summary = service.run(idle_exit=4)
    finally:
        publish.Publisher.commit = real_commit  # type: ignore[method-assign]
    assert calls["failed"] == 3
    assert service.metrics.transactions_failed._value.get() == 3

    assert_same_output(kafka_bootstrap, name, topic, 2, want_alerts, want_commands)
    assert [v for _k, v in read_topic(kafka_bootstrap, f"{name}.dlq")] == [b"\xff\xfe not utf-8"]  # type: ignore[misc]
    # The counts come back with the state: each record counted once although some were read twice.
    assert summary.consumed == total and summary.processed + summary.dead_lettered == total


def test_bad_input_table_through_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every kind of bad input of the engine's table, sent through the broker to a running service.

    Each lands in the dead-letter topic once, with its reason header and the original bytes, and the
    good event sent after all of them is still processed.
    """
    from stream.config import load_config
    from stream.service import Service

    from .test_engine import BAD_INPUT, END, GOOD

    now = int(time.time() * 1000)
    shift = now - END  # the table is written against END; move its timestamps to now

    def moved(raw: bytes) -> bytes:
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        if isinstance(d, dict) and isinstance(d.get("ts"), int):
            d["ts"] += shift
            return orjson.dumps(d)
        return raw

    table = [(name, moved(raw), reason) for name, raw, reason in BAD_INPUT]
    good = moved(orjson.dumps(GOOD))
    last = moved(orjson.dumps({**GOOD, "event_id": "ok-last"}))
    name = f"bad-{uuid.uuid4().hex[:8]}"
    topic = f"{name}.predictions"
    create_topic(kafka_bootstrap, topic, partitions=1)
    produce(kafka_bootstrap, topic, [(b"k", good), *((b"k", raw) for _n, raw, _r in table), (b"k", last)])

    service = Service(load_config(config(tmp_path, name, kafka_bootstrap, topic)), commit_interval=0.5)
    summary = service.run(idle_exit=3)
    assert (summary.consumed, summary.processed, summary.dead_lettered) == (len(table) + 2, 2, len(table))
    assert service.healthy()[0]

    dlq = read_topic(kafka_bootstrap, f"{name}.dlq", with_headers=True)
    got = [(v, h["driftline.reason"].decode()) for _k, v, h in dlq]  # type: ignore[misc]
    assert got == [(raw, reason) for _n, raw, reason in table]
    assert all(h["driftline.detail"] and h["driftline.source.topic"] == topic.encode() for _k, _v, h in dlq)  # type: ignore[misc]


def test_offsets_refused_for_a_fenced_static_member_name_the_consumer(kafka_bootstrap: str) -> None:
    """The broker can refuse a consumer's offsets for a transaction (its static identity was taken
    over) before that consumer's own error callback says so. The refusal names which of the
    transaction's consumers it was, so the service replaces that one at once instead of failing
    every retry of the transaction."""
    from stream.config import KafkaConfig
    from stream.publish import MemberFenced, Publisher

    name = f"fencedoffsets-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, name, 1)
    produce(kafka_bootstrap, name, [(None, b"x")])
    settings = {"bootstrap.servers": kafka_bootstrap, "group.id": name, "group.instance.id": f"{name}-1",
                "session.timeout.ms": 10_000, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    first = Consumer(settings)
    first.subscribe([name])
    deadline = time.monotonic() + 60
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = first.poll(0.2)
    assert msg is not None and msg.error() is None
    intruder = Consumer(settings)
    intruder.subscribe([name])
    until = time.monotonic() + 3
    while time.monotonic() < until:
        intruder.poll(0.1)
    publisher = Publisher(KafkaConfig(bootstrap_servers=kafka_bootstrap), transactional_id=f"{name}-txn")
    publisher.begin()
    publisher.put(name, None, b"y")
    with pytest.raises(MemberFenced) as caught:
        publisher.commit([], None, more=(([TopicPartition(name, 0, 1)], first.consumer_group_metadata()),))
    assert caught.value.group == 1
    publisher.abort()
    intruder.close()
    first.close()
