"""What ships in deploy/ and docker-compose.yml, checked against the real program: configs parse
with driftline's own config loader, dashboards and rules name metrics the service really exports,
and Prometheus' own tool accepts the rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from stream.config import Config
from stream.metrics import Metrics

from .conftest import ROOT

DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs it")
        pytest.skip(f"{name} not installed")
    return path


def exported_metrics() -> set[str]:
    """Every sample name the service's registry exposes (with every labelled child touched once)."""
    m = Metrics()
    m.processed.labels("fraud").inc()
    m.dead_lettered.labels("late").inc()
    m.late.labels("fraud").inc()
    m.windows_closed.labels("fraud").inc()
    m.alerts.labels("fraud", "critical", "firing").inc()
    m.commands.labels("fraud", "circuit_break").inc()
    m.series.labels("fraud").set(1)
    m.consumer_lag.labels("0").set(5)
    m.alertmanager_posts.labels("ok").inc()
    text = generate_latest(m.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(driftline_[a-z_]+)\b", expr))


def test_compose_has_the_whole_stack_and_everything_it_mounts_exists() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"kafka", "driftline", "simulator", "prometheus", "alertmanager", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "healthcheck" in kafka
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            assert (ROOT / src).exists(), f"{name} mounts {src}, which is not in the repository"
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).exists()
    # The simulator and the service talk about the same topic, and the config they mount parses.
    dl = services["driftline"]
    cfg = Config(**tomllib.loads((DEPLOY / "driftline.example.toml").read_text()))
    sim = services["simulator"]["command"]
    assert sim[sim.index("--topic") + 1] == cfg.kafka.input_topic
    assert dl["environment"]["DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert dl["environment"]["DRIFTLINE_ALERTMANAGER__URL"] == "http://alertmanager:9093"
    assert f"{cfg.metrics.port}:{cfg.metrics.port}" in dl["ports"]


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"


def test_kubernetes_manifests_fit_together() -> None:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    assert set(docs) == {"ConfigMap", "StatefulSet", "Service"}
    cm, dep, svc = docs["ConfigMap"], docs["StatefulSet"], docs["Service"]
    # Static membership needs ids that survive a reschedule: a StatefulSet's pod names do.
    assert dep["spec"]["serviceName"] == svc["metadata"]["name"]
    cfg = Config(**tomllib.loads(cm["data"]["driftline.toml"]))  # a bad key would fail here, naming it
    spec = dep["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == cfg.metrics.port and cfg.metrics.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert 1 <= dep["spec"]["replicas"] <= 3  # the comment's partition count: more would sit idle
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    mounted = {v["name"]: v for v in spec["volumes"]}
    assert mounted["config"]["configMap"]["name"] == cm["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    assert "DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS" in env
    assert env["DRIFTLINE_KAFKA__INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_grafana_dashboard_queries_metrics_the_service_exports() -> None:
    dash = json.loads((DEPLOY / "grafana" / "driftline.json").read_text())
    exported = exported_metrics()
    used = set()
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            used |= names
    unknown = used - exported
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"
    assert {"driftline_consumer_lag", "driftline_events_dead_lettered_total", "driftline_alerts_total"} <= used


def test_health_rules_pass_promtool_and_query_exported_metrics(tmp_path: Path) -> None:
    rules = DEPLOY / "prometheus" / "driftline-rules.yml"
    out = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    doc = yaml.safe_load(rules.read_text())
    alerts = [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert {"DriftlineConsumerLagGrowing", "DriftlineDeadLetterRateHigh", "DriftlineWindowsStalled"} <= set(alerts)
    used = {n for g in doc["groups"] for r in g["rules"] for n in metric_names(r["expr"])}
    assert used - exported_metrics() == set()


def test_promtool_accepts_the_metrics_page() -> None:
    text = generate_latest(Metrics().registry)
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()


def test_alertmanager_config_routes_on_driftline_labels() -> None:
    amtool = shutil.which("amtool")
    cfg_path = DEPLOY / "alertmanager" / "alertmanager.yml"
    cfg = yaml.safe_load(cfg_path.read_text())
    assert "model" in cfg["route"]["group_by"]
    if amtool is not None:
        out = subprocess.run([amtool, "check-config", str(cfg_path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_sink_hands_alerts_over_and_keeps_them_alive_until_the_next_repeat() -> None:
    from stream.alertmanager import AlertmanagerSink, _example, to_alertmanager
    from stream.config import AlertmanagerConfig

    a = _example()
    body = to_alertmanager(a, now_ms=1795716000000, resend_ms=60_000, repeat_ms=4 * 3_600_000)
    assert body["endsAt"] == "2026-11-26T22:02:00.000Z"  # the 4h repeat plus two resend rounds
    sink = AlertmanagerSink(AlertmanagerConfig(url="http://127.0.0.1:9", resend_interval=3_600_000))
    try:
        sink.submit([a])
        assert list(sink.firing) == [a.fingerprint]
        sink.forget([a.fingerprint])  # its partition moved to another process
        assert sink.firing == {}
    finally:
        sink._stop.set()
        sink._wake.set()
