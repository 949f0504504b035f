"""Time to break: wall-clock seconds from a model's first broken prediction to the ``circuit_break``
a read_committed subscriber of the control topic sees, on the real broker (issue 14's targets).

    python bench/time_to_break.py --bootstrap HOST:PORT [--quiet-minutes 10] [--session 1,2]

Each session is one service (``driftline run``, default settings: 1 h windows, 2 s commit interval)
over a fresh topic: three weeks of history for 3 models x 4 segments, then live traffic with
``ts`` = now at ``--rate`` events/s per segment. First ``--quiet-minutes`` of healthy traffic (breaks
counted: there must be none), then one break after another, each on a model not broken yet:

- session 1: null predictions on one segment; one constant prediction on one segment; +3 sd on one segment;
- session 2: null predictions on every segment; +1 sd on one segment; a model silent on every segment.

History at the live rate in the calendar slots the live part is judged against: the same weekday at
the hours of day the live part runs in (``--dense-hours`` from now's, at ``--rate``). Elsewhere it is
thinner (``--history-rate`` events/h per segment; three weeks at 20/s everywhere would be 435
million events); those slots are the same in shape, only their volume differs, and no live window is
judged against them. Why not thin everywhere: a baseline learned from 400 events a window knows each
bin's share to a few points only, and the fast lane's ceiling must allow for that, so a +1 sd shift
looked healthy against it (the first measurement). Predictions per segment are Beta draws of their
own shape, stationary over the weeks. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.contract import Alert, Command  # noqa: E402
from stream.topics import create_topic  # noqa: E402

HOUR_MS = 3_600_000
MODELS = ("fraud", "churn", "ranker")
SEGMENTS = tuple({"country": c, "channel": ch} for c in ("US", "DE") for ch in ("web", "app"))
SHAPES = ((2.0, 5.0), (3.0, 3.0), (5.0, 2.0), (2.5, 4.0))  # Beta(a, b) per segment


def config(path: Path, bootstrap: str, name: str, topic: str) -> Path:
    models = "".join(f'\n[models.{m}]\naction = "circuit_break"\nsegment_by = ["country", "channel"]\n' for m in MODELS)
    path.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{name}"
input_topic = "{topic}"
alerts_topic = "{name}.alerts"
control_topic = "{name}.control"
dead_letter_topic = "{name}.dlq"
state_topic = "{name}.state"

[metrics]
port = 0
{models}""")
    return path


def event(model: str, seg: int, ts: int, pred: object, n: int, served: bool = True) -> bytes:
    e = {"event_id": f"{model}-{seg}-{n}", "model": model, "ts": ts, "segment": SEGMENTS[seg], "prediction": pred}
    if not served:
        e["served"] = False
    return orjson.dumps(e)


def history(producer: Producer, topic: str, end_ms: int, rate: float, rng: np.random.Generator,
            dense_rate: float = 0.0, dense_hours: int = 0) -> int:
    """Three weeks of whole hours before ``end_ms`` at ``rate`` events/h per segment, in time order;
    at ``dense_rate`` in the hours of the same weekday and hour of day as the ``dense_hours`` from
    ``end_ms``'s (UTC: the bench's models keep the default timezone)."""
    now = end_ms // HOUR_MS * HOUR_MS
    start = now - 21 * 24 * HOUR_MS
    week = 7 * 24 * HOUR_MS
    dense = {(now + i * HOUR_MS) % week for i in range(dense_hours)}
    n = 0
    for h in range(start, end_ms, HOUR_MS):
        per_hour = dense_rate if h % week in dense else rate
        for m in MODELS:
            for s, (a, b) in enumerate(SHAPES):
                k = rng.poisson(per_hour)
                ts = np.sort(rng.integers(h, min(h + HOUR_MS, end_ms), k))
                for t, p in zip(ts.tolist(), rng.beta(a, b, k).round(4).tolist(), strict=True):
                    producer.produce(topic, event(m, s, t, p, n), key=f"{m}|{s}".encode())
                    n += 1
                    if n % 50_000 == 0:
                        producer.poll(0)
        producer.poll(0)
    producer.flush(120)
    return n


class Live(threading.Thread):
    """Healthy traffic with ts = now for every model and segment; ``breaks`` changes what one
    (model, segment) sends: "null", "constant", a shift in standard deviations, or "silent"."""

    def __init__(self, bootstrap: str, topic: str, rate: float, seed: int):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        self.topic, self.rate = topic, rate
        self.rng = np.random.default_rng(seed)
        self.breaks: dict[tuple[str, int], object] = {}
        self.first_broken: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        self.n = 10**9

    def run(self) -> None:
        tick = 0.05
        while not self.stop.is_set():
            t0 = time.time()
            for m in MODELS:
                for s, (a, b) in enumerate(SHAPES):
                    for _ in range(self.rng.poisson(self.rate * tick)):
                        what = self.breaks.get((m, s))
                        if what == "silent":
                            continue
                        p: object = round(float(self.rng.beta(a, b)), 4)
                        if what == "null":
                            p = None
                        elif what == "constant":
                            p = 0.4242
                        elif isinstance(what, float):
                            sd = (a * b / ((a + b) ** 2 * (a + b + 1))) ** 0.5
                            p = round(min(1.0, float(p) + what * sd), 4)  # type: ignore[arg-type]
                        self.n += 1
                        self.producer.produce(self.topic, event(m, s, int(time.time() * 1000), p, self.n),
                                              key=f"{m}|{s}".encode())
                        if what is not None:
                            self.first_broken.setdefault((m, s), time.time())
            self.producer.poll(0)
            time.sleep(max(0.0, tick - (time.time() - t0)))
        self.producer.flush(10)


def watch(bootstrap: str, name: str) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{name}-bench-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([f"{name}.control", f"{name}.alerts"])
    return c


def session(args: argparse.Namespace, number: int, plan: list[tuple[str, str, list[int], object]]) -> list[list[str]]:
    run = uuid.uuid4().hex[:8]
    name, topic = f"ttb-{run}", f"ttb-{run}.predictions"
    create_topic(args.bootstrap, topic, partitions=3)
    rng = np.random.default_rng(number)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 2_000_000})
    t = time.time()
    n = history(producer, topic, int(time.time() * 1000), args.history_rate, rng, args.rate * 3600, args.dense_hours)
    print(f"session {number}: {n} history events produced in {time.time() - t:.0f} s", flush=True)
    tmp = Path(tempfile.mkdtemp())
    log = (tmp / "service.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "stream", "--log-level", "WARNING", "run", "--config",
                             str(config(tmp / "c.toml", args.bootstrap, name, topic))], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    live = Live(args.bootstrap, topic, args.rate, seed=number)
    consumer = watch(args.bootstrap, name)
    rows: list[list[str]] = []
    seen_breaks: list[Command] = []
    seen_at: list[float] = []  # when each command was read
    alerts: list[Alert] = []
    alert_at: list[float] = []

    def drain(timeout: float) -> None:
        for msg in consumer.consume(500, timeout):
            value = msg.value()
            if msg.error() or value is None:
                continue
            if str(msg.topic()).endswith(".control"):
                seen_breaks.append(Command.model_validate_json(value))
                seen_at.append(time.time())
            else:
                alerts.append(Alert.model_validate_json(value))
                alert_at.append(time.time())

    try:
        # Catch up on the history first (its last windows close), then go live.
        t = time.time()
        live.start()
        while time.time() - t < args.catch_up:
            drain(1.0)
        print(f"session {number}: live after {time.time() - t:.0f} s of catching up; history breaks: "
              f"{sum(c.action == 'circuit_break' for c in seen_breaks)}", flush=True)
        before = len(seen_breaks)
        quiet_end = time.time() + args.quiet_minutes * 60
        while time.time() < quiet_end:
            drain(1.0)
        quiet = [c for c in seen_breaks[before:] if c.action == "circuit_break"]
        rows.append([f"{number}", f"no break: {args.quiet_minutes:g} live minutes of healthy traffic",
                     f"{len(quiet)} breaks", ", ".join(sorted({c.model for c in quiet})) or "-"])
        for label, model, segs, what in plan:
            mark, n_alerts = len(seen_breaks), len(alerts)
            started = time.time()
            for s in segs:
                live.breaks[(model, s)] = what
            deadline = started + args.timeout
            found: tuple[float, str] | None = None
            while time.time() < deadline and found is None:
                drain(0.5)
                if what == "silent":
                    i = next((i for i in range(n_alerts, len(alerts))
                              if alerts[i].model == model and alerts[i].signal == "volume"), None)
                    found = None if i is None else (alert_at[i], alerts[i].test)
                else:
                    i = next((i for i in range(mark, len(seen_breaks))
                              if seen_breaks[i].model == model and seen_breaks[i].action == "circuit_break"), None)
                    if i is not None:
                        cause = next((a.test for a in alerts if a.alert_id == seen_breaks[i].reason.alert_id), "?")
                        found = (seen_at[i], cause)
            t0 = started if what == "silent" else min(live.first_broken.get((model, s), started) for s in segs)
            if found is None:
                rows.append([f"{number}", label, f"none within {args.timeout:.0f} s", "-"])
            else:
                rows.append([f"{number}", label, f"{found[0] - t0:.1f} s", found[1]])
            print(" | ".join(rows[-1]), flush=True)
            for s in segs:  # back to healthy predictions, scored in the dark from now on
                live.breaks.pop((model, s), None)
    finally:
        live.stop.set()
        live.join(timeout=30)
        consumer.close()
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--rate", type=float, default=20.0, help="live events/s per segment")
    ap.add_argument("--history-rate", type=float, default=400.0, help="history events/h per segment")
    ap.add_argument("--dense-hours", type=int, default=2,
                    help="hours of day, from now's, whose same-weekday history is at the live rate")
    ap.add_argument("--quiet-minutes", type=float, default=10.0)
    ap.add_argument("--catch-up", type=float, default=150.0, help="seconds to read the history before going live")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each break")
    ap.add_argument("--session", default="1,2")
    args = ap.parse_args()
    plans = {
        1: [("null predictions on one segment", "fraud", [0], "null"),
            ("one constant prediction on one segment", "churn", [1], "constant"),
            ("+3 sd shift on one segment", "ranker", [2], 3.0)],
        2: [("null predictions on every segment", "fraud", [0, 1, 2, 3], "null"),
            ("+1 sd shift on one segment", "churn", [0], 1.0),
            ("a model silent on every segment (alert)", "ranker", [0, 1, 2, 3], "silent")],
    }
    rows: list[list[str]] = []
    for number in [int(x) for x in args.session.split(",")]:
        rows += session(args, number, plans[number])
    print("\n| session | break | seconds to circuit_break (alert for silence) | test |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
