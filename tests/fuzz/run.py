"""Run a fuzz target under atheris (coverage-guided): ``python -m tests.fuzz.run TARGET [libFuzzer flags]``.

Coverage comes from the Python code (atheris instruments ``stream`` and the targets as they are
imported) and, when ``.fuzz/native/_native.so`` exists, from the compiled decoder too: ``make
fuzz-native`` builds that copy of native/ with LLVM's sanitizer-coverage instrumentation (stable
Rust), whose hooks resolve to the libFuzzer inside atheris, loaded with global symbols first. The
target's seed corpus is ``tests/fuzz/corpus/TARGET/``; new inputs go to ``.fuzz/corpus/TARGET/``
(kept between runs, out of the repository), crashes to ``.fuzz/crashes/TARGET/``. ``make fuzz`` runs
every target for ``FUZZ_SECONDS`` each; a crash file becomes a regression row once it is understood
(the bad-input table in tests/test_engine.py, or a corpus file here).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / ".fuzz" / "native" / "_native.so"

import atheris  # noqa: E402


def _libfuzzer_global() -> None:
    """libFuzzer's coverage hooks as global symbols. atheris imports its libFuzzer privately when
    fuzzing starts (and made global before that, it takes it for another build's and will not
    run), so this happens in the first run, and the instrumented extension is loaded after it."""
    import ctypes

    core = next(Path(atheris.__file__).parent.glob("core_with_libfuzzer*.so"))
    ctypes.CDLL(str(core), mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)


def _instrumented_native() -> bool:
    """Load the coverage-instrumented build of stream._native in place of the installed one."""
    if not NATIVE.exists():
        return False
    if NATIVE.stat().st_mtime < max(f.stat().st_mtime for f in (ROOT / "native" / "src").glob("*.rs")):
        print("warning: .fuzz/native/_native.so is older than native/src: run make fuzz-native", file=sys.stderr)
        return False
    _libfuzzer_global()
    loader = importlib.machinery.ExtensionFileLoader("stream._native", str(NATIVE))
    spec = importlib.util.spec_from_file_location("stream._native", NATIVE, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules["stream._native"] = module
    return True


def _load(name: str) -> Callable[[bytes], None]:
    native = _instrumented_native()
    print(f"fuzzing {name}; compiled decoder {'instrumented' if native else 'not instrumented'}", file=sys.stderr)
    with atheris.instrument_imports(include=["stream", "tests.fuzz"]):
        from tests.fuzz import targets
    target = targets.TARGETS[name]
    target(b"")  # warm the target's caches (a warm engine, a snapshot)
    return target


def main() -> None:
    names = ("decode", "engine", "subscriber", "state")
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        sys.exit(f"usage: python -m tests.fuzz.run TARGET [libFuzzer flags] (TARGET: {', '.join(names)})")
    name, flags = sys.argv[1], sys.argv[2:]
    work = ROOT / ".fuzz" / "corpus" / name
    crashes = ROOT / ".fuzz" / "crashes" / name
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    seeds = ROOT / "tests" / "fuzz" / "corpus" / name
    loaded: list[Callable[[bytes], None]] = []

    def one(data: bytes) -> None:
        if not loaded:  # the first run: libFuzzer is loaded now (see _libfuzzer_global)
            loaded.append(_load(name))
        loaded[0](data)

    atheris.Setup([sys.argv[0], *flags, f"-artifact_prefix={crashes}/", str(work), str(seeds)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
