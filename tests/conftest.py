"""Shared fixtures: one real Kafka broker per test session, a fresh topic prefix per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Kafka: the one .ci/run started (DRIFTLINE_TEST_BOOTSTRAP) or our own."""
    given = os.environ.get("DRIFTLINE_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    from stream import broker

    state = tmp_path_factory.mktemp("broker-state")
    info = broker.start(state)
    try:
        yield info.bootstrap
    finally:
        broker.stop(state)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def driftline(*args: str, timeout: float = 300, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line (``python -m stream``) and return its result."""
    proc = subprocess.run(
        [sys.executable, "-m", "stream", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"driftline {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def kcat() -> str | None:
    return shutil.which("kcat") or shutil.which("kafkacat")
