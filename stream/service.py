"""The long-running service (``driftline run``): composition root of the Kafka edges and the engine.

Each loop: consume a batch -> engine -> produce alerts, commands and dead letters -> flush -> commit
the consumed offsets. Outputs are flushed before offsets are committed, so nothing consumed is lost
on a crash (at-least-once; a replayed batch yields the same alert and command ids).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .consume import BatchConsumer
from .engine import Engine
from .http import StatusServer
from .metrics import Metrics
from .publish import Publisher, ensure_topics

log = logging.getLogger("driftline.service")


@dataclass
class RunSummary:
    consumed: int
    processed: int
    dead_lettered: int
    alerts: int
    commands: int
    windows_closed: int
    seconds: float


class Service:
    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.engine = Engine(config, self.metrics, clock=clock)
        self.stopping = threading.Event()
        self.alerts = 0
        self.commands = 0
        self.last_turn = time.monotonic()
        self.assigned: set[int] = set()
        self.running = False
        self.stall_after = 120.0

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            log.info("signal %d: finishing the current batch and stopping", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def serve_metrics(self) -> int:
        """Start /metrics, /healthz and /readyz where the config says; return the bound port."""
        m = self.config.metrics
        self.http = StatusServer(self.metrics.registry, self.healthy, self.ready, m.host, m.port)
        return self.http.port

    def healthy(self) -> tuple[bool, str]:
        stuck = time.monotonic() - self.last_turn
        if self.running and stuck > self.stall_after:
            return False, f"consume loop stuck for {stuck:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "shutting down"
        if not self.running:
            return False, "not consuming yet"
        if not self.assigned:
            return False, "no partitions assigned"
        return True, f"consuming {len(self.assigned)} partitions"

    def run(self, idle_exit: float | None = None, on_batch: Callable[[RunSummary], None] | None = None) -> RunSummary:
        """Consume until stopped (or, with ``idle_exit``, until no record arrived for that many seconds)."""
        cfg = self.config.kafka
        created = ensure_topics(cfg)
        if created:
            log.info("created topics %s", created)
        publisher = Publisher(cfg)
        consumer = BatchConsumer(cfg, on_revoke=self._revoked, on_assign=self._assigned)
        started = time.monotonic()
        last_record = time.monotonic()
        self.running = True
        try:
            while not self.stopping.is_set():
                self.last_turn = time.monotonic()
                records = consumer.batch()
                for p in consumer.caught_up():
                    self.engine.watermark.caught_up(p)
                t0 = time.perf_counter()
                out = self.engine.process(records) if records else self.engine.tick()
                publisher.publish(out.alerts, out.commands, out.dead_letters)
                publisher.flush()
                if records:
                    consumer.commit()
                    last_record = time.monotonic()
                    self.metrics.batch_seconds.observe(time.perf_counter() - t0)
                self.alerts += len(out.alerts)
                self.commands += len(out.commands)
                for a in out.alerts:
                    log.warning("alert %s %s", a.status, a.summary)
                for c in out.commands:
                    log.warning("command %s %s (%s)", c.action, c.model, c.command_id)
                if on_batch is not None and records:
                    on_batch(self.summary(started))
                if idle_exit is not None and time.monotonic() - last_record > idle_exit:
                    break
        finally:
            self.running = False
            publisher.flush()
            consumer.close()
        return self.summary(started)

    def _assigned(self, partitions: list[int]) -> None:
        for p in partitions:
            self.engine.watermark.assign(p, self.clock())
            self.assigned.add(p)

    def _revoked(self, partitions: list[int]) -> None:
        for p in partitions:
            self.engine.watermark.forget(p)
            self.assigned.discard(p)

    def summary(self, started: float) -> RunSummary:
        s = self.engine.stats
        return RunSummary(
            consumed=s.consumed,
            processed=s.processed,
            dead_lettered=s.dead_lettered,
            alerts=self.alerts,
            commands=self.commands,
            windows_closed=s.windows_closed,
            seconds=time.monotonic() - started,
        )
