# driftline: the obvious targets. Everything runs from a local virtual environment (.venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup jars test unit lint typecheck schemas demo broker-start broker-stop bench bench-perf bench-memory fuzz fuzz-native clean

setup: $(VENV)/.installed

# The compiled batch decoder (native/, Rust) is built by the install, when cargo is there.
$(VENV)/.installed: pyproject.toml native/Cargo.toml native/src/lib.rs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Fetch the Kafka broker's jars from Maven Central once (cached under ~/.cache/driftline).
jars: setup
	$(BIN)/python -c 'from stream.broker import ensure_jars; print(ensure_jars())'

# The test command: unit tests, doctests and integration tests against a real Kafka broker
# (the one in DRIFTLINE_TEST_BOOTSTRAP, or one the tests start themselves). Two workers, a file
# each at a time: the broker tests mostly wait on Kafka, so the unit tests run beside them
# (19.5 min one at a time on two cores, 11 min so).
test: setup jars
	$(BIN)/python -m pytest -n 2 --dist loadfile

unit: setup
	$(BIN)/python -m pytest -m 'not kafka'

lint: setup
	$(BIN)/ruff check stream tests bench

typecheck: setup
	$(BIN)/mypy

schemas: setup
	$(BIN)/driftline schema --write schemas

# The main job on the local broker: start it, simulate weeks of traffic with one drift, detect, break.
demo: setup jars
	$(BIN)/driftline demo

broker-start: setup
	$(BIN)/driftline broker start

broker-stop: setup
	$(BIN)/driftline broker stop

bench: setup
	$(BIN)/python bench/throughput.py

# Issue 5's benchmarks against the local broker (`make broker-start` first); results in BENCHMARKS.md.
bench-perf: setup
	$(BIN)/python bench/perf.py --bootstrap $$($(BIN)/driftline broker status | tail -1)

bench-memory: setup
	$(BIN)/python bench/memory.py

# Coverage-guided fuzzing (atheris) of the decoders, the engine, the control subscriber and state
# restore, FUZZ_SECONDS each (30 minutes by default); crashes land in .fuzz/crashes/TARGET/.
FUZZ_SECONDS ?= 1800
FUZZ_TARGETS ?= decode engine subscriber state
FUZZ_RUSTFLAGS := -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
  -C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-pc-table \
  -C llvm-args=-sanitizer-coverage-trace-compares
HOST_TRIPLE = $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')

# The compiled decoder with LLVM's coverage instrumentation (stable Rust, libFuzzer's hooks come from
# atheris): the fuzz targets then see the Rust code's coverage too. --target keeps build scripts plain.
fuzz-native: .fuzz/native/_native.so
.fuzz/native/_native.so: native/Cargo.toml native/Cargo.lock native/src/lib.rs
	cd native && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" cargo build --release --target $(HOST_TRIPLE) --target-dir ../.fuzz/target
	mkdir -p .fuzz/native && cp .fuzz/target/$(HOST_TRIPLE)/release/lib_native.so $@

fuzz: setup fuzz-native
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	  $(BIN)/python -m tests.fuzz.run $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache driftline-demo .fuzz
