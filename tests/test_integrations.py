"""driftline with the tools people already run, all real and on loopback: Alertmanager (Debian's
prometheus-alertmanager) routing our alerts to a webhook, Prometheus scraping /metrics with our
health rules loaded, and headless Chromium rendering the alert page the service serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.engine import segment_key
from stream.explain import find_chromium, render_png
from stream.simulate import HOUR_MS, WEEK_MS, Scenario, simulate
from stream.topics import create_topic, produce, read_topic

from .conftest import ROOT, driftline
from .test_deploy import tool
from .test_kafka_e2e import free_port, scrape, write_config

pytestmark = pytest.mark.kafka


def get(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def wait_for(what: str, check: Any, timeout: float = 120, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as exc:  # noqa: BLE001 - a server still starting refuses connections
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


class Webhook:
    """A receiver Alertmanager posts notifications to (as it would to Slack or PagerDuty)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("integrations")
    prefix = f"int-{os.getpid()}-{int(time.time())}"
    hook = Webhook()
    am_port, prom_port, metrics_port = free_port(), free_port(), free_port()
    (tmp / "am.yml").write_text(f"""
route:
  receiver: hook
  group_by: [alertname, model]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook.port}/
        send_resolved: true
""")
    (tmp / "prom.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{ROOT / 'deploy' / 'prometheus' / 'driftline-rules.yml'}"]
scrape_configs:
  - job_name: driftline
    static_configs: [{{targets: ["127.0.0.1:{metrics_port}"]}}]
""")
    procs = [
        start([tool("prometheus-alertmanager"), f"--config.file={tmp / 'am.yml'}", f"--storage.path={tmp / 'am-data'}",
               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], tmp / "alertmanager.log"),
        start([tool("prometheus"), f"--config.file={tmp / 'prom.yml'}", f"--storage.tsdb.path={tmp / 'prom-data'}",
               f"--web.listen-address=127.0.0.1:{prom_port}"], tmp / "prometheus.log"),
    ]
    service: subprocess.Popen[bytes] | None = None
    try:
        topic = f"{prefix}.predictions"
        create_topic(kafka_bootstrap, topic, partitions=2)
        end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
        sc = Scenario(weeks=8, end_ms=end, rate=40, drift_segment=2, drift_start_ms=end - WEEK_MS + 6 * HOUR_MS)
        events = [(f"fraud|{segment_key(e['segment'])}".encode(), orjson.dumps(e)) for e in simulate(sc, seed=8)]  # type: ignore[arg-type]
        total = produce(kafka_bootstrap, topic, events)
        cfg = write_config(tmp, prefix, kafka_bootstrap, metrics_port, extra=f"""
[alertmanager]
url = "http://127.0.0.1:{am_port}"
resend_interval = "2s"
page_url = "http://127.0.0.1:{metrics_port}"
labels = {{team = "ml-platform"}}
""")
        service = start([sys.executable, "-m", "stream", "run", "--config", str(cfg)], tmp / "driftline.log")
        base = f"http://127.0.0.1:{metrics_port}"

        def done() -> bool:
            m = scrape(metrics_port)
            n = m.get(("driftline_events_processed_total", (("model", "fraud"),)), 0)
            return n == total

        wait_for("driftline to process every event", done, timeout=300)
        def firing_listed() -> str | None:
            listing = get(f"{base}/alerts")
            return listing if "<td>firing</td>" in listing else None

        index = wait_for("a firing alert on /alerts", firing_listed)
        am = wait_for("the alert in Alertmanager", lambda: get(
            f"http://127.0.0.1:{am_port}/api/v2/alerts?filter=" + urllib.parse.quote('model="fraud"')))
        wait_for("Alertmanager to notify the webhook", lambda: hook.received)
        prom = f"http://127.0.0.1:{prom_port}"
        consumed = wait_for("Prometheus to scrape the final count", lambda: [
            r for r in get(f"{prom}/api/v1/query?query=driftline_events_consumed_total")["data"]["result"]
            if float(r["value"][1]) == total])
        rules = wait_for("Prometheus to load the health rules", lambda: get(f"{prom}/api/v1/rules")["data"]["groups"])
        alert_id = am[0]["annotations"]["alert_id"]
        page = get(f"{base}/alerts/{alert_id}")
        metrics_text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read()
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=120)
        alerts_file = tmp / "alerts.jsonl"
        alerts_file.write_bytes(b"".join(v + b"\n" for _k, v in read_topic(kafka_bootstrap, f"{prefix}.drift.alerts")))  # type: ignore[misc]
        yield {"tmp": tmp, "index": index, "am": am, "hook": hook.received, "consumed": consumed, "rules": rules,
               "page": page, "alert_id": alert_id, "metrics": metrics_text, "total": total, "alerts_file": alerts_file,
               "returncode": service.returncode, "segment": sc.segments[2]}
    finally:
        for p in [*procs, *([service] if service is not None else [])]:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_alertmanager_gets_our_alerts_with_routable_labels_and_routes_them(stack: dict[str, Any]) -> None:
    am = stack["am"]
    drifted = ",".join(f"{k}={v}" for k, v in sorted(stack["segment"].items()))
    mine = [a for a in am if a["labels"]["alertname"] == "DriftlineDrift"]
    assert mine, am
    labels = mine[0]["labels"]
    assert labels["model"] == "fraud" and labels["signal"] == "prediction" and labels["segment"] == drifted
    assert labels["severity"] in ("warning", "critical") and labels["team"] == "ml-platform"
    assert mine[0]["status"]["state"] == "active"
    payload = json.loads(mine[0]["annotations"]["payload"])
    assert payload["alert_id"] == mine[0]["annotations"]["alert_id"] and payload["status"] == "firing"
    assert mine[0]["generatorURL"].endswith(f"/alerts/{payload['alert_id']}")
    # Alertmanager's own routing delivered it to the receiver, as it would to Slack or PagerDuty.
    notified = [a for n in stack["hook"] for a in n["alerts"]]
    assert any(a["labels"].get("model") == "fraud" and a["status"] == "firing" for a in notified)


def test_prometheus_scrapes_the_service_and_loads_its_health_rules(stack: dict[str, Any]) -> None:
    assert float(stack["consumed"][0]["value"][1]) == stack["total"]
    names = {g["name"] for g in stack["rules"]}
    assert names == {"driftline-recording", "driftline-health"}
    health = next(g for g in stack["rules"] if g["name"] == "driftline-health")
    assert all(r["health"] == "ok" for r in health["rules"]), health["rules"]


def test_promtool_accepts_the_live_metrics_page(stack: dict[str, Any]) -> None:
    text = stack["metrics"]
    assert b"driftline_consumer_lag{" in text and b"driftline_alertmanager_posts_total" in text
    out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_the_service_stops_cleanly_on_sigterm(stack: dict[str, Any]) -> None:
    assert stack["returncode"] == 0


def _colour_pixels(png: Path, rgb: tuple[int, int, int], tol: int = 12) -> int:
    import numpy as np
    from PIL import Image

    with Image.open(png) as img:
        px = np.asarray(img.convert("RGB"), dtype=np.int16)
    return int((np.abs(px - np.array(rgb, dtype=np.int16)) <= tol).all(axis=2).sum())


def test_the_served_alert_page_renders_in_a_real_browser(stack: dict[str, Any]) -> None:
    chromium = find_chromium() or tool("chromium")
    assert f"/alerts/{stack['alert_id']}" in stack["index"]
    page = stack["tmp"] / "served.html"
    page.write_text(stack["page"])
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert f"<title>driftline alert {stack['alert_id']}: fraud prediction firing</title>" in dom
    for chart in ("distribution", "recent", "same-slot"):
        assert f'<svg id="{chart}"' in dom, chart
    assert dom.count('class="bar current"') >= 5 and dom.count('class="bar baseline"') >= 5
    png = render_png(page, stack["tmp"] / "served.png", chromium=chromium)
    from PIL import Image

    with Image.open(png) as img:
        assert img.size == (780, 1250)
    # The bars are on the picture: the current window in orange, the baseline in blue.
    assert _colour_pixels(png, (0xD9, 0x48, 0x0F)) > 500
    assert _colour_pixels(png, (0x1C, 0x7E, 0xD6)) > 500


def test_explain_writes_the_page_and_its_picture(stack: dict[str, Any]) -> None:
    out = stack["tmp"] / "cli.png"
    proc = driftline("explain", stack["alert_id"], "--alerts", str(stack["alerts_file"]), "--png", str(out))
    assert "picture written to" in proc.stdout and out.with_suffix(".html").exists()
    assert _colour_pixels(out, (0xD9, 0x48, 0x0F)) > 500
