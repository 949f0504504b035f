"""The example model server (examples/model_server.py) against the real broker: it serves, publishes
its predictions as driftline events, and stops serving while its breaker is open."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import pytest

from stream.act import BreakerPolicy
from stream.alertmanager import _example
from stream.contract import PredictionEvent
from stream.publish import command_bytes
from stream.topics import create_topic, produce, read_topic

from .conftest import ROOT
from .test_kafka_e2e import free_port

pytestmark = pytest.mark.kafka


def call(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_status(port: int, path: str, code: int, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    got: tuple[int, dict[str, object]] = (0, {})
    while time.monotonic() < deadline:
        try:
            got = call(port, path)
            if got[0] == code:
                return got[1]
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{path} did not answer {code} in {timeout}s (last: {got})")


def launch(bootstrap: str, prefix: str, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, IO[bytes]]:
    """The example server on fresh predictions and control topics: the process, its port, its log."""
    port = free_port()
    for topic in (f"{prefix}.predictions", f"{prefix}.model.control"):
        create_topic(bootstrap, topic)
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "model_server.py"), "--bootstrap", bootstrap,
                             "--port", str(port), "--predictions-topic", f"{prefix}.predictions",
                             "--control-topic", f"{prefix}.model.control", "--signing-key", "secret", *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, port, log


def test_the_example_server_leaves_service_on_circuit_break_and_returns_on_restore(
        kafka_bootstrap: str, prefix: str, tmp_path: Path) -> None:
    predictions, control = f"{prefix}.predictions", f"{prefix}.model.control"
    proc, port, log = launch(kafka_bootstrap, prefix, tmp_path)
    try:
        assert wait_status(port, "/status", 200)["serving"] is True
        assert call(port, "/predict?amount=120&country=US&channel=web")[0] == 200
        policy = BreakerPolicy(ttl=3_600_000, max_open=3, signing_key=b"secret")
        alert = _example()
        alert = alert.model_copy(update={"window_end": int(time.time() * 1000), "model": "fraud"})
        forged = BreakerPolicy(ttl=3_600_000, max_open=3, signing_key=b"wrong").on_alert(alert, "circuit_break")
        produce(kafka_bootstrap, control, [(b"fraud", command_bytes(c)) for c in forged])
        time.sleep(2)
        assert call(port, "/predict?amount=5")[0] == 200  # a command that is not signed with our key changes nothing
        breaks = policy.on_alert(alert, "circuit_break")
        produce(kafka_bootstrap, control, [(b"fraud", command_bytes(c)) for c in breaks])
        body = wait_status(port, "/predict?amount=5", 503)
        assert body["reason"] == alert.summary
        resolved = alert.model_copy(update={"status": "resolved", "notify_reason": "resolved",
                                            "window_end": alert.window_end + 3_600_000})
        produce(kafka_bootstrap, control, [(b"fraud", command_bytes(c)) for c in policy.on_alert(resolved, "circuit_break")])
        assert wait_status(port, "/predict?amount=7&country=DE&channel=app", 200)["prediction"]
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
        log.close()
    assert rc == 0  # SIGTERM: stops serving, flushes its producer
    # Its predictions reached the input topic as valid driftline events.
    events = [PredictionEvent.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, predictions)]  # type: ignore[misc]
    assert len(events) >= 4 and {e.model for e in events} == {"fraud"}  # one per request
    assert events[0].segment == {"country": "US", "channel": "web"} and events[0].features == {"amount": 120.0}
    assert events[-1].segment == {"country": "DE", "channel": "app"} and events[-1].served
    # While the breaker was open it scored in the dark: those predictions came marked as not served.
    dark = [e for e in events if not e.served]
    assert {e.features["amount"] for e in dark} <= {5.0, 7.0} and any(e.features["amount"] == 5.0 for e in dark)
    text = (tmp_path / "server.log").read_text()
    assert "circuit_break for fraud" in text and "breaker OPEN: not serving" in text and "restore for fraud" in text


def test_the_example_server_serves_the_version_a_rollback_names(kafka_bootstrap: str, prefix: str, tmp_path: Path) -> None:
    from stream.contract import Release

    predictions, control = f"{prefix}.predictions", f"{prefix}.model.control"
    proc, port, log = launch(kafka_bootstrap, prefix, tmp_path, "--version", "3.2.0")
    try:
        assert wait_status(port, "/status", 200)["version"] == "3.2.0"
        assert call(port, "/predict?amount=10")[1]["version"] == "3.2.0"
        now = int(time.time() * 1000)
        alert = _example().model_copy(update={"window_end": now, "model": "fraud"})
        policy = BreakerPolicy(ttl=3_600_000, max_open=3, signing_key=b"secret")
        cmd = policy.rollback(alert, "3.2.0", "3.1.0", Release(version="3.2.0", share=1.0, first_traffic=now - 3_600_000,
                                                               drift_started=now - 3_600_000))
        produce(kafka_bootstrap, control, [(cmd.record_key().encode(), command_bytes(cmd))])
        deadline = time.monotonic() + 30
        while call(port, "/status")[1]["version"] != "3.1.0" and time.monotonic() < deadline:
            time.sleep(0.3)
        status = call(port, "/status")[1]
        assert status["version"] == "3.1.0" and status["released"] == "3.2.0" and status["serving"] is True
        assert call(port, "/predict?amount=11")[1]["version"] == "3.1.0"
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
        log.close()
    assert rc == 0
    events = [PredictionEvent.model_validate_json(v) for _k, v in read_topic(kafka_bootstrap, predictions)]  # type: ignore[misc]
    assert [e.model_version for e in events] == ["3.2.0", "3.1.0"]  # what it served, as it served it
