"""State restore time and size per series: how long a partition takes to come back after a rebalance.

    python bench/restore.py --bootstrap HOST:PORT [--series 10000] [--weeks 1 4 12]

For each history depth, one engine processes a simulated stream of a few segments for that many
weeks (real window records, real sketches), and its series are then replicated under new segment
names up to ``--series`` series (each series is serialised in full, so the snapshot has the size a
real partition of that many series would have). The snapshot is written to a state topic on the
broker, and a Service restores the partition exactly as on assignment: it reads the state topic,
decompresses, parses and rebuilds the engine. Reported per depth: snapshot size (raw and zstd),
bytes per series, time to snapshot, time to restore, the restored engine's memory (RSS growth),
and the series store's array bytes per series (all slots, prediction and volume signals).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.config import Config, KafkaConfig, ModelConfig  # noqa: E402
from stream.decode import Record  # noqa: E402
from stream.engine import Engine, segment_key  # noqa: E402
from stream.publish import Publisher, ensure_topics  # noqa: E402
from stream.service import Service  # noqa: E402
from stream.simulate import HOUR_MS, Scenario, simulate  # noqa: E402
from stream.state import compress, records  # noqa: E402


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build(cfg: Config, weeks: int, series: int) -> Engine:
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    engine = Engine(cfg, clock=lambda: end / 1000 + 7200)
    recs = [Record(orjson.dumps(e), None, "in", 0, i) for i, e in enumerate(simulate(Scenario(weeks=weeks, end_ms=end, rate=20), seed=1))]
    for i in range(0, len(recs), 20_000):
        engine.process(recs[i:i + 20_000])
    m = engine.models["fraud"]
    real = len(engine.series_model)
    for i in range(series - real):
        src = i % real
        seg = {"country": f"X{i}", "channel": engine.series_segment[src]["channel"]}
        sid = len(engine.series_model)
        engine.series_model.append("fraud")
        engine.series_segment.append(seg)
        engine.series_key.append(segment_key(seg))
        engine.last_active.append(engine.last_active[src])
        m.by_segment[segment_key(seg)] = sid
        m.sids.append(sid)
        st = m.store
        a, b = st.rows[src], st.row(sid)
        for arr in (st.scal, st.hist, st.fhist, st.fdisp, st.recent, st.recent_n, st.same, st.ph):
            arr[b] = arr[a]
    return engine


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--weeks", type=int, nargs="+", default=[1, 4, 12])
    args = ap.parse_args()
    print(f"# restore of one partition holding {args.series} series (python {sys.version.split()[0]})")
    print("| weeks of history | raw MB | zstd MB | zstd KB/series | snapshot s | restore s | restored RSS MB | store KB/series |")
    print("|---|---|---|---|---|---|---|---|")
    for weeks in args.weeks:
        name = f"restore-{uuid.uuid4().hex[:8]}"
        kafka = KafkaConfig(bootstrap_servers=args.bootstrap, group_id=f"{name}-group", input_topic=f"{name}.in",
                            alerts_topic=f"{name}.alerts", control_topic=f"{name}.control",
                            dead_letter_topic=f"{name}.dlq", state_topic=f"{name}.state")
        cfg = Config(kafka=kafka, models={"fraud": ModelConfig(segment_by=["country", "channel"])})
        engine = build(cfg, weeks, args.series)
        store_kb = engine.models["fraud"].store.nbytes() / args.series / 1024
        t0 = time.perf_counter()
        recs = records(engine, changed_only=False)  # the full state, as a first snapshot writes it
        packed = {n: compress(r) for n, r in recs.items()}
        snap_s = time.perf_counter() - t0
        raw_mb, packed_mb = sum(map(len, recs.values())) / 2**20, sum(map(len, packed.values())) / 2**20
        del recs
        del engine
        gc.collect()
        ensure_topics(kafka)
        with tempfile.TemporaryDirectory():
            pub = Publisher(kafka, transactional_id=f"{name}-tx")
            pub.begin()
            service = Service(cfg)
            for key, value in service.series.state_records(0, packed):
                pub.put_state(key, value)
            pub.commit([], None)
            before = rss_mb()
            t0 = time.perf_counter()
            service.series.assigned([0])
            restore_s = time.perf_counter() - t0
            grown = rss_mb() - before
            assert len(service.series.partitions[0].task.series_model) == args.series
        print(f"| {weeks} | {raw_mb:.0f} | {packed_mb:.0f} | {packed_mb * 1024 / args.series:.1f} "
              f"| {snap_s:.1f} | {restore_s:.1f} | {grown:.0f} | {store_kb:.1f} |", flush=True)
        del service
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
