"""The long-running service (``driftline run``): composition root of the Kafka edges and the two stages.

The series stage lives per input partition (``series/edge.py``): one series task per assigned
partition, restored from the compacted state topic when the partition is assigned, on this process
or another one after a rebalance. Its window reports and progress marks go to the internal verdicts
topic. The model stage is one task, run by whichever process holds the verdicts topic's partition
(``model/edge.py``): it decides each model window once every input partition has passed it, and
publishes alerts and commands. This module runs the loop and the transactions that join them.

Exactly-once: outputs are buffered and written in one Kafka transaction together with the
snapshots of the tasks that changed and the consumed offsets, in this order:
  1. produce the buffered alerts, commands and dead letters,
  2. produce the series tasks' window reports and progress marks to the verdicts topic,
  3. produce the state snapshot of every changed series partition, and of the model task,
  4. send the consumed offsets (input, then verdicts: one consumer group each) and commit.
A crash anywhere before the commit leaves none of it visible to read_committed readers; the restart
restores the last committed snapshot and re-reads from the offsets committed with it. A commit
happens every ``commit_interval`` seconds (longer when snapshots are slow, see ``_interval``),
before partitions are revoked, and at shutdown.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

from .alertmanager import AlertmanagerSink
from .config import Config
from .consume import BatchConsumer
from .engine import Output
from .explain import AlertPages
from .guard import count_culprits
from .http import StatusServer
from .metrics import Metrics
from .model.edge import ModelSide
from .publish import MemberFenced, ProducerStuck, Publisher, ensure_topics
from .series.edge import ACCEPT_KEY, SeriesSide
from .typed import native_status

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
        commit_interval: float | None = None,
    ):
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        # Seconds between transactions (the latency of alerts, and the work redone after a crash).
        self.commit_interval = commit_interval if commit_interval is not None else config.kafka.commit_interval / 1000
        self.buffer = Output()
        self.stopping = threading.Event()
        self.alerts = 0
        self.commands = 0
        self.pages = AlertPages(keep=500)  # the last published alerts, for /alerts
        self.alertmanager: AlertmanagerSink | None = None
        self.last_turn = time.monotonic()
        self.running = False
        self.stall_after = 120.0
        # A state restore reads to the state topic's end offsets; it fails (and the process stops)
        # only after this long without progress: longer than a dead producer's open transaction
        # holds read_committed readers (transaction.timeout.ms, 60 s by default).
        self.series = SeriesSide(config, self.metrics, clock, restore_stall=120.0)
        # One per process, kept across producer replacements so that a new producer fences the old.
        self.transactional_id = f"{config.kafka.group_id}-{uuid.uuid4().hex[:12]}"
        self.snapshot_seconds = 0.0  # what the last transaction's snapshots took
        self.failed_transactions = 0  # in a row
        self._reconnect = False  # set when the consumer should be started afresh
        self.max_failed_transactions = 20
        self._consumer: BatchConsumer | None = None
        self._publisher: Publisher | None = None
        self.model: ModelSide | None = None
        self.idle_after = 30.0  # seconds without progress before a partition no longer holds the model stage

    # ----------------------------------------------------------------- process manager hooks
    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            log.info("signal %d: finishing the current batch, committing and stopping", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def serve_metrics(self) -> int:
        """Start /metrics, /healthz and /readyz where the config says; return the bound port."""
        m = self.config.metrics
        self.http = StatusServer(self.metrics.registry, self.healthy, self.ready, m.host, m.port, self.pages.page)
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
        if not self.series.partitions:
            return False, "no partitions assigned"
        return True, f"consuming {len(self.series.partitions)} partitions"

    # ----------------------------------------------------------------- main loop
    def run(self, idle_exit: float | None = None, on_batch: Callable[[RunSummary], None] | None = None) -> RunSummary:
        """Consume until stopped (or, with ``idle_exit``, until polling the assigned partitions found no
        record for that many seconds: time blocked in a commit or a reconnect does not count)."""
        cfg = self.config.kafka
        log.info("batch decoder: %s", native_status(self.config.defaults.native_decoder))
        created = ensure_topics(cfg)
        if created:
            log.info("created topics %s", created)
        self._new_publisher()
        consumer = self._consumer = self._make_consumer()
        self.model = self._make_model()
        if self.config.alertmanager.url:
            posted = self.metrics.alertmanager_posts
            self.alertmanager = AlertmanagerSink(
                self.config.alertmanager, on_result=lambda ok: posted.labels("ok" if ok else "failed").inc(),
                repeat_interval=self.config.defaults.repeat_interval)
        started = last_commit = time.monotonic()
        idle = 0.0  # seconds spent polling our partitions without a record (not blocked elsewhere)
        self.running = True
        try:
            while not self.stopping.is_set():
                self.last_turn = polled = time.monotonic()
                back = self.series.read_params()
                if back:  # every partition with work since the commit goes back with them (the buffer goes)
                    self._rewind(sorted(set(back) | set(self.series.dirty())))
                # While partitions wait for the shared parameters, the loop turns quickly: what they
                # wait for comes on the internal topics, which each turn reads.
                records = consumer.batch(timeout=0.02 if self.series.paused else None)
                # Partitions paused for the shared edges are waiting for the model stage, not idle.
                idle = (0.0 if records or not self.series.partitions or self.series.paused
                        else idle + time.monotonic() - polled)
                t0 = time.perf_counter()
                failed = self.series.process(records, consumer.caught_up(), self.buffer)
                if failed is not None:
                    self._rewind(failed.whole)
                    self.series.seek_back(failed.seek)
                self.series.hold_back()
                self._decide()
                for p, lag in consumer.lag.items():
                    self.metrics.consumer_lag.labels(str(p)).set(lag)
                if records:
                    self.metrics.batch_seconds.observe(time.perf_counter() - t0)
                # A stage waiting on the other commits at once: proposals for the shared parameters
                # (the partitions hold their windows meanwhile) and the parameters decided.
                if (time.monotonic() - last_commit >= self._interval() or len(self.buffer.dead_letters) > 50_000
                        or self.buffer.params or self.buffer.accepts or self.series.proposed):
                    self._commit()
                    last_commit = time.monotonic()
                if self._reconnect or consumer.failed is not None:
                    consumer = self._new_consumer()
                if on_batch is not None and records:
                    on_batch(self.summary(started))
                if idle_exit is not None and idle > idle_exit:
                    break
            self._commit()
        finally:
            self.running = False
            if self.model is not None:  # first: handing it over commits through the input consumer
                self.model.close()
            consumer.close()
            self.series.close()
            if self.alertmanager is not None:
                self.alertmanager.close()
        return self.summary(started)

    def _decide(self) -> None:
        """The model stage, where it runs: what became due, decided, into the buffer."""
        if self.model is None:
            return
        out = Output()
        self.model.poll(out)
        self.buffer.extend(out)
        for a in out.alerts:
            log.warning("alert %s %s", a.status, a.summary)
        for c in out.commands:
            log.warning("command %s %s (%s)", c.action, c.model, c.command_id)

    # ----------------------------------------------------------------- transactions
    def _commit(self) -> None:
        """One transaction: outputs, then changed snapshots, then offsets (see the module docstring)."""
        consumer, publisher = self._consumer, self._publisher
        if consumer is None or publisher is None:
            return
        series = self.series
        dirty = series.dirty()
        model = self.model if self.model is not None and self.model.dirty else None
        if not dirty and model is None and not (self.buffer.alerts or self.buffer.commands or self.buffer.dead_letters
                                                or series.verdicts_out):
            return
        t0 = time.perf_counter()
        snapshots = series.snapshots(dirty)
        model_state = model.state_records() if model is not None else []
        self.snapshot_seconds = time.perf_counter() - t0
        verdicts = self.config.kafka.verdicts()
        try:
            publisher.begin()
            publisher.publish(self.buffer.alerts, self.buffer.commands, self.buffer.dead_letters)
            for key, value in series.verdicts_out:
                publisher.put(verdicts, key, value)
            for prm in self.buffer.params:
                publisher.put(self.config.kafka.params(), prm.model.encode(), prm.encode())
            for op in self.buffer.accepts:
                publisher.put(self.config.kafka.params(), op.model.encode() + ACCEPT_KEY, op.model_dump_json().encode())
            for p, recs in snapshots.items():
                for key, value in series.state_records(p, recs):
                    publisher.put_state(key, value)
            for key, value in model_state:
                publisher.put_state(key, value)
            positions = series.positions(dirty)
            model_offsets = model.offsets() if model is not None else []
            publisher.commit(positions, consumer.consumer.consumer_group_metadata(),
                             more=((model_offsets, model.group_metadata()),) if model is not None else ())
        except (KafkaException, ProducerStuck) as exc:
            self._failed_transaction(exc, dirty)
            return
        self.failed_transactions = 0
        count_culprits(self.metrics, self.buffer)
        series.committed_now(snapshots, positions)
        if model is not None:
            model.committed_now(model_offsets, with_state=True)
        self.alerts += len(self.buffer.alerts)
        if self.alertmanager is not None:
            self.alertmanager.submit(self.buffer.alerts)  # published: now route them to people too
        self.pages.add(self.buffer.alerts)  # published now: worth a page
        if self.model is not None and self.model.task is not None:
            self.pages.operations = list(self.model.task.operators.shown)
        self.commands += len(self.buffer.commands)
        self.buffer = Output()

    def _interval(self) -> float:
        """Seconds between transactions: ``commit_interval``, stretched so that snapshotting the state
        takes at most a fifth of the time (large state is costly to serialise; committing less often
        only means more input to re-read after a crash), and never beyond two minutes."""
        return min(max(self.commit_interval, 4.0 * self.snapshot_seconds), max(self.commit_interval, 120.0))

    def _failed_transaction(self, exc: KafkaException | ProducerStuck, dirty: list[int]) -> None:
        """Recover from a transaction that did not commit, as librdkafka's error kinds require.

        Fatal (the producer is fenced or its epoch bumped) or stuck (librdkafka#5456): a new producer
        with the same transactional id, which aborts whatever the old one left open, and every
        partition back to its last committed snapshot and offsets. Anything else (abortable, a retriable error
        that did not clear in time, records not delivered): abort, rewind the partitions whose work
        was in the transaction, and go back to polling, which lets a rebalancing group settle.
        Repeated failures in a row mean something outside will not heal by itself: raise, and let
        the process manager restart us from the committed state.
        """
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        self.failed_transactions += 1
        self.metrics.transactions_failed.inc()
        if self.failed_transactions > self.max_failed_transactions:
            raise exc
        if isinstance(exc, ProducerStuck) or (err is not None and err.fatal()):
            self._reconnect = isinstance(exc, ProducerStuck)
            log.warning("producer unusable (%s): new producer, rewinding to the last committed state", exc)
            self._new_publisher()
            self._rewind(list(self.series.partitions))
            return
        if isinstance(exc, MemberFenced) and err is not None:
            self._fenced(exc.group, err)
        log.warning("transaction failed (%s): aborting and rewinding to the last committed state", exc)
        assert self._publisher is not None
        try:
            self._publisher.abort()
        except (KafkaException, ProducerStuck) as abort_exc:
            log.warning("abort failed too (%s): new producer", abort_exc)
            self._new_publisher()
            dirty = list(self.series.partitions)
        self._rewind(dirty)

    def _fenced(self, group: int, err: KafkaError) -> None:
        """The broker refused a consumer's offsets because its static identity was taken over: it
        is replaced now (the input consumer at the end of this turn, the model stage's at its next
        poll) rather than after its own error callback, which may come only after every retry of the
        transaction has failed."""
        if group == 0 and self._consumer is not None:
            self._consumer.fail(err)
        elif group == 1 and self.model is not None:
            self.model.fail(err)

    def _new_consumer(self) -> BatchConsumer:
        """After the producer got stuck (the cluster went away and came back), or the consumer
        failed for good, start the consumer afresh: a consumer that lived through the outage was
        once seen never to rejoin its group. What was not committed goes, so closing hands over
        nothing."""
        self._reconnect = False
        old = self._consumer
        if old is not None:
            try:
                old.close()  # revokes: the partitions' committed state is what is left
            except KafkaException as exc:
                log.warning("closing the old consumer: %s", exc)
        self.series.drop_all()
        self._drop_uncommitted()
        if self.model is not None:
            try:
                self.model.close()
            except KafkaException as exc:
                log.warning("closing the old model-stage consumer: %s", exc)
        log.warning("input and model-stage consumers started afresh")
        self._consumer = self._make_consumer()
        self.model = self._make_model()
        return self._consumer

    def _make_consumer(self) -> BatchConsumer:
        consumer = BatchConsumer(self.config.kafka, on_revoke=self._revoked, on_assign=self.series.assigned,
                                 on_lost=self._lost)
        self.series.consumer = consumer
        return consumer

    def _new_publisher(self) -> None:
        cfg = self.config.kafka
        old, self._publisher = self._publisher, None
        if old is not None:
            old.close()
        self._publisher = Publisher(cfg, transactional_id=self.transactional_id)

    def _rewind(self, partitions: list[int]) -> None:
        """After an aborted transaction: the buffer, the model stage and these partitions back to the last commit."""
        self._drop_uncommitted()
        self.series.rewind(partitions)

    def _drop_uncommitted(self) -> None:
        """The buffer goes: what it held is redone from the last commit, by the model stage too."""
        self.buffer = Output()
        self.series.verdicts_out, self.series.proposed = [], False
        if self.model is not None and self.model.dirty:
            self.model.rewind()

    # ----------------------------------------------------------------- hand-overs
    def _revoked(self, partitions: list[int]) -> None:
        # Hand the partitions over with everything done so far committed.
        try:
            self._commit()
        except KafkaException as exc:
            log.error("commit before revocation failed: %s", exc)
        self.series.revoked(partitions)

    def _make_model(self) -> ModelSide:
        return ModelSide(self.config, self.metrics, self.clock, lambda: self.series.input_partitions, self.idle_after,
                         self.series.restore_stall, on_revoke=self._model_revoked, on_lost=self._model_lost)

    def _model_revoked(self) -> None:
        """The model stage moves to another process: hand it over with everything done committed."""
        try:
            self._commit()
        except KafkaException as exc:
            log.error("commit before the model stage moved failed: %s", exc)
        self._hand_over_alerts()

    def _model_lost(self) -> None:
        """The model stage was taken away without a hand-over: what it did since the commit goes."""
        self._hand_over_alerts()
        self._lost([])

    def _hand_over_alerts(self) -> None:
        """Firing alerts belong to the model stage's next owner: stop re-sending them from here."""
        if self.alertmanager is not None:
            self.alertmanager.forget_all()

    def _lost(self, partitions: list[int]) -> None:
        """Partitions taken away without a clean hand-over: abandon what was not committed.

        Another member (or this one, later) restores them from the last committed snapshot and
        re-reads from the offsets committed with it, so nothing is lost and nothing doubled.
        """
        if self._publisher is not None and self._publisher.in_transaction:
            try:
                self._publisher.abort(timeout=10)
            except (KafkaException, ProducerStuck) as exc:
                log.warning("abort after losing partitions failed (%s): new producer", exc)
                self._new_publisher()
        self._drop_uncommitted()
        self.series.lost(partitions)

    def summary(self, started: float) -> RunSummary:
        totals = self.series.totals()
        return RunSummary(
            consumed=totals[0],
            processed=totals[1],
            dead_lettered=totals[2],
            alerts=self.alerts,
            commands=self.commands,
            windows_closed=totals[3],
            seconds=time.monotonic() - started,
        )

