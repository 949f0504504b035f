"""Operators' commands end to end on the real broker (issue 15, item 4): ``driftline accept`` and
``driftline silence``, signed, through the operator topic to a running service.

Three weeks of history, then one segment's predictions turn null and stay so (a model whose world
changed: say it now answers null where it has no opinion, on purpose). The service breaks it; the
operator accepts the new normal: its alert resolves as accepted, ``restore`` follows, the segment
is rebased and quiet. Then the operator silences the model for two hours, and another segment's
break alerts as silenced and takes nothing out of service.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from stream.act import verify
from stream.contract import Alert, Command, Operation
from stream.series.tables import segment_key
from stream.simulate import HOUR_MS, Scenario, simulate
from stream.topics import create_topic, produce, read_topic

from .conftest import ROOT
from .test_kafka_faults import LOGS, config, free_port, log_tail, start, wait_ready

pytestmark = pytest.mark.kafka

FIRST = {"country": "US", "channel": "web"}
SECOND = {"country": "DE", "channel": "web"}
KEY = "operator-test-key"


def _wait(what: str, probe, proc: subprocess.Popen[bytes], timeout: float = 180):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_tail(proc)
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s:\n{log_tail(proc)}")


def _operate(cfg: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "stream", *args, "--config", str(cfg), "--model", "fraud", "--by", "ana"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_accept_and_silence_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"operator-{run}.predictions"
    create_topic(kafka_bootstrap, topic, partitions=2)
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS - 4 * HOUR_MS
    broken_at = end - 6 * HOUR_MS + 25 * 60_000

    def key(e: dict[str, object]) -> bytes:
        return f"fraud|{segment_key(e['segment'])}".encode()  # type: ignore[arg-type]

    history = []
    for e in simulate(Scenario(weeks=3, end_ms=end, rate=60), seed=12):
        if e["segment"] == FIRST and int(e["ts"]) >= broken_at:  # type: ignore[call-overload]
            e = {**e, "prediction": None}
        history.append((key(e), orjson.dumps(e)))
    produce(kafka_bootstrap, topic, history)

    name = f"operator-{run}"
    cfg = config(tmp_path, name, kafka_bootstrap, topic)
    port = free_port()
    cfg.write_text(cfg.read_text().replace("port = 0", f"port = {port}") + f'\n[commands]\nsigning_key = "{KEY}"\n')
    proc = start(cfg, log_level="INFO")
    try:
        wait_ready(port, proc)

        def commands() -> list[Command]:
            return [Command.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{name}.control")]  # type: ignore[misc]

        def alerts() -> list[Alert]:
            return [Alert.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{name}.alerts")]  # type: ignore[misc]

        brk = _wait("circuit_break", lambda: [c for c in commands() if c.action == "circuit_break"], proc)[0]
        cause = next(a for a in alerts() if a.alert_id == brk.reason.alert_id)
        assert cause.segment == FIRST

        # accept: the alert resolves as accepted and the breaker is restored, with the operator's word
        said = _operate(cfg, "accept", "--segment", "country=US,channel=web", "--note", "nulls mean no opinion now")
        assert "(signed)" in said
        rst = _wait("restore", lambda: [c for c in commands() if c.action == "restore"], proc)[0]
        assert rst.reason.signal == "operator" and "by ana (nulls mean no opinion now)" in rst.reason.summary
        assert verify(rst, KEY.encode()) and rst.sequence is not None and brk.sequence is not None
        assert rst.sequence > brk.sequence
        accepted = [a for a in alerts() if a.notify_reason == "accepted"]
        assert [(a.alert_id, a.status) for a in accepted] == [(cause.alert_id, "resolved")]
        ops = [Operation.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, f"{name}-group.operator")]  # type: ignore[misc]
        assert [o.action for o in ops] == ["accept"] and verify(ops[0], KEY.encode())

        # silence, then another segment breaks (and the accepted one goes on with its nulls)
        _operate(cfg, "silence", "--for", "2h")
        _wait("silence applied", lambda: b"silence" in urllib.request.urlopen(
            f"http://127.0.0.1:{port}/alerts", timeout=5).read(), proc)
        later = []
        for e in simulate(Scenario(weeks=1, end_ms=end + 2 * HOUR_MS, rate=60), seed=13):
            if int(e["ts"]) < end:  # type: ignore[call-overload]
                continue
            if e["segment"] in (FIRST, SECOND):
                e = {**e, "prediction": None}
            later.append((key(e), orjson.dumps(e)))
        produce(kafka_bootstrap, topic, later)
        silenced = _wait("a silenced alert", lambda: [a for a in alerts() if a.segment == SECOND and a.status == "firing"],
                         proc)
        assert all(a.silenced_until is not None and a.silenced_until > a.window_end for a in silenced)
        time.sleep(3)  # a few commits more
        acts = [c.action for c in commands()]
        assert acts[acts.index("restore"):] == ["restore"] and set(acts) == {"circuit_break", "restore"}  # nothing since
        assert [a for a in alerts() if a.segment == FIRST and a.status == "firing" and a.window_start >= end] == []
        assert "rebased on what it sees now (accepted by ana): channel=web,country=US" in LOGS[proc.pid].read_text()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/alerts", timeout=5).read().decode()
        assert "operator commands" in page and "nulls mean no opinion now" in page and "silenced until" in page
    finally:
        proc.terminate()
        proc.wait(timeout=60)
