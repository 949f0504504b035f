"""Kafka output edge: alerts, commands and dead letters as JSON records; topics created when missing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .config import KafkaConfig
from .consume import client_settings
from .contract import Alert, Command
from .decode import DeadLetter

log = logging.getLogger("driftline.publish")
STATE_MAX_BYTES = 64 * 1024 * 1024


def ensure_topics(cfg: KafkaConfig, partitions: int = 1, timeout: float = 30.0) -> list[str]:
    """Create the topics driftline writes (control and state compacted) if missing; return created."""
    admin = AdminClient(client_settings(cfg), logger=log)
    existing = set(admin.list_topics(timeout=timeout).topics)
    compacted = {"cleanup.policy": "compact"}
    wanted = {
        cfg.alerts_topic: {},
        cfg.dead_letter_topic: {},
        cfg.control_topic: compacted,
        # Snapshots can be larger than the broker's default message size.
        cfg.state_topic: {**compacted, "max.message.bytes": str(STATE_MAX_BYTES)},
    }
    # The series stage's window reports for the model stage: one partition (one model task), kept a
    # week (read within seconds; the rest is for looking back).
    internal = {cfg.verdicts():
                {"retention.ms": str(7 * 86_400_000), "max.message.bytes": str(STATE_MAX_BYTES)},
                # The model stage's shared parameters, one record per model, read by every series task.
                cfg.params(): compacted,
                # Operators' accepts and silences, in the order they were given: one partition.
                cfg.operator(): {}}
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=-1, config=conf)
        for name, conf in wanted.items()
        if name not in existing
    ] + [NewTopic(name, num_partitions=1, replication_factor=-1, config=conf)
         for name, conf in internal.items() if name not in existing]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _await_leaders(admin, created, timeout)
    return created


def _await_leaders(admin: AdminClient, topics: list[str], timeout: float) -> None:
    """Until every partition of the topics just created has a leader (or ``timeout``): a topic is
    created before its leader is elected, and a read of it at once is refused ("Not leader for
    partition")."""
    deadline = time.monotonic() + timeout
    waiting = set(topics)
    while waiting and time.monotonic() < deadline:
        md = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        waiting = {t for t in waiting if t not in md.topics or md.topics[t].error is not None
                   or not md.topics[t].partitions or any(p.leader < 0 for p in md.topics[t].partitions.values())}
        if waiting:
            time.sleep(0.1)
    if waiting:
        log.warning("topics without a leader %.0f s after they were created: %s", timeout, sorted(waiting))


def alert_bytes(alert: Alert) -> bytes:
    return orjson.dumps(alert.model_dump(mode="json"))


def command_bytes(command: Command) -> bytes:
    return orjson.dumps(command.model_dump(mode="json"))


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    rec = dl.record
    headers = [("driftline.reason", dl.reason.encode()), ("driftline.detail", dl.detail.encode()[:2000])]
    if rec.topic is not None:
        headers += [
            ("driftline.source.topic", rec.topic.encode()),
            ("driftline.source.partition", str(rec.partition).encode()),
            ("driftline.source.offset", str(rec.offset).encode()),
        ]
    return headers


class ProducerStuck(RuntimeError):
    """A transactional call that did not return within its timeout: the producer is abandoned.

    librdkafka can block in ``send_offsets_to_transaction`` past its timeout when the group
    coordinator goes away and comes back (confluentinc/librdkafka#5456, seen here on a broker
    restart). The caller replaces the producer: ``init_transactions`` with the same transactional
    id fences the stuck one and aborts its open transaction.
    """


class MemberFenced(KafkaException):
    """The offsets of one consumer (``group``: its index in :meth:`Publisher.commit`'s order, 0 the
    first) were refused because the broker fenced that consumer's static identity: another member
    joined with its ``group.instance.id``. The consumer may not have heard yet (its error callback
    comes later, sometimes after many transactions); it is as good as failed."""

    def __init__(self, err: KafkaError, group: int) -> None:
        super().__init__(err)
        self.group = group


class Publisher:
    """Produces the engine's outputs; transactional when given a ``transactional_id``."""

    def __init__(self, cfg: KafkaConfig, transactional_id: str | None = None, extra: dict[str, Any] | None = None):
        self.cfg = cfg
        settings: dict[str, Any] = {
            **client_settings(cfg),
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
            "message.max.bytes": STATE_MAX_BYTES,
            **(extra or {}),
        }
        if transactional_id:
            settings["transactional.id"] = transactional_id
        self.producer = Producer(settings, logger=log)
        self._errors: list[str] = []
        self.in_transaction = False
        self.stuck = False  # a transactional call hung: the producer must not be called again
        if transactional_id:
            self.producer.init_transactions(60)

    def close(self) -> None:
        """Give up on this producer (after a fatal error): whatever it still holds is abandoned."""
        if not self.stuck:  # a stuck one is left alone: calling into it could block as well
            self.producer.purge()
        self.in_transaction = False

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.in_transaction = True

    def put_state(self, key: bytes, value: bytes) -> None:
        self._produce(self.cfg.state_topic, key, value)

    def put(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._produce(topic, key, value)

    def commit(self, offsets: list[Any], group_metadata: Any, timeout: float = 20.0,
               more: tuple[tuple[list[Any], Any], ...] = ()) -> None:
        """Send the consumed offsets with the transaction and commit it.

        Sending the offsets is not retried here: it fails while the consumer group is rebalancing
        (after a broker restart, say), and the group can only settle once the caller polls the
        consumer again, so the caller aborts and rewinds instead. Committing is retried while the
        error says so, as librdkafka documents.
        """
        for group, (offs, meta) in enumerate([(offsets, group_metadata), *more]):  # one group at a time
            if not offs:
                continue
            try:
                self._send_offsets(offs, meta, timeout)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and err.code() == KafkaError.FENCED_INSTANCE_ID:
                    raise MemberFenced(err, group) from exc
                raise
        self._retry(lambda: self._bounded(lambda: self.producer.commit_transaction(timeout), timeout))
        self.in_transaction = False
        if self._errors:
            errors, self._errors = self._errors, []
            raise KafkaException(f"records not delivered: {errors[:5]}")

    def _send_offsets(self, offsets: list[Any], group_metadata: Any, timeout: float) -> None:
        self._bounded(lambda: self.producer.send_offsets_to_transaction(offsets, group_metadata, timeout), timeout)

    def abort(self, timeout: float = 30.0) -> None:
        self._retry(lambda: self._bounded(lambda: self.producer.abort_transaction(timeout), timeout))
        self.producer.poll(0)  # serve the aborted records' reports now, not in the next transaction
        self._errors = []
        self.in_transaction = False

    def _bounded(self, call: Callable[[], None], timeout: float) -> None:
        """Run a blocking transactional call, but give up on it (and this producer) after ``timeout``."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                failure.append(exc)

        worker = threading.Thread(target=run, name="driftline-txn-call", daemon=True)
        worker.start()
        worker.join(timeout + 5.0)
        if worker.is_alive():
            self.stuck = True
            raise ProducerStuck(f"transactional call still blocked after {timeout + 5.0:.0f}s")
        if failure:
            raise failure[0]

    @staticmethod
    def _retry(call: Any, attempts: int = 3) -> None:
        for i in range(attempts):
            try:
                call()
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is None or not hasattr(err, "retriable") or not err.retriable() or i == attempts - 1:
                    raise
                time.sleep(0.2 * (i + 1))

    def _report(self, err: Any, _msg: Any) -> None:
        # Records purged by an abort report an error too: they were meant to be dropped.
        if err is not None and err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self._errors.append(str(err))

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._report)
                return
            except BufferError:
                self.producer.poll(0.1)

    def publish(self, alerts: Iterable[Alert], commands: Iterable[Command], dead: Iterable[DeadLetter]) -> None:
        c = self.cfg
        for a in alerts:
            self._produce(c.alerts_topic, a.fingerprint.encode(), alert_bytes(a))
        for cmd in commands:
            self._produce(c.control_topic, cmd.record_key().encode(), command_bytes(cmd))
        for dl in dead:
            self._produce(c.dead_letter_topic, dl.record.key, dl.record.value, dead_letter_headers(dl))
        self.producer.poll(0)
