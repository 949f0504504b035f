"""Longer fault-injection run: kill -9 the service 20 times mid-stream (or --kills N) against a real broker.

    python bench/faults.py [--kills 20] [--bootstrap HOST:PORT]

Runs tests/test_kafka_faults.py's kill test with more kills; without --bootstrap the test session
starts its own broker. Prints pytest's verdict; the test compares every alert transition and command
id with an uninterrupted run and checks the group's lag is zero.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--bootstrap")
    args = ap.parse_args()
    env = {**os.environ, "DRIFTLINE_FAULT_KILLS": str(args.kills)}
    if args.bootstrap:
        env["DRIFTLINE_TEST_BOOTSTRAP"] = args.bootstrap
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_kafka_faults.py::test_kill_minus_nine_loses_and_doubles_nothing"]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
