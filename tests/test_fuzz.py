"""The fuzz targets (tests/fuzz/targets.py) in the test suite: every seed and regression input of
their corpora through its target, then a short coverage-guided run of each under atheris.

Longer runs: ``make fuzz`` (``FUZZ_SECONDS`` per target). An input that breaks a target is saved
under ``.fuzz/crashes/TARGET/``; once understood it goes into the corpus here (and, for an event,
into the bad-input table of tests/test_engine.py), so it is run on every test run from then on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .fuzz.targets import TARGETS

CORPUS = Path(__file__).parent / "fuzz" / "corpus"
SECONDS = int(os.environ.get("DRIFTLINE_FUZZ_SECONDS", "15"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_corpus_input_passes_its_target(name: str) -> None:
    files = sorted((CORPUS / name).iterdir())
    assert files, f"no corpus for {name}"
    for f in files:
        TARGETS[name](f.read_bytes())


# libFuzzer's memory limit reads the process's peak RSS, which a child inherits from the process it
# was forked from (Linux keeps the high-water mark across exec): a test worker that held a few GB for
# an earlier test made every fuzz run "out of memory" at its first input. A small launcher process
# in between gives the fuzzer a peak of its own.
LAUNCH = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


#: Targets whose input is a whole engine run (a few per second on a busy machine): a number of runs,
#: not a time, so that a loaded machine only makes the run longer, never a failure.
SLOW = {"engine": 60}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_coverage_guided_run_finds_nothing(name: str, tmp_path: Path) -> None:
    budget = [f"-runs={SLOW[name]}", f"-max_total_time={SECONDS * 20}"] if name in SLOW else [f"-max_total_time={SECONDS}"]
    proc = subprocess.run([sys.executable, "-c", LAUNCH, sys.executable, "-m", "tests.fuzz.run", name,
                           *budget, "-print_final_stats=1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=SECONDS * 20 + 300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # CI builds the compiled decoder with coverage hooks (make fuzz-native): the Rust code is fuzzed
    # with coverage feedback too, not only as a black box behind the Python targets.
    if os.environ.get("CI") or (ROOT / ".fuzz" / "native" / "_native.so").exists():
        assert "compiled decoder instrumented" in proc.stderr, proc.stderr[-2000:]
    runs = [line for line in proc.stderr.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert runs and int(runs[-1].split(":")[-1]) > 50, proc.stderr[-2000:]
