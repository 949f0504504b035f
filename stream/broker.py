"""A local single-node Apache Kafka broker, run from its Maven Central jars (no Docker needed).

``driftline broker start`` fetches the broker's runtime jars once with Maven (``stream/kafka/pom.xml``,
package data, so that a wheel install runs it as well as a checkout), formats a KRaft storage directory in a temporary folder, starts ``kafka.Kafka`` as a detached
process and waits until an AdminClient sees the broker. ``stop`` sends SIGTERM to that process only
(never ``kafka-server-stop.sh``, which stops every broker on the machine).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

KAFKA_VERSION = "4.1.1"
_QUIET = logging.getLogger("driftline.broker.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_DEPLOY = Path(__file__).resolve().parent / "kafka"  # package data: pom, broker config templates


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or reached."""


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    bootstrap: str
    data_dir: str
    log_file: str
    heap: str = "512m"


def home() -> Path:
    """Where jars and broker state live (``DRIFTLINE_HOME``, default ``~/.cache/driftline``)."""
    return Path(os.environ.get("DRIFTLINE_HOME", Path.home() / ".cache" / "driftline"))


def deploy_dir() -> Path:
    return Path(os.environ.get("DRIFTLINE_KAFKA_DEPLOY", _DEPLOY))


def ensure_jars() -> Path:
    """Return the folder of broker jars, fetching them with Maven on first use."""
    libs = home() / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    pom = deploy_dir() / "pom.xml"
    if not pom.exists():
        raise BrokerError(f"broker pom not found at {pom} (set DRIFTLINE_KAFKA_DEPLOY)")
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"fetching Kafka jars failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(KAFKA_VERSION)
    return libs


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerError("java (17 or newer) is needed to run the Kafka broker")
    return found


def _state_file(state_dir: Path) -> Path:
    return state_dir / "broker.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state where /proc exists.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split()[2] != "Z"
        except (OSError, IndexError):
            return True
    return True


def reachable(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when an AdminClient lists at least one broker (an open port is not enough)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)},
        logger=_QUIET,
    )
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False
    return len(md.brokers) > 0


def read_state(state_dir: Path | None = None) -> BrokerInfo | None:
    path = _state_file(state_dir or home() / "broker")
    if not path.exists():
        return None
    try:
        return BrokerInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def status(state_dir: Path | None = None) -> BrokerInfo | None:
    """The running broker started from ``state_dir``, or None."""
    info = read_state(state_dir)
    if info is None or not _alive(info.pid) or not reachable(info.bootstrap, timeout=3.0):
        return None
    return info


def start(state_dir: Path | None = None, heap: str = "512m", timeout: float = 120.0) -> BrokerInfo:
    """Start a broker (or return the one already running from ``state_dir``)."""
    state_dir = state_dir or home() / "broker"
    state_dir.mkdir(parents=True, exist_ok=True)
    running = status(state_dir)
    if running is not None:
        return running
    stale = read_state(state_dir)
    if stale is not None:
        stop(state_dir)
    libs = ensure_jars()
    data_dir = Path(tempfile.mkdtemp(prefix="driftline-kafka-"))
    broker_port, controller_port = _free_port(), _free_port()
    while controller_port == broker_port:
        controller_port = _free_port()
    template = string.Template((deploy_dir() / "server.properties.template").read_text())
    props = data_dir / "server.properties"
    props.write_text(
        template.substitute(
            broker_port=broker_port,
            controller_port=controller_port,
            log_dirs=str(data_dir / "log"),
        )
    )
    java = _java()
    classpath = f"{libs}/*"
    jvm = _jvm(heap, data_dir)
    cluster_id = uuid.uuid4().hex[:22]
    fmt = subprocess.run(
        [java, *jvm, "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
         "-t", cluster_id, "-c", str(props)],
        capture_output=True, text=True, check=False,
    )
    if fmt.returncode != 0:
        raise BrokerError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    info = BrokerInfo(
        pid=0,
        bootstrap=f"127.0.0.1:{broker_port}",
        data_dir=str(data_dir),
        log_file=str(data_dir / "server.log"),
        heap=heap,
    )
    return _launch(state_dir, info, timeout)


def _jvm(heap: str, data_dir: Path) -> list[str]:
    return [
        f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={data_dir}",
    ]


def _launch(state_dir: Path, info: BrokerInfo, timeout: float) -> BrokerInfo:
    """Run ``kafka.Kafka`` on a formatted data dir and wait until an AdminClient sees it."""
    data_dir = Path(info.data_dir)
    out = open(data_dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [_java(), *_jvm(info.heap, data_dir), "-cp", f"{ensure_jars()}/*", "kafka.Kafka", str(data_dir / "server.properties")],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    out.close()
    info = BrokerInfo(proc.pid, info.bootstrap, info.data_dir, info.log_file, info.heap)
    _state_file(state_dir).write_text(json.dumps(asdict(info)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (data_dir / "stdout.log").read_text(errors="replace")[-3000:]
            raise BrokerError(f"Kafka exited with {proc.returncode} while starting:\n{tail}")
        if reachable(info.bootstrap, timeout=2.0):
            return info
        time.sleep(0.5)
    stop(state_dir)
    raise BrokerError(f"Kafka did not become ready within {timeout:.0f}s")


def restart(state_dir: Path | None = None, timeout: float = 120.0) -> BrokerInfo:
    """Stop the broker (SIGTERM, clean shutdown) and start it again on the same data and ports."""
    state_dir = state_dir or home() / "broker"
    info = read_state(state_dir)
    if info is None:
        raise BrokerError("no broker to restart")
    _terminate(info.pid, 60.0)
    return _launch(state_dir, info, timeout)


def stop(state_dir: Path | None = None, timeout: float = 30.0) -> bool:
    """SIGTERM our own broker process (SIGKILL after ``timeout``) and remove its data."""
    state_dir = state_dir or home() / "broker"
    info = read_state(state_dir)
    if info is None:
        return False
    _terminate(info.pid, timeout)
    shutil.rmtree(info.data_dir, ignore_errors=True)
    _state_file(state_dir).unlink(missing_ok=True)
    return True


def _terminate(pid: int, timeout: float) -> None:
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
