"""The model stage's Kafka edge in the service: the internal verdicts topic in, the model task's state.

Every process's series tasks produce their window reports and progress marks to the verdicts topic
(key = model), in the transaction that commits their input offsets and state. The topic has one
partition: the model stage is one task, the single owner of the global breaker cap, and what it
handles scales with windows and alerts, not with events. It is read by a consumer group of its own
(``{group_id}.model``, read_committed); the process that holds its partition runs the model task,
restored from the state topic at assignment. The task's state and its consumed offsets go into the
same transaction as the rest of what the process commits (the service's ``_commit``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ..config import Config
from ..consume import INTERNAL_FETCH, client_settings, fatal
from ..contract import Operation
from ..framing import compress, decompress, from_chunks, to_chunks
from ..metrics import Metrics
from ..series.tables import Output
from ..topics import committed_offsets, read_topic
from ..verdict import Mark, Proposal, decode
from .frontier import Frontier
from .state import dumps, loads
from .task import ModelTask

log = logging.getLogger("driftline.model")


class ModelSide:
    def __init__(self, config: Config, metrics: Metrics, clock: Callable[[], float],
                 input_partitions: Callable[[], int], idle_after: float, restore_stall: float,
                 on_revoke: Callable[[], None], on_lost: Callable[[], None]):
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.input_partitions = input_partitions
        self.idle_after = idle_after
        self.restore_stall = restore_stall
        self._on_revoke, self._on_lost = on_revoke, on_lost
        self.topic = config.kafka.verdicts()
        # Operators' commands come on a topic of their own, read with the verdicts by the same consumer
        # (both have one partition: the range assignor gives both to the same member), their offset
        # committed with the rest.
        self.operator_topic = config.kafka.operator()
        self.op_offset = OFFSET_BEGINNING
        self._fatal: KafkaError | None = None  # the consumer failed for good (``_error``)
        self.consumer = self._consumer()
        self.task: ModelTask | None = None
        self.frontier: Frontier | None = None
        self.committed: bytes | None = None  # the state as of the last committed transaction
        self.offset = OFFSET_BEGINNING  # the verdicts offset committed with it
        self.dirty = False
        self.uncommitted = 0  # windows decided since the last commit
        self._written: bytes | None = None  # the state records of the transaction under way
        self._unseeked = False  # a rewind's seek has not succeeded yet
        self._operators_assigned = False

    def _consumer(self) -> Consumer:
        k = self.config.kafka
        consumer = Consumer({
            **INTERNAL_FETCH,
            **client_settings(k),
            "group.id": f"{k.group_id}.model",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": k.session_timeout,
            "error_cb": self._error,
            **({"group.instance.id": f"{k.instance_id}.model"} if k.instance_id else {}),
        }, logger=log)
        consumer.subscribe([self.topic, self.operator_topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
        return consumer

    def _error(self, err: KafkaError) -> None:
        """librdkafka's errors outside any message. A fatal one (seen: "static consumer fenced by
        other consumer with same group.instance.id", its own former self, after a broker restart)
        leaves the consumer reading nothing ever again: it is replaced at the next poll."""
        if fatal(err):
            self._fatal = err

    def fail(self, err: KafkaError) -> None:
        """The consumer is as good as failed (the broker fenced its identity): replaced at the next poll."""
        if self._fatal is None:
            self._fatal = err

    def _drain(self) -> None:
        """While a seek is owed: serve the consumer's callbacks (errors, rebalances) and drop what
        it read from the old position."""
        try:
            msgs = self.consumer.consume(num_messages=10_000, timeout=0)
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and fatal(exc.args[0]):
                self._fatal = exc.args[0]
            return
        for msg in msgs:
            err = msg.error()
            if err is not None and fatal(err):
                self._fatal = err

    def _replace(self) -> None:
        err, self._fatal = self._fatal, None
        log.error("verdicts consumer failed for good (%s): a new one; the model stage goes back to its last commit",
                  err.str() if err is not None else "?")
        if self.task is not None:
            self.task = self.frontier = None
            self._on_lost()
        self.dirty, self.uncommitted = False, 0  # nothing of the dropped task is to be committed
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
        self._unseeked = False  # the new consumer starts at the committed offset
        self.consumer = self._consumer()

    # ----------------------------------------------------------------- the loop's calls
    def poll(self, out: Output) -> None:
        """What the series tasks reported since the last call; the windows it makes due, decided."""
        if self._fatal is not None:
            self._replace()
            return
        if self._unseeked and not self._seek():
            self._drain()  # what it would read comes from where the task is not
            return
        try:
            msgs = self.consumer.consume(num_messages=10_000, timeout=0)
        except KafkaException as exc:  # a seek that failed after it was taken (the broker away)
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or err.fatal() or err.code() != KafkaError._STATE:
                raise
            log.warning("verdicts consumer: %s: seeking to the last committed offset again", err.str())
            self._unseeked = True
            return
        if self.task is None or self.frontier is None:
            return
        now = self.clock()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if fatal(err):
                    self._fatal = err  # replaced at the next poll
                    return
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("verdicts consumer error (retried by the client): %s", err.str())
                continue
            if msg.topic() == self.operator_topic:
                self._operate(msg.value() or b"", out)
                continue
            partition, item = decode(msg.value() or b"")
            if isinstance(item, Mark):
                self.frontier.mark(partition, item.watermark, now, item.empty, item.held)
            elif isinstance(item, Proposal):
                self.task.edges.propose(partition, item)
            else:
                self.frontier.report(partition, item)
            self.dirty = True
        self.frontier.resize(self.input_partitions(), now)
        params = self.task.edges.due(self.frontier.progress(now))
        if params:  # for every series task, on the params topic
            log.info("decided shared bin edges of %s", ", ".join(prm.model for prm in params))
            out.params += params
            self.dirty = True
        due = self.frontier.due(now)
        if due:
            self.task.act(due, out)
            self.dirty = True
            self.uncommitted += len(due)
            self.metrics.windows_uncommitted.set(self.uncommitted)
        self.metrics.late_reports.set(self.frontier.late)
        self.metrics.windows_pending.set(len(self.frontier.pending))

    def _operate(self, raw: bytes, out: Output) -> None:
        assert self.task is not None
        self.dirty = True  # its offset moves on, applied or not
        try:
            op = Operation.model_validate_json(raw)
        except ValueError as exc:
            log.error("unusable record on the operator topic (%s): skipped", str(exc).splitlines()[0])
            self.metrics.operations.labels("unusable").inc()
            return
        refused = self.task.operate(op, out)
        self.metrics.operations.labels(op.action if refused is None else "refused").inc()

    def state_records(self) -> list[tuple[bytes, bytes]]:
        assert self.task is not None and self.frontier is not None
        blob = self._written = compress(dumps(self.task, self.frontier))
        base = self._state_key()
        return [(base + b"#%d" % i, chunk) for i, chunk in enumerate(to_chunks(blob))]

    def offsets(self) -> list[TopicPartition]:
        if self.task is None:
            return []
        return [tp for tp in self.consumer.position([TopicPartition(self.topic, 0), TopicPartition(self.operator_topic, 0)])
                if tp.offset >= 0]

    def group_metadata(self) -> Any:
        return self.consumer.consumer_group_metadata()

    def committed_now(self, offsets: list[TopicPartition], with_state: bool) -> None:
        """The transaction committed; it held this side's offsets, and its state when ``with_state``."""
        if with_state:
            self.committed = self._written
        for tp in offsets:
            if tp.topic == self.operator_topic:
                self.op_offset = tp.offset
            else:
                self.offset = tp.offset
        self.dirty = False
        self.uncommitted = 0
        self.metrics.windows_uncommitted.set(0)

    def rewind(self) -> None:
        """Back to the last committed state and offset (an aborted transaction)."""
        if self.task is None:
            return
        self._start(self.committed)
        self._unseeked = True
        self._seek()
        self.dirty = False
        self.uncommitted = 0
        self.metrics.windows_uncommitted.set(0)

    def _seek(self) -> bool:
        """Seek to the last committed offset. librdkafka refuses while the partition is not being
        fetched (``_STATE``: seen while the broker restarts): then nothing is read until it is done."""
        try:
            self.consumer.seek(TopicPartition(self.topic, 0, self.offset))
            if self._operators_assigned:
                self.consumer.seek(TopicPartition(self.operator_topic, 0, self.op_offset))
        except KafkaException as exc:
            log.warning("verdicts: seek to the last committed offset %d failed (%s): retried before reading on",
                        self.offset, exc)
            return False
        self._unseeked = False
        return True

    def close(self) -> None:
        """Leave the group. A close that fails (its revoke asking for offsets of a handle being
        destroyed) is logged, not raised: on the way out after an error it would hide that error."""
        try:
            self.consumer.close()
        except Exception as exc:  # noqa: BLE001 - whatever librdkafka raises here (seen: a bare KafkaError)
            log.warning("verdicts consumer: close failed (%s)", exc)

    # ----------------------------------------------------------------- assignment
    def _state_key(self) -> bytes:
        k = self.config.kafka
        return f"{k.group_id}|{self.topic}|0/model".encode()

    def _start(self, blob: bytes | None) -> None:
        now = self.clock()
        self.task = ModelTask(self.config, self.metrics)
        self.frontier = Frontier(self.input_partitions(), self.idle_after, now, self.config.defaults.allowed_lateness)
        if blob is not None:
            loads(self.task, self.frontier, decompress(blob), now)

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if not parts:
            return
        key = self._state_key() + b"#"
        chunks: dict[int, bytes] = {}
        state = read_topic(self.config.kafka.bootstrap_servers, self.config.kafka.state_topic, timeout=60,
                           stall=self.restore_stall, consumer_config=dict(self.config.kafka.client))
        for k, value in state:  # type: ignore[misc]
            if k is not None and k.startswith(key) and k[len(key):].isdigit():
                chunks[int(k[len(key):])] = value
        blob = from_chunks(chunks) if chunks else None
        if chunks and blob is None:
            log.error("the model stage's state has incomplete chunks: starting it from scratch")
        self.committed = blob
        self._unseeked = False  # a new assignment starts at the committed offset
        self._start(blob)
        committed = {tp.topic: tp.offset for tp in
                     committed_offsets(consumer, [TopicPartition(self.topic, 0), TopicPartition(self.operator_topic, 0)])
                     if tp.offset >= 0}
        self.offset = committed.get(self.topic, OFFSET_BEGINNING)
        self.op_offset = committed.get(self.operator_topic, OFFSET_BEGINNING)
        self._operators_assigned = any(tp.topic == self.operator_topic for tp in parts)
        self.dirty = False
        log.info("model stage assigned here (%s restored)", "state" if blob is not None else "no state")

    def _revoked(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        if parts and self.task is not None:
            self._on_revoke()  # commit everything done so far, with this side's state
            self.task = self.frontier = None
            self.dirty, self.uncommitted = False, 0
            log.info("model stage moved away from here")

    def _lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        if parts and self.task is not None:
            self.task = self.frontier = None
            self.dirty, self.uncommitted = False, 0
            self._on_lost()
