"""Performance against the limits of this stack, in one run on one topic (issue 5).

    python bench/perf.py --bootstrap HOST:PORT [--events 1000000] [--segments 1000] [--partitions 3]

One topic of ``--events`` events (``--segments`` segments, the prediction plus 10 numeric features,
JSON of about 400 bytes, two simulated weeks) is produced once, then:

1. limit: a plain confluent-kafka consumer reads it in batches of 10,000, takes each message's
   value and discards them, once with Python's and librdkafka's default settings (as such a
   consumer is usually written) and once with the garbage-collector and fetch settings `driftline
   run` uses (stream.cli.tune_gc, stream.consume.FETCH): the limit; then the decode floor: the
   limit's consumer plus driftline's batch decoder (the compiled one, or msgspec's typed decoder
   when it is not built), nothing else;
2. driftline: the service's whole loop (decode, validate, window, sketch, detect, decide, produce,
   transactions with state and offsets) over the same topic, monitoring the prediction and the
   10 features; the rate is timed from the first to the last batch;
3. replay: the engine over the same events from a JSONL file, no Kafka (one core);
4. river: ADWIN updated once per event per monitored column (11 columns), the per-event cost a
   user would pay with the usual tool, on a sample of the same events.

Printed: events/s of each, the driftline/limit ratio, driftline's per-event cost against river's,
and the replay process's peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer  # noqa: E402

from stream.cli import tune_gc  # noqa: E402
from stream.compiled import _native  # noqa: E402
from stream.config import Config, KafkaConfig, MetricsConfig, ModelConfig  # noqa: E402
from stream.consume import FETCH  # noqa: E402
from stream.engine import segment_key  # noqa: E402
from stream.simulate import HOUR_MS, Scenario, simulate  # noqa: E402
from stream.typed import Schema, TypedDecoder  # noqa: E402

FEATURES = [f"f{j:02d}" for j in range(10)]
DEFAULT_GC = gc.get_threshold()


def make_events(n: int, segments: int) -> list[tuple[bytes, bytes]]:
    segs = tuple({"country": f"C{i // 10:03d}", "channel": f"ch{i % 10}"} for i in range(segments))
    weeks = 2
    rate = n / (segments * weeks * 168) * 1.15  # a margin over the mean volume factor; cut at n below
    end = 1795716000000 // HOUR_MS * HOUR_MS
    sc = Scenario(weeks=weeks, end_ms=end, segments=segs, rate=rate, correlated_features=10, segment_spread=0.0)
    out: list[tuple[bytes, bytes]] = []
    for e in simulate(sc, seed=11):
        feats = e["features"]
        assert isinstance(feats, dict)
        feats.pop("tier", None)
        feats.pop("amount", None)
        e["request_id"] = uuid.UUID(int=len(out)).hex  # a realistic extra field: servers send ids and metadata
        e["host"] = f"model-server-{len(out) % 16:02d}.prod.internal"
        out.append((f"fraud|{segment_key(e['segment'])}".encode(), orjson.dumps(e)))  # type: ignore[arg-type]
        if len(out) >= n:
            break
    return out


def plain_consume(bootstrap: str, topic: str, total: int, decode: Callable[[list[bytes]], object] | None = None,
                  settings: dict[str, Any] | None = None) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"plain-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 4_194_304, **(settings or {})})
    c.subscribe([topic])
    seen = timed = 0
    first = 0.0
    try:
        while seen < total:
            msgs = c.consume(num_messages=10_000, timeout=1.0)
            values = [m.value() for m in msgs]
            if decode is not None:
                decode(values)  # type: ignore[arg-type]
            seen += len(msgs)
            if msgs and not first:
                first = time.perf_counter()  # timed from the end of the first batch, as for driftline
            elif msgs:
                timed += len(msgs)
        return timed / (time.perf_counter() - first)
    finally:
        c.close()


def driftline_rate(bootstrap: str, topic: str, models: dict[str, ModelConfig]) -> tuple[float, float, int]:
    """Events/s of the service, and the internal verdicts topic's bytes per closed window, windows."""
    from stream.service import Service
    from stream.topics import read_topic

    p = f"perf-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=bootstrap, group_id=p, input_topic=topic, alerts_topic=f"{p}.alerts",
                        control_topic=f"{p}.control", dead_letter_topic=f"{p}.dlq", state_topic=f"{p}.state",
                        batch_size=10_000)
    service = Service(Config(kafka=kafka, models=models, metrics=MetricsConfig(port=0)))
    marks: list[tuple[float, int]] = []
    summary = service.run(idle_exit=5.0, on_batch=lambda s: marks.append((time.perf_counter(), s.consumed)))
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    internal = sum(len(v) for _k, v in read_topic(bootstrap, kafka.verdicts(), timeout=60))  # type: ignore[misc]
    return (n1 - n0) / (t1 - t0), internal / max(summary.windows_closed, 1), summary.windows_closed


def replay_rate(path: Path, models: dict[str, ModelConfig]) -> tuple[float, float, int]:
    """Events/s of the replay, the seconds of it spent closing windows, and the windows closed."""
    from stream.replay import replay
    from stream.series.task import SeriesTask

    spent = [0.0, 0]
    close = SeriesTask._close

    def timed(self: SeriesTask, *args: Any) -> None:
        t = time.perf_counter()
        close(self, *args)
        spent[0] += time.perf_counter() - t
        spent[1] += 1

    SeriesTask._close = timed  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        result = replay(path, Config(models=models))
        rate = result.events / (time.perf_counter() - t0)
    finally:
        SeriesTask._close = close  # type: ignore[method-assign]
    return rate, spent[0], int(spent[1])


def river_rate(events: list[bytes], sample: int) -> float:
    from river.drift import ADWIN

    rows = []
    for v in events[:sample]:
        e = orjson.loads(v)
        rows.append((e["prediction"], *(e["features"][f] for f in FEATURES)))
    detectors: dict[tuple[str, int], ADWIN] = {}
    segs = [orjson.loads(v)["segment"] for v in events[:sample]]
    keys = [segment_key(s) for s in segs]
    t0 = time.perf_counter()
    for key, row in zip(keys, rows, strict=True):
        for j, x in enumerate(row):
            d = detectors.get((key, j))
            if d is None:
                d = detectors[(key, j)] = ADWIN()
            d.update(x)
    return sample / (time.perf_counter() - t0)


def main() -> int:
    from stream.topics import create_topic, produce

    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--river-sample", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5, help="rounds of all measures (medians are printed)")
    args = ap.parse_args()

    t = time.perf_counter()
    events = make_events(args.events, args.segments)
    size = sum(len(v) for _k, v in events) / len(events)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"events: {len(events):,}, {args.segments} segments, prediction + {len(FEATURES)} features, "
          f"{size:.0f} bytes avg (generated in {time.perf_counter() - t:.0f}s)")
    topic = f"perf-{uuid.uuid4().hex[:8]}.in"
    create_topic(args.bootstrap, topic, partitions=args.partitions)
    produce(args.bootstrap, topic, events)
    n = len(events)
    jsonl = Path(tempfile.mkdtemp()) / "events.jsonl"
    jsonl.write_bytes(b"\n".join(v for _k, v in events) + b"\n")
    sample = [v for _k, v in events[: args.river_sample]]  # bytes: not tracked by the garbage collector
    # Nothing of the million events stays in tracked objects: a consumer process does not hold its
    # input, and the collector would otherwise walk them all (it did, in earlier runs of this script).
    del events
    gc.collect()
    models = {"fraud": ModelConfig(segment_by=["country", "channel"], features=FEATURES, action="circuit_break")}

    typed = TypedDecoder()
    typed.set(Schema("fraud", ["country", "channel"], FEATURES, ["numeric"] * len(FEATURES)))
    if typed.native:  # the compiled batch decoder, as driftline runs it
        native = list(typed.native.values())
        floor_decode: Callable[[list[bytes]], object] = lambda values: _native.decode(values, native, 65536)  # noqa: E731
    else:  # built without Rust: the typed msgspec decoder per message
        one = typed.decoder()
        floor_decode = lambda values: [one(v) for v in values]  # noqa: E731
    rows: dict[str, list[float]] = {k: [] for k in ("limit_default", "limit", "floor", "ours", "replay", "river")}
    close_share: list[tuple[float, int]] = []
    internal: list[tuple[float, int]] = []
    for r in range(args.repeat):  # the measures take turns, so that a slow spell of the machine hits all of them
        gc.unfreeze()
        gc.set_threshold(*DEFAULT_GC)
        rows["limit_default"].append(plain_consume(args.bootstrap, topic, n))
        tune_gc()  # as `driftline run` and `driftline replay` do
        rows["limit"].append(plain_consume(args.bootstrap, topic, n, settings=FETCH))
        rows["floor"].append(plain_consume(args.bootstrap, topic, n, floor_decode, settings=FETCH))
        ours, per_window, closed = driftline_rate(args.bootstrap, topic, models)
        rows["ours"].append(ours)
        internal.append((per_window, closed))
        rate, in_close, windows = replay_rate(jsonl, models)
        rows["replay"].append(rate)
        close_share.append((in_close, windows))
        rows["river"].append(river_rate(sample, len(sample)))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rows.items()), flush=True)
    jsonl.unlink()
    med = {k: statistics.median(v) for k, v in rows.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rows[a], rows[b], strict=True))

    print(f"\nmedians of {args.repeat} rounds (events/s) and medians of the per-round ratios:")
    print(f"plain consumer (batches of 10,000, discard) with Python's and librdkafka's defaults: {med['limit_default']:,.0f}")
    print(f"limit: that consumer with driftline's GC and fetch settings (stream.cli.tune_gc, "
          f"stream.consume.FETCH): {med['limit']:,.0f}")
    print(f"decode floor (that consumer + driftline's batch decoder{'' if typed.native else ' (msgspec: native not built)'}, nothing else): {med['floor']:,.0f} "
          f"(ratio to the limit {ratio('floor', 'limit'):.2f})")
    print(f"driftline run (whole pipeline, {args.partitions} partitions): {med['ours']:,.0f}")
    per_window, closed = internal[len(internal) // 2]
    print(f"internal verdicts topic (series stage -> model stage): {per_window:,.0f} bytes per window report "
          f"({closed} reports: one per partition and closed window)")
    print(f"ratio driftline / limit: {ratio('ours', 'limit'):.2f} (to the consumer with defaults "
          f"{ratio('ours', 'limit_default'):.2f}, to the decode floor {ratio('ours', 'floor'):.2f})")
    in_close, windows = close_share[len(close_share) // 2]
    print(f"replay (file, no Kafka, one core): {med['replay']:,.0f}; {1e6 / med['replay']:.2f} us per event, of which "
          f"about {in_close / n * 1e6:.2f} us closing {windows} windows ({in_close / windows * 1e3:.1f} ms each, "
          f"{n / windows / args.segments:.1f} events per series and window)")
    print(f"river ADWIN x {1 + len(FEATURES)} columns per event: {med['river']:,.0f}")
    print(f"per-event cost: driftline replay {1e6 / med['replay']:.2f} us, river ADWIN {1e6 / med['river']:.2f} us "
          f"(ratio {ratio('river', 'replay'):.2f}: below 1 means driftline is cheaper)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
