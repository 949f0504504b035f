"""``driftline demo``: the whole loop on a real broker in one command.

Starts the local broker (unless one is given), produces eight simulated weeks of seasonal prediction
events for four segments of a model named ``fraud`` with one segment's predictions shifted for the
last 36 hours, runs the service over them, and shows what a model server subscribed to the control
topic sees: the alert and the breaker opening.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from .config import Config, Defaults, KafkaConfig, MetricsConfig, ModelConfig
from .contract import Command
from .engine import segment_key
from .explain import write_page
from .publish import alert_bytes
from .service import Service
from .simulate import HOUR_MS, Scenario, encode, simulate
from .subscriber import BreakerBook, ControlSubscriber
from .topics import create_topic, produce, read_topic


def run_demo(bootstrap: str | None, weeks: int = 8, out_dir: Path = Path("driftline-demo")) -> int:
    if bootstrap is None:
        from . import broker

        print("starting the local Kafka broker (the first start fetches its jars with Maven) ...", flush=True)
        bootstrap = broker.start().bootstrap
    print(f"broker: {bootstrap}")
    run = uuid.uuid4().hex[:6]
    prefix = f"demo-{run}"
    kafka = KafkaConfig(
        bootstrap_servers=bootstrap, group_id=f"driftline-{prefix}", input_topic=f"{prefix}.predictions",
        alerts_topic=f"{prefix}.drift.alerts", control_topic=f"{prefix}.model.control",
        dead_letter_topic=f"{prefix}.predictions.dlq", state_topic=f"{prefix}.driftline.state",
    )
    config = Config(
        kafka=kafka, defaults=Defaults(), metrics=MetricsConfig(port=0),
        models={"fraud": ModelConfig(action="circuit_break", segment_by=["country", "channel"])},
    )
    create_topic(bootstrap, kafka.input_topic, partitions=3)

    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    scenario = Scenario(weeks=weeks, end_ms=end, drift_segment=2, drift_start_ms=end - 36 * HOUR_MS, drift_shift=0.25)
    drifted = scenario.segments[2]
    print(f"producing {weeks} weeks of hourly-seasonal predictions for model 'fraud', 4 segments; "
          f"segment {drifted} shifted by +0.25 for the last 36 hours ...", flush=True)
    t0 = time.perf_counter()
    n = produce(
        bootstrap, kafka.input_topic,
        ((f"fraud|{segment_key(e['segment'])}".encode(), encode(e)) for e in simulate(scenario, seed=42)),  # type: ignore[arg-type]
    )
    print(f"  {n:,} events produced to {kafka.input_topic} in {time.perf_counter() - t0:.1f}s")

    seen: list[str] = []

    def model_server(cmd: Command, book: BreakerBook) -> None:
        state = "OPEN: stop serving fraud" if book.is_open(cmd.model) else "closed: serving fraud"
        seen.append(f"  model server got {cmd.action} ({cmd.command_id}) -> breaker {state}")

    server = ControlSubscriber(bootstrap, {"fraud"}, model_server, topic=kafka.control_topic)
    print("running the detector (driftline run) until the input is consumed ...", flush=True)
    service = Service(config)
    port = service.serve_metrics()
    summary = service.run(idle_exit=3.0)
    print(f"  consumed {summary.consumed:,} events in {summary.seconds:.1f}s "
          f"({summary.consumed / max(summary.seconds, 1e-9):,.0f}/s), {summary.windows_closed} windows closed, "
          f"{summary.dead_lettered} dead-lettered; metrics were on http://127.0.0.1:{port}/metrics")

    deadline = time.monotonic() + 15
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = 0 if server.poll(0.5) else quiet + (1 if server.book.last else 0)
    server.close()

    from .contract import Alert

    alerts = [Alert.model_validate_json(v) for _k, v in read_topic(bootstrap, kafka.alerts_topic)]  # type: ignore[misc]
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "alerts.jsonl").open("wb") as fh:
        for a in alerts:
            fh.write(alert_bytes(a) + b"\n")
    new = [a for a in alerts if a.notify_reason == "new"]
    print(f"alerts on {kafka.alerts_topic}: {len(alerts)} notifications, {len(new)} new")
    for a in new:
        print(f"  [{a.severity}] {a.summary}")
        print(f"      window {a.context}, alert_id {a.alert_id}")
    print(f"commands on {kafka.control_topic}, as the model server saw them:")
    for line in seen[-6:] if len(seen) > 6 else seen:
        print(line)
    is_open = server.book.is_open("fraud")
    print(f"breaker for 'fraud' is now {'OPEN: the model was taken out of service' if is_open else 'closed'}")
    firing = [a for a in new if a.signal == "prediction"]
    if firing:
        page = write_page(firing[0], out_dir / f"{firing[0].alert_id}.html")
        print(f"picture of the first alert: {page}  (or: driftline explain {firing[0].alert_id} "
              f"--alerts {out_dir / 'alerts.jsonl'})")
    print(f"see it yourself: driftline subscribe --model fraud --bootstrap {bootstrap} "
          f"--topic {kafka.control_topic} --seconds 5")
    ok = bool(firing) and is_open and all(a.segment == drifted for a in new)
    print("demo: OK" if ok else "demo: unexpected result (see above)")
    return 0 if ok else 1
