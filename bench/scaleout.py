"""Scale-out: one `driftline run` process against two in one consumer group, on the same topic.

    python bench/scaleout.py --bootstrap HOST:PORT [--events 600000] [--partitions 6]

The topic (``--partitions`` partitions, the perf benchmark's events: 1,000 segments, prediction plus
10 features) is produced once. Then, each in a fresh consumer group, 1 and 2 processes run over it
until idle; the throughput is the number of events over the time from the first process's first
batch to the last process's last batch (each process prints its own marks). Printed: events/s of
each and the ratio (issue 5's target: 2 processes >= 1.7 x one). The number of processes that can
share the work is capped by the partition count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from perf import FEATURES, make_events  # noqa: E402

from stream.topics import create_topic, produce  # noqa: E402

WORKER = """
import json, sys, time
sys.path.insert(0, {root!r})
from stream.config import Config, KafkaConfig, MetricsConfig, ModelConfig
from stream.service import Service
kafka = KafkaConfig(bootstrap_servers={bootstrap!r}, group_id={group!r}, input_topic={topic!r},
                    alerts_topic={group!r} + ".alerts", control_topic={group!r} + ".control",
                    dead_letter_topic={group!r} + ".dlq", state_topic={group!r} + ".state", batch_size=10_000)
models = {{"fraud": ModelConfig(segment_by=["country", "channel"], features={features!r}, action="circuit_break")}}
service = Service(Config(kafka=kafka, models=models, metrics=MetricsConfig(port=0)))
marks = []
counter = service.metrics.consumed._value  # records this process consumed (restored counts excluded)
service.run(idle_exit=8.0, on_batch=lambda s: marks.append((time.time(), counter.get(), time.process_time())))
print(json.dumps(marks), flush=True)
"""


class MachineCpu:
    """Samples /proc/stat: how many of the machine's cores were busy over a span of wall time."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            idle = fields[3] + fields[4]  # idle + iowait
            self.samples.append((time.time(), sum(fields) - idle, sum(fields)))

    def busy_cores(self, lo: float, hi: float) -> float:
        self._stop.set()
        self._thread.join()
        t = np.array([x[0] for x in self.samples])
        busy, total = (np.interp([lo, hi], t, [x[i] for x in self.samples]) for i in (1, 2))
        return float((busy[1] - busy[0]) / (total[1] - total[0]) * (os.cpu_count() or 1))


def run_group(bootstrap: str, topic: str, processes: int) -> tuple[float, float, float, float]:
    """Events/s over the whole run (first batch to last) and while all processes were consuming; and
    over that span, the cores the driftline processes used and the cores the whole machine used."""
    cpu = MachineCpu()
    group = f"scale{processes}-{uuid.uuid4().hex[:8]}"
    code = WORKER.format(root=str(ROOT), bootstrap=bootstrap, group=group, topic=topic, features=FEATURES)
    errs = [tempfile.TemporaryFile() for _ in range(processes)]  # noqa: SIM115 - closed below
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err) for err in errs]
    runs = []
    for p, err in zip(procs, errs, strict=True):
        out = p.communicate(timeout=1800)[0]
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
        err.close()
        if p.returncode != 0 or not out.strip():
            raise SystemExit(f"a worker failed (exit {p.returncode}):\n{tail}")
        runs.append(json.loads(out))
    start = min(r[0][0] for r in runs)
    end = max(r[-1][0] for r in runs)
    total = sum(r[-1][1] for r in runs) - min(runs, key=lambda r: r[0][0])[0][1]
    # The span in which every process was consuming: after the last one's first batch, before the
    # first one's last batch (rebalances on join and the tail where one process has finished excluded).
    lo, hi = max(r[0][0] for r in runs), min(r[-1][0] for r in runs)
    both = ours = 0.0
    for r in runs:
        t, n, c = (np.array([m[i] for m in r]) for i in range(3))
        both += float(np.interp(hi, t, n) - np.interp(lo, t, n))
        ours += float(np.interp(hi, t, c) - np.interp(lo, t, c))
    if hi <= lo:
        return total / (end - start), float("nan"), float("nan"), float("nan")
    return total / (end - start), both / (hi - lo), ours / (hi - lo), cpu.busy_cores(lo, hi)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--segments", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()
    events = make_events(args.events, args.segments)
    topic = f"scale-{uuid.uuid4().hex[:8]}.in"
    create_topic(args.bootstrap, topic, partitions=args.partitions)
    produce(args.bootstrap, topic, events)
    print(f"events: {len(events):,} on {args.partitions} partitions, {args.segments} segments, prediction + 10 features")
    rates = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        whole, steady, ours, busy = run_group(args.bootstrap, topic, n)
        rates[n] = (whole, steady, busy)
        print(f"{n} process(es): {whole:,.0f} events/s first batch to last, {steady:,.0f} events/s while all "
              f"{n} consumed ({time.perf_counter() - t0:.0f}s with start-up and idle exit); meanwhile driftline "
              f"used {ours:.2f} cores, the whole machine {busy:.2f} of {os.cpu_count()} (the rest: the broker, "
              f"this script)", flush=True)
    print(f"ratio 2 / 1: {rates[2][0] / rates[1][0]:.2f} over the whole run, {rates[2][1] / rates[1][1]:.2f} "
          "while both consumed (target >= 1.7)")
    # Every event costs the same CPU (driftline's and the broker's) however many processes share it,
    # so the machine caps the ratio at (cores) / (cores busy with one process).
    print(f"ceiling on this machine: {(os.cpu_count() or 1) / rates[1][2]:.2f} "
          f"({os.cpu_count()} cores / {rates[1][2]:.2f} busy with one process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
