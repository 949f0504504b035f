"""Longer fault-injection run: kill -9 the service N times (default 20) while a producer streams events.

    python bench/faults.py [--kills 20] [--bootstrap HOST:PORT] [--seconds 150]

A producer thread streams a five-week, three-partition scenario (with a drift, a volume drop and
bad records) into a fresh topic over ``--seconds``. Meanwhile ``driftline run`` is started and
killed with SIGKILL at random points, N times; a last instance drains the topic and exits when
idle. Then one uninterrupted instance (another group) runs over the same topic as the reference.

Reported: kills, kills that landed while input was still unprocessed, events produced and
accounted for (processed + dead-lettered, from the service's own restored counters), duplicate
alert transitions and command ids, and transitions/commands missing or extra compared with the
reference, all read with isolation.level=read_committed. Without --bootstrap a private broker is
started (and stopped) under a temporary directory.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream import broker  # noqa: E402
from stream.simulate import HOUR_MS, Drift, Scenario  # noqa: E402
from stream.topics import create_topic  # noqa: E402
from tests.test_kafka_faults import config, free_port, lag, scenario_events, transitions, windows_uncommitted  # noqa: E402

STOPPED = re.compile(rb"consumed (\d+), processed (\d+), dead-lettered (\d+)")


def events() -> list[tuple[bytes, bytes]]:
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    sc = Scenario(weeks=5, end_ms=end, rate=100,
                  drifts=(Drift(1, end - 60 * HOUR_MS, "shift", 1.5), Drift(3, end - 30 * HOUR_MS, "volume", 0.2)))
    out = scenario_events(sc, seed=21)
    for i, bad in enumerate([b"{broken json", b"\xff\xfe", b"", b'{"model": "fraud"}']):
        out.insert(1000 + i * 50_000, (b"bad", bad))
    return out


def run(bootstrap: str, kills: int, seconds: float, tmp: Path) -> int:
    run_id = uuid.uuid4().hex[:8]
    topic = f"faults-{run_id}.predictions"
    create_topic(bootstrap, topic, partitions=3)
    data = events()
    total = len(data)
    chunk = 2000
    pause = seconds / (total / chunk)

    def stream() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
        for i in range(0, total, chunk):
            for key, value in data[i:i + chunk]:
                producer.produce(topic, value=value, key=key)
            producer.flush(60)
            time.sleep(pause)

    producer = threading.Thread(target=stream, daemon=True)
    t0 = time.monotonic()
    producer.start()

    def start(cfg: Path, idle_exit: float | None = None) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "stream", "run", "--config", str(cfg)]
        if idle_exit is not None:
            args += ["--idle-exit", str(idle_exit)]
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    name = f"kill-{run_id}"
    cfg = config(tmp, name, bootstrap, topic)
    rng = random.Random(7)
    mid_stream = both = 0
    text = cfg.read_text()
    for k in range(kills):
        port = free_port()
        cfg.write_text(text.replace("port = 0", f"port = {port}"))
        proc = start(cfg)
        time.sleep(rng.uniform(2.0, 7.0))
        pending = windows_uncommitted(port)  # the model stage's decided, uncommitted windows, just before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        behind = lag(bootstrap, f"{name}-group", topic, 3)
        unproduced = producer.is_alive()
        mid_stream += behind > 0 or unproduced
        both += (behind > 0 or unproduced) and pending > 0
        print(f"kill {k + 1:2d} at {time.monotonic() - t0:6.1f}s: lag {behind}, producer still streaming: {unproduced}, "
              f"model windows decided, uncommitted {pending:.0f}", flush=True)
    producer.join()
    proc = start(cfg, idle_exit=8)
    out, _ = proc.communicate(timeout=600)
    m = STOPPED.search(out)
    assert proc.returncode == 0 and m, out
    consumed, processed, dead = (int(x) for x in m.groups())

    ref = f"ref-{run_id}"
    ref_proc = start(config(tmp, ref, bootstrap, topic), idle_exit=8)
    ref_proc.communicate(timeout=600)
    want_alerts, want_commands = transitions(bootstrap, ref)
    got_alerts, got_commands = transitions(bootstrap, name)

    dup_alerts = len(got_alerts) - len(set(got_alerts))
    dup_commands = len(got_commands) - len(set(got_commands))
    missing = len(set(want_alerts) - set(got_alerts)) + len(set(want_commands) - set(got_commands))
    extra = len(set(got_alerts) - set(want_alerts)) + len(set(got_commands) - set(want_commands))
    final_lag = lag(bootstrap, f"{name}-group", topic, 3)
    print(f"\nkills: {kills} (all survived: the last instance restored and finished), {mid_stream} with input unprocessed, "
          f"{both} of them with model-stage decisions uncommitted too")
    print(f"events produced: {total}; consumed {consumed} = processed {processed} + dead-lettered {dead}; "
          f"lost {total - processed - dead}; final lag {final_lag}")
    print(f"alert transitions: {len(got_alerts)} (reference {len(want_alerts)}), duplicates {dup_alerts}; "
          f"command ids: {len(got_commands)} (reference {len(want_commands)}), duplicates {dup_commands}")
    print(f"missing vs reference: {missing}; extra vs reference: {extra}")
    ok = (total == processed + dead and not dup_alerts and not dup_commands and not missing and not extra
          and final_lag == 0 and want_alerts)
    print("faults: OK" if ok else "faults: FAILED")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=150.0, help="how long the producer streams")
    ap.add_argument("--bootstrap")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-faults-") as d:
        tmp = Path(d)
        if args.bootstrap:
            return run(args.bootstrap, args.kills, args.seconds, tmp)
        state = tmp / "broker"
        info = broker.start(state)
        try:
            return run(info.bootstrap, args.kills, args.seconds, tmp)
        finally:
            broker.stop(state)


if __name__ == "__main__":
    sys.exit(main())
