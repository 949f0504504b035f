"""Throughput of driftline on simulated seasonal events: replay (no Kafka) and the service through Kafka.

    python bench/throughput.py [--weeks 8] [--rate 60] [--repeat 3] [--bootstrap HOST:PORT]

Replay is timed over an in-memory list of encoded events (decode, validate, window, sketch, detect,
decide), median of ``--repeat`` runs. The Kafka figure is `driftline run`'s loop (consume, engine,
produce, commit) over a topic produced beforehand, from first to last record, without the idle wait.
Without --bootstrap a local broker is started and stopped.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.config import Config, KafkaConfig, MetricsConfig, ModelConfig  # noqa: E402
from stream.decode import Record  # noqa: E402
from stream.engine import Engine, segment_key  # noqa: E402
from stream.simulate import HOUR_MS, Scenario, simulate  # noqa: E402


def replay_rate(raw: list[bytes], config: Config, chunk: int = 5000) -> tuple[float, int]:
    engine = Engine(config)
    t0 = time.perf_counter()
    alerts = 0
    for i in range(0, len(raw), chunk):
        alerts += len(engine.process([Record(r, None, "bench", 0, i + j) for j, r in enumerate(raw[i:i + chunk])]).alerts)
    alerts += len(engine.finish().alerts)
    return len(raw) / (time.perf_counter() - t0), alerts


def kafka_rate(raw: list[tuple[bytes, bytes]], bootstrap: str, models: dict[str, ModelConfig]) -> tuple[float, int]:
    from stream.service import Service
    from stream.topics import create_topic, produce

    p = f"bench-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=bootstrap, group_id=p, input_topic=f"{p}.in", alerts_topic=f"{p}.alerts",
                        control_topic=f"{p}.control", dead_letter_topic=f"{p}.dlq", state_topic=f"{p}.state")
    create_topic(bootstrap, kafka.input_topic, partitions=3)
    produce(bootstrap, kafka.input_topic, raw)
    service = Service(Config(kafka=kafka, models=models, metrics=MetricsConfig(port=0)))
    marks: list[tuple[float, int]] = []
    service.run(idle_exit=3.0, on_batch=lambda s: marks.append((time.monotonic(), s.consumed)))
    first_t, first_n = marks[0]
    last_t, last_n = marks[-1]
    return (last_n - first_n) / (last_t - first_t), service.alerts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bootstrap")
    args = ap.parse_args()

    end = 1795716000000 // HOUR_MS * HOUR_MS
    sc = Scenario(weeks=args.weeks, end_ms=end, rate=args.rate, drift_segment=2, drift_start_ms=end - 36 * HOUR_MS)
    events = list(simulate(sc, seed=42))
    raw = [orjson.dumps(e) for e in events]
    models = {"fraud": ModelConfig(action="circuit_break", segment_by=["country", "channel"])}
    config = Config(models=models)
    runs = [replay_rate(raw, config) for _ in range(args.repeat)]
    rates = [r for r, _ in runs]
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print(f"events: {len(raw):,} ({sum(map(len, raw)) / len(raw):.0f} bytes avg), {len(sc.segments)} segments, "
          f"{args.weeks} weeks")
    print(f"replay: median {statistics.median(rates):,.0f} events/s over {args.repeat} runs "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f}); alerts {runs[0][1]}")

    keyed = [(f"fraud|{segment_key(e['segment'])}".encode(), r) for e, r in zip(events, raw, strict=True)]  # type: ignore[arg-type]
    if args.bootstrap:
        rate, alerts = kafka_rate(keyed, args.bootstrap, models)
    else:
        from stream import broker

        state = Path(tempfile.mkdtemp())
        info = broker.start(state)
        try:
            rate, alerts = kafka_rate(keyed, info.bootstrap, models)
        finally:
            broker.stop(state)
    print(f"kafka (driftline run loop, 3 partitions): {rate:,.0f} events/s; alerts {alerts}")
    print(f"ratio kafka/replay: {rate / statistics.median(rates):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
