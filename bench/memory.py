"""Memory per series: bytes of state per series and process RSS at 10,000 and 100,000 series.

    python bench/memory.py [--series 10000 100000] [--features 0 10]

A series is a model x segment x signal (issue 5's unit): a segment has the volume signal, the
prediction and ``--features`` feature signals, and per signal its statistics for every calendar
slot key of a weekly calendar (168 hours of the week, 48 weekday/weekend hours, and the holidays
of the weeks filled). For each size, a fresh process builds an engine, registers enough segments
for that many series, and fills every slot of every series through the real fold path (a
week of windows, twice over, so that every slot key of every series holds numbers), plus the
recent and same-slot score history. Reported: state bytes per series and per signal, the binary
snapshot's size, and the process RSS (with the interpreter and libraries, about 90 MB, in it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(series: int, features: int) -> dict[str, float]:
    segments = -(-series // (features + 2))
    import numpy as np

    from stream.baseline import Batch
    from stream.config import Config, ModelConfig
    from stream.engine import Engine
    from stream.simulate import HOUR_MS
    from stream.sketch import NumericSpec
    from stream.state import dumps

    names = [f"f{j:02d}" for j in range(features)]
    engine = Engine(Config(models={"m": ModelConfig(segment_by=["s"], features=names)}))
    m = engine.models["m"]
    m.spec = NumericSpec()
    m.spec.learn(np.linspace(0, 1, 2000))
    base = rss_mb()
    for i in range(segments):
        seg = {"s": f"seg{i:06d}"}
        engine._new_series(m, seg, f"s={seg['s']}")
    st = m.store
    fsize = m.features.max_size if m.features is not None else 0
    st.ensure(m.spec.size, dict.fromkeys(names, fsize))
    st.fsize = [fsize] * features
    rows = st.rows_for(list(m.sids))
    rng = np.random.default_rng(1)
    n, b = len(rows), st.hist.shape[2]
    start = 1795716000000 // (7 * 24 * HOUR_MS) * (7 * 24 * HOUR_MS)
    for week in range(2):
        for h in range(168):
            ws = start + (week * 168 + h) * HOUR_MS
            slot = m.calendar.slot(ws)
            count = rng.poisson(100, n).astype(np.float64)
            hist = rng.multinomial(100, np.full(b, 1 / b), n).astype(np.float64)
            feat = rng.multinomial(100, np.full(fsize, 1 / fsize), (n, features)).astype(np.float64) if features else None
            ok = np.ones((n, features), bool) if features else None
            batch = Batch(count, hist, count * 0.5, count * 0.3, np.ones(n, bool), feat, ok)
            st.fold_many(rows, slot.store, batch)
            st.note_many(rows, slot.chain[0], ws, count, np.full((n, 3), 0.01), np.full((n, 3), 0.02))
    total = rss_mb()
    blob = dumps(engine)
    signals = features + 2
    return {"series": segments * signals, "segments": segments, "signals": signals, "slot_keys": len(st.keys),
            "store_bytes_per_segment": st.nbytes() / segments, "store_bytes_per_series": st.nbytes() / segments / signals,
            "snapshot_mb": len(blob) / 2**20, "rss_mb": total, "rss_growth_mb": total - base}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--features", type=int, nargs="+", default=[0, 10])
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    print(f"# python {sys.version.split()[0]}; a fresh process per row")
    print("| series (segment x signal) | segments | signals per segment | slot keys | state KB / segment "
          "| state KB / series | snapshot MB | RSS MB | RSS growth MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for features in args.features:
        for series in args.series:
            out = subprocess.run([sys.executable, __file__, "--child", str(series), str(features)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {r['series']:,} | {r['segments']:,} | {r['signals']} | {r['slot_keys']} "
                  f"| {r['store_bytes_per_segment'] / 1024:.1f} | {r['store_bytes_per_series'] / 1024:.1f} "
                  f"| {r['snapshot_mb']:.0f} | {r['rss_mb']:.0f} | {r['rss_growth_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
