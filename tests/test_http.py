"""The status endpoint without a broker: metrics, health and readiness answers."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from stream.http import StatusServer
from stream.metrics import Metrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_health_and_readiness() -> None:
    metrics = Metrics()
    metrics.consumed.inc(3)
    state = {"ready": (False, "not consuming yet")}
    server = StatusServer(metrics.registry, lambda: (True, "ok"), lambda: state["ready"])
    try:
        code, body = get(server.port, "/metrics")
        assert code == 200 and "driftline_events_consumed_total 3.0" in body
        assert get(server.port, "/healthz") == (200, "ok\n")
        assert get(server.port, "/readyz") == (503, "not consuming yet\n")
        state["ready"] = (True, "consuming 3 partitions")
        assert get(server.port, "/readyz")[0] == 200
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.close()


def test_binds_where_told() -> None:
    server = StatusServer(Metrics().registry, lambda: (True, ""), lambda: (True, ""), host="127.0.0.1", port=0)
    try:
        assert server.server.server_address[0] == "127.0.0.1"
    finally:
        server.close()
    with pytest.raises(OSError):
        StatusServer(Metrics().registry, lambda: (True, ""), lambda: (True, ""), host="192.0.2.1", port=0)
