"""Daylight-saving changes: do windows longer than an hour keep their calendar slots?

    python bench/dst.py [--weeks 10] [--rate 60]

A model in America/New_York with 2 h, 6 h and 1 d windows, on healthy synthetic traffic
(``stream.simulate``: days, nights, weekends, US holidays) whose last five weeks follow one of
2026's two changes (spring forward on 2026-03-08, fall back on 2026-11-01). Windows are laid on the
model's local clock (``stream.grid``), so a 6 h window starts at 00:00, 06:00, 12:00 and 18:00
local on both sides of a change, the slot keys stay the same, and every slot keeps its history:
a baseline restart shows here as slot keys beyond the ``7 x 24 / hours`` of a week, or as a slot
with fewer windows than the weeks it has seen (less its holidays and bridge days, which are stored
apart). Reports, per change and window: alerts (none is right: nothing changed but the clocks),
slot keys against the expected number, and the fewest and the median windows a slot of the week
holds at the end. The streams end at a local midnight, so the last day window is a whole one (a
stream cut at 03:00 ends with a day window of three hours, a volume drop). See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.config import Config, Defaults, ModelConfig  # noqa: E402
from stream.decode import Record  # noqa: E402
from stream.engine import Engine, Output  # noqa: E402
from stream.simulate import Scenario, simulate  # noqa: E402
from stream.store import SeriesStore  # noqa: E402

ZONE = "America/New_York"
CHANGES = {"spring forward 2026-03-08": datetime(2026, 3, 8, 7, tzinfo=ZoneInfo("UTC")),
           "fall back 2026-11-01": datetime(2026, 11, 1, 6, tzinfo=ZoneInfo("UTC"))}
WINDOWS = {"2h": 2, "6h": 6, "1d": 24}


def run(change: datetime, window: str, weeks: int, rate: float, seed: int) -> dict[str, object]:
    # five weeks after the change, at a local midnight: the last day window is a whole one
    after = (change + timedelta(weeks=5)).astimezone(ZoneInfo(ZONE))
    end = int(after.replace(hour=0, minute=0).timestamp() * 1000)
    sc = Scenario(weeks=weeks, end_ms=end, rate=rate, timezone=ZONE)
    cfg = Config(models={"fraud": ModelConfig()}, defaults=Defaults(window=window, timezone=ZONE))  # type: ignore[arg-type]
    engine = Engine(cfg)
    out = Output()
    raw = [orjson.dumps(e) for e in simulate(sc, seed=seed)]
    for i in range(0, len(raw), 5000):
        out.extend(engine.process([Record(r, None, "in", 0, i + j) for j, r in enumerate(raw[i:i + 5000])]))
    out.extend(engine.finish())
    st = engine.models["fraud"].store
    how = [(k, c) for k, c in st.keys.items() if k[0] == "how"]
    # windows each hour-of-week slot of each series has seen (every series and slot, at the end)
    held = [int(st.scal[r, c, SeriesStore.N_ALL]) for _sid, r in st.rows.items() for _k, c in how]
    firing = [a for a in out.alerts if a.status == "firing"]
    return {"window": window, "alerts": len(firing), "keys": len(how), "expected_keys": 7 * 24 // WINDOWS[window],
            "fewest": min(held), "median": statistics.median(held), "weeks": weeks,
            "local_starts": sorted({str(k[-1]) for k, _c in how})}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weeks", type=int, default=10)
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    print(f"| change | window | alerts | slot keys (expected) | windows per slot: fewest / median (of {args.weeks} weeks) "
          "| local starts |")
    print("|---|---|---|---|---|---|")
    for name, change in CHANGES.items():
        for window in WINDOWS:
            r = run(change, window, args.weeks, args.rate, args.seed)
            starts = r["local_starts"]
            print(f"| {name} | {window} | {r['alerts']} | {r['keys']} ({r['expected_keys']}) | {r['fewest']} / "
                  f"{r['median']} | {', '.join(starts) if len(starts) <= 12 else len(starts)} |")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
