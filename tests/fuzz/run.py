"""Run a fuzz target under atheris (coverage-guided): ``python -m tests.fuzz.run TARGET [libFuzzer flags]``.

The target's seed corpus is ``tests/fuzz/corpus/TARGET/``; new inputs go to ``.fuzz/corpus/TARGET/``
(kept between runs, out of the repository), crashes to ``.fuzz/crashes/TARGET/``. ``make fuzz``
runs every target for ``FUZZ_SECONDS`` each; a crash file becomes a regression row once it is
understood (the bad-input table in tests/test_engine.py, or a test of its own).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tests.fuzz.run TARGET [libFuzzer flags]")
    name, flags = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=["stream", "tests.fuzz"]):
        from tests.fuzz import targets
    target = targets.TARGETS.get(name)
    if target is None:
        sys.exit(f"unknown target {name!r} (one of {', '.join(targets.TARGETS)})")
    work = ROOT / ".fuzz" / "corpus" / name
    crashes = ROOT / ".fuzz" / "crashes" / name
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    seeds = ROOT / "tests" / "fuzz" / "corpus" / name
    # Warm the target's caches (a warm engine, a snapshot) before coverage counts.
    target(b"")
    args = [sys.argv[0], *flags, f"-artifact_prefix={crashes}/", str(work), str(seeds)]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
