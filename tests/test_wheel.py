"""A wheel install runs as well as a checkout (issue 13): the package carries what the broker needs.

The wheel is built from this checkout and installed into a fresh virtual environment outside it
(its dependencies are borrowed from the test environment's site-packages, to spare the download;
the checkout itself is not on its path); ``driftline broker start`` from there must find its Maven
pom and config templates inside the installed package and start a broker that answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.kafka  # starts a broker of its own (Java, the cached jars)


def test_the_broker_starts_from_a_wheel_install(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=900, env={**os.environ, "CARGO_TARGET_DIR": str(ROOT / "native" / "target")})
    wheel = next(wheels.glob("driftline-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"stream/kafka/pom.xml", "stream/kafka/server.properties.template", "stream/kafka/log4j2.properties"} <= set(names)
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
                    str(wheel)], check=True, timeout=900)
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "numpy").exists())
    (site / "borrowed-deps.pth").write_text(f"{deps}\n")  # a plain path: the editable install's finder stays out
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DRIFTLINE_KAFKA_DEPLOY")}
    state = tmp_path / "broker"
    run = [str(venv / "bin" / "driftline"), "broker"]
    started = subprocess.run([*run, "start", "--state-dir", str(state)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        bootstrap = started.stdout.strip().splitlines()[-1]
        assert bootstrap.startswith("127.0.0.1:")
        where = subprocess.run([str(venv / "bin" / "python"), "-c", "import stream.broker as b; print(b.deploy_dir())"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert where.startswith(str(venv)), where  # the installed package's files, not the checkout's
        status = subprocess.run([*run, "status", "--state-dir", str(state)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.stdout.strip().splitlines()[-1] == bootstrap
    finally:
        subprocess.run([*run, "stop", "--state-dir", str(state)], cwd=tmp_path, env=env, timeout=120)
