"""End to end on the real broker: the `driftline run` program, real topics, nothing mocked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.contract import Alert, Command
from stream.engine import segment_key
from stream.simulate import HOUR_MS, WEEK_MS, Scenario, simulate
from stream.topics import create_topic, produce, read_topic

from .conftest import ROOT, driftline, kcat

pytestmark = pytest.mark.kafka


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, prefix: str, bootstrap: str, port: int, extra: str = "") -> Path:
    cfg = tmp_path / "driftline.toml"
    cfg.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{prefix}-group"
input_topic = "{prefix}.predictions"
alerts_topic = "{prefix}.drift.alerts"
control_topic = "{prefix}.model.control"
dead_letter_topic = "{prefix}.predictions.dlq"
state_topic = "{prefix}.driftline.state"

[metrics]
port = {port}

[models.fraud]
action = "circuit_break"
segment_by = ["country", "channel"]
""" + extra)
    return cfg


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _record_at(bootstrap: str, topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None]:
    """(key, value) of one record of a topic, read with a consumer of our own."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"at-{os.getpid()}", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is not None and msg.error() is None:
                assert msg.offset() == offset
                return msg.key(), msg.value()
        raise AssertionError(f"no record at {topic}[{partition}]@{offset}")
    finally:
        c.close()



BAD = {
    "malformed_json": b'{"event_id": "bad-1", "model": "fraud", "ts": ',
    "missing_field": b'{"event_id": "bad-2", "model": "fraud", "prediction": 0.5}',
    "wrong_type": b'{"event_id": "bad-3", "model": "fraud", "ts": "2026-01-01T00:00:00Z", "prediction": [0.5]}',
    "unknown_model": b'{"event_id": "bad-4", "model": "ghost", "ts": "2026-01-01T00:00:00Z", "prediction": 0.5}',
}
EXPECTED_REASON = {"malformed_json": "malformed_json", "missing_field": "invalid_event",
                   "wrong_type": "invalid_event", "unknown_model": "unknown_model"}


def test_seasonal_weeks_with_one_drifted_segment(kafka_bootstrap: str, prefix: str, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, prefix, kafka_bootstrap, port)
    topic = f"{prefix}.predictions"
    create_topic(kafka_bootstrap, topic, partitions=3)
    # A fixed calendar, so the test is the same on every day it runs. The false-alarm budget allows
    # about one false alert per model per four weeks; over the hours of the week this seed's eight
    # weeks could end at, about one in eight gives the Page-Hinkley detector one on a healthy
    # segment (well inside the budget, which this test is not the measure of: bench/quality.py is).
    end = 1796176800000  # 2026-12-02 02:00 UTC
    sc = Scenario(weeks=8, end_ms=end, rate=50, drift_segment=2, drift_start_ms=end - WEEK_MS + 6 * HOUR_MS)
    events = [(f"fraud|{segment_key(e['segment'])}".encode(), orjson.dumps(e)) for e in simulate(sc, seed=8)]  # type: ignore[arg-type]
    # Bad records go in between the good ones, on whichever partition their key lands.
    for i, (name, raw) in enumerate(BAD.items()):
        events.insert(1000 * (i + 1), (name.encode(), raw))
    total = produce(kafka_bootstrap, topic, events)

    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "run", "--config", str(cfg), "--idle-exit", "6"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        metrics: dict = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                metrics = scrape(port)
            except OSError:
                metrics = {}
            # consumed is counted as a batch starts, processed and dead-lettered as it ends: wait for both
            done = metrics.get(("driftline_events_processed_total", (("model", "fraud"),)), 0) + sum(
                v for k, v in metrics.items() if k[0] == "driftline_events_dead_lettered_total")
            if metrics.get(("driftline_events_consumed_total", ())) == total and done == total:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
                assert health.status == 200 and ready.status == 200
                assert ready.read().decode().startswith("consuming")
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr

    # Counts add up: consumed = processed + dead-lettered, nothing lost.
    consumed = metrics[("driftline_events_consumed_total", ())]
    processed = metrics[("driftline_events_processed_total", (("model", "fraud"),))]
    dead = {dict(k[1])["reason"]: v for k, v in metrics.items() if k[0] == "driftline_events_dead_lettered_total"}
    assert consumed == total == processed + sum(dead.values())
    assert dead == {"malformed_json": 1, "invalid_event": 2, "unknown_model": 1}

    # Every bad record is in the dead-letter topic with its reason and its original bytes.
    dlq = read_topic(kafka_bootstrap, f"{prefix}.predictions.dlq", with_headers=True)
    assert len(dlq) == 4
    by_key = {k.decode(): (v, h) for k, v, h in dlq}  # type: ignore[misc, union-attr]
    for name, raw in BAD.items():
        value, headers = by_key[name]
        assert value == raw
        assert headers["driftline.reason"].decode() == EXPECTED_REASON[name]
        assert headers["driftline.source.topic"].decode() == topic
        # ... and points at it: the record at that partition and offset of the input is this one
        at = (int(headers["driftline.source.partition"]), int(headers["driftline.source.offset"]))
        assert _record_at(kafka_bootstrap, topic, *at) == (name.encode(), raw)
    assert b"ghost" in by_key["unknown_model"][1]["driftline.detail"]

    # A firing alert for the shifted segment, none for the others.
    alerts = [Alert.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{prefix}.drift.alerts")]  # type: ignore[misc]
    drifted = sc.segments[2]
    firing = [a for a in alerts if a.status == "firing" and a.segment == drifted]
    assert firing, stdout + stderr
    assert all(a.segment == drifted for a in alerts), [a.summary for a in alerts if a.segment != drifted]
    assert min(a.window_start for a in firing) >= (sc.drift_start_ms or 0)
    assert any(a.signal == "prediction" and a.notify_reason == "new" for a in firing)

    # A circuit_break command for its model, keyed by model; ids unique. The drift lasts days with
    # no release behind it: one retrain request too, keyed apart so it never compacts the breaker away.
    control = read_topic(kafka_bootstrap, f"{prefix}.model.control")
    commands = [Command.model_validate_json(v) for _k, v in control]  # type: ignore[misc]
    assert commands and commands[0].action == "circuit_break" and commands[0].model == "fraud"
    assert {k for k, v in control if Command.model_validate_json(v).action != "retrain"} == {b"fraud"}  # type: ignore[misc]
    retrains = [(k, c) for (k, _v), c in zip(control, commands, strict=True) if c.action == "retrain"]
    assert len(retrains) == 1 and retrains[0][0] == b"fraud#retrain"
    window = retrains[0][1].training_window
    assert window is not None and window.start >= (sc.drift_start_ms or 0) - HOUR_MS and window.segments == [drifted]
    assert len({c.command_id for c in commands}) == len(commands)
    assert commands[0].reason.alert_id in {a.alert_id for a in firing}

    # What a model server saw when the stream ended (the timeline is fixed; by the wall clock the
    # break's day to live is over a day after ``end``: CI on 2026-12-03 saw it "ignored expired").
    sub = driftline("subscribe", "--model", "fraud", "--bootstrap", kafka_bootstrap,
                    "--topic", f"{prefix}.model.control", "--seconds", "4", "--at", str(end))
    assert "circuit_break fraud" in sub.stdout
    assert sub.stdout.strip().splitlines()[-1].startswith("fraud: breaker")

    # The alert's picture, from its payload on the alerts topic.
    page = tmp_path / "alert.html"
    exp = driftline("explain", firing[0].alert_id, "--bootstrap", kafka_bootstrap,
                    "--topic", f"{prefix}.drift.alerts", "--out", str(page))
    assert firing[0].alert_id in exp.stdout and "same slot" in exp.stdout
    assert "<svg" in page.read_text()

    # An independent client (kcat) sees the same commands.
    tool = kcat()
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("kcat is missing: .ci/run installs it")
        pytest.skip("kcat not installed")
    out = subprocess.run(
        [tool, "-b", kafka_bootstrap, "-C", "-t", f"{prefix}.model.control", "-e", "-q", "-f", "%k\t%s\n"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    seen = [json.loads(line.split("\t", 1)[1])["command_id"] for line in out.splitlines() if line]
    assert sorted(seen) == sorted(c.command_id for c in commands)


def test_demo_runs_to_completion(kafka_bootstrap: str, tmp_path: Path) -> None:
    proc = driftline("demo", "--bootstrap", kafka_bootstrap, "--out-dir", str(tmp_path / "demo"), timeout=400)
    assert "demo: OK" in proc.stdout
    assert "breaker for 'fraud' is now OPEN" in proc.stdout
    assert (tmp_path / "demo" / "alerts.jsonl").stat().st_size > 0
    # The README's promise: the page of the alert it raises says why it fired.
    line = next(x for x in proc.stdout.splitlines() if x.startswith("picture of the first alert: "))
    page = Path(line.removeprefix("picture of the first alert: ").split("  (")[0]).read_text()
    assert '<table class="why">' in page and "<th>Why</th>" in page and "x its threshold" in page
    assert "country=DE" in page and '<svg id="distribution"' in page


def test_broker_cli_start_status_stop(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    start = driftline("broker", "start", "--state-dir", state, "--heap", "256m", timeout=300)
    bootstrap = start.stdout.strip().splitlines()[-1]
    try:
        host, _, port = bootstrap.partition(":")
        assert host == "127.0.0.1" and port.isdigit()
        status = driftline("broker", "status", "--state-dir", state)
        assert status.stdout.strip().splitlines()[-1] == bootstrap
    finally:
        driftline("broker", "stop", "--state-dir", state)
    after = driftline("broker", "status", "--state-dir", state, check=False)
    assert after.returncode == 1 and "not running" in after.stdout
