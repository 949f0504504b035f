"""Does the false-alarm budget hold, and does its dial work? Healthy traffic with autocorrelated residuals.

    python bench/budget.py [--models 10] [--segments 100] [--weeks 8] [--budgets 0.25,1,4] [--jobs 2]

Every test that can alert spends from ``false_alarms_per_4_weeks`` (the model's budget, split over
its series and signals: docs/choosing.md). This runs healthy streams through the replay engine
(``stream.replay.replay_lines``) at several budgets and counts what alerts anyway: with nothing
wrong, every new firing notification after the warm-up is a false alert. The streams are the
synthetic seasonal ones (``stream.simulate``: America/New_York, US holidays, days and nights,
weekends) plus what makes real traffic hard, an AR(1) disturbance per segment with a memory of
six hours on the prediction (``--wobble`` of its standard deviation) and on the volume
(``--wobble-volume`` on a log scale): consecutive windows of a segment are alike, so runs of
residuals are common, which online detectors read as change. Models are independent streams of
their own (``--segments`` series each, seeded), so a job is one model at one budget.

Reports, per budget: false alerts per model per four weeks (mean over models, and the median),
their split by test, and the ratio to the budget. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.config import Config, Defaults, ModelConfig  # noqa: E402
from stream.contract import Alert  # noqa: E402
from stream.replay import replay_lines  # noqa: E402
from stream.simulate import WEEK_MS, Scenario, simulate  # noqa: E402

END = 1796176800000  # 2026-12-01 02:00 UTC: the weeks before it hold Labor Day to Thanksgiving and a DST change
WARMUP_WEEKS = 3


def scenario(args: argparse.Namespace, model: int) -> Scenario:
    segments = tuple({"store": f"s{i:03d}"} for i in range(args.segments))
    return Scenario(model=f"m{model}", weeks=args.weeks + WARMUP_WEEKS, end_ms=END, segments=segments,
                    rate=args.rate, timezone="America/New_York", segment_spread=0.0, wobble=args.wobble,
                    wobble_volume=args.wobble_volume, wobble_hours=args.wobble_hours)


def run(args: argparse.Namespace, model: int, budget: float) -> dict[str, object]:
    sc = scenario(args, model)
    cfg = Config(models={sc.model: ModelConfig(timezone="America/New_York", holidays="US")},
                 defaults=Defaults(false_alarms_per_4_weeks=budget))  # type: ignore[call-arg]
    alerts: list[Alert] = []
    t0 = time.perf_counter()
    lines = (orjson.dumps(e) for e in simulate(sc, seed=1000 + model))
    r = replay_lines(lines, cfg, on_alert=alerts.append)
    warm = END - args.weeks * WEEK_MS
    false = [a for a in alerts if a.status == "firing" and a.notify_reason == "new" and a.window_start >= warm]
    return {"model": model, "budget": budget, "false": len(false), "events": r.events,
            "by_test": dict(Counter(f"{a.signal}/{a.test}" for a in false)),
            "seconds": round(time.perf_counter() - t0, 1)}


ARGS: argparse.Namespace | None = None


def _job(spec: tuple[int, float]) -> dict[str, object]:
    assert ARGS is not None
    return run(ARGS, *spec)


def main() -> int:
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--segments", type=int, default=100)
    ap.add_argument("--weeks", type=int, default=8, help="measured weeks, after a warm-up of three")
    ap.add_argument("--rate", type=float, default=6.0, help="mean events per segment and hour")
    ap.add_argument("--budgets", default="0.25,1,4")
    ap.add_argument("--wobble", type=float, default=0.3)
    ap.add_argument("--wobble-volume", type=float, default=0.15)
    ap.add_argument("--wobble-hours", type=float, default=6.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="/tmp/budget.json")
    ARGS = args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    specs = [(m, b) for b in budgets for m in range(args.models)]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_job, specs))
    Path(args.out).write_text(json.dumps(results, indent=1))
    per4 = 4.0 / args.weeks
    print(f"{args.models} models x {args.segments} series, {args.weeks} weeks measured, rate {args.rate}/h, "
          f"wobble {args.wobble} sd / {args.wobble_volume} log, memory {args.wobble_hours} h; "
          f"{sum(int(r['events']) for r in results) // len(budgets):,} events per budget")  # type: ignore[call-overload]
    print("| budget | false alerts per model per 4 weeks (mean) | median | ratio to budget | by test |")
    print("|---|---|---|---|---|")
    for b in budgets:
        rows = [r for r in results if r["budget"] == b]
        rates = [int(r["false"]) * per4 for r in rows]  # type: ignore[call-overload]
        tests: Counter[str] = Counter()
        for r in rows:
            tests.update(r["by_test"])  # type: ignore[arg-type]
        mean = statistics.fmean(rates)
        split = ", ".join(f"{k} {v}" for k, v in tests.most_common())
        print(f"| {b:g} | {mean:.2f} | {statistics.median(rates):.2f} | {mean / b:.2f} | {split or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
