"""Kafka input edge: a consumer-group member that hands out micro-batches of raw records.

Offsets are never committed automatically: the service commits them inside its output transaction
(`send_offsets_to_transaction`), so the group's lag is visible to standard Kafka tools.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from .config import KafkaConfig
from .decode import Record

_new_record = tuple.__new__  # Record's generated constructor is Python code: this is its C core, once per message

log = logging.getLogger("driftline.consume")


class MessageRun(Sequence[Record]):
    """One partition's messages of a consumed batch: their values, for the decoder, and a ``Record``
    made only when one is asked for (a dead letter needs its key, topic and offset; a good event
    needs only its value). Building a record per message took a sixth of the service's time.
    """

    __slots__ = ("partition", "msgs", "values")

    def __init__(self, partition: int):
        self.partition = partition
        self.msgs: list[Message] = []
        self.values: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> Record:  # type: ignore[override]
        msg = self.msgs[i]
        return _new_record(Record, (self.values[i], msg.key(), msg.topic(), self.partition, msg.offset() or 0))


# librdkafka's default (1 s) postpones the next fetch whenever the local queue is full, and a
# consumer that works on its batches then waits for data most of the time: it held the service's
# loop, and a plain consumer, to a third of their speed. [kafka.client] may set it otherwise.
FETCH = {"fetch.queue.backoff.ms": 10}
#: The internal topics between the stages carry a few records per window: what matters is how soon
#: one is seen (a partition holding its first windows waits for the shared parameters), not bytes
#: per fetch, so the broker answers a fetch after at most this long instead of 500 ms.
INTERNAL_FETCH = {"fetch.wait.max.ms": 20, "fetch.queue.backoff.ms": 10}


def client_settings(cfg: KafkaConfig) -> dict[str, Any]:
    """Settings shared by every client: bootstrap plus the pass-through ``[kafka.client]`` table."""
    return {"bootstrap.servers": cfg.bootstrap_servers, **cfg.client}


def fatal(err: KafkaError) -> bool:
    """A consumer error it does not recover from: fatal, or librdkafka's event that one occurred
    (``_FATAL``, whose own flag is not set: seen for a static member fenced by its former self)."""
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


class BatchConsumer:
    """Thin wrapper over confluent-kafka's Consumer: subscribe, consume in batches, commit."""

    def __init__(
        self,
        cfg: KafkaConfig,
        on_revoke: Callable[[list[int]], None] | None = None,
        on_assign: Callable[[list[int]], None] | None = None,
        on_lost: Callable[[list[int]], None] | None = None,
    ):
        self.cfg = cfg
        self._on_revoke = on_revoke
        self._on_assign = on_assign
        self._on_lost = on_lost
        self.lag: dict[int, int] = {}
        # A fatal error outside any message (seen: a static member fenced by its own former self
        # after a broker restart): the consumer reads nothing again, and the service replaces it.
        self.failed: KafkaError | None = None
        self.consumer = Consumer(
            {
                **FETCH,
                **client_settings(cfg),
                "group.id": cfg.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 4_194_304,
                "session.timeout.ms": cfg.session_timeout,
                "error_cb": self._error,
                **({"group.instance.id": cfg.instance_id} if cfg.instance_id else {}),
            },
            logger=log,
        )
        self.consumer.subscribe(
            [cfg.input_topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def _error(self, err: KafkaError) -> None:
        if fatal(err):
            self.fail(err)

    def fail(self, err: KafkaError) -> None:
        """This consumer reads nothing ever again: the service replaces it."""
        if self.failed is None:
            log.error("input consumer failed for good: %s", err.str())
            self.failed = err

    def _assigned(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("assigned partitions %s", [p.partition for p in parts])
        if self._on_assign:
            self._on_assign([p.partition for p in parts])

    def _revoked(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("revoked partitions %s", [p.partition for p in parts])
        if self._on_revoke:
            self._on_revoke([p.partition for p in parts])

    def _lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.warning("lost partitions %s (session expired): their uncommitted work is dropped", [p.partition for p in parts])
        if self._on_lost:
            self._on_lost([p.partition for p in parts])
        elif self._on_revoke:
            self._on_revoke([p.partition for p in parts])

    def batch(self, timeout: float | None = None) -> dict[int, MessageRun]:
        """Up to ``batch_size`` records, by partition, waiting at most ``timeout`` (``poll_timeout``)."""
        msgs = self.consumer.consume(num_messages=self.cfg.batch_size,
                                     timeout=self.cfg.poll_timeout if timeout is None else timeout)
        runs: dict[int, MessageRun] = {}
        run: MessageRun | None = None
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if fatal(err):
                    self._error(err)  # the service replaces this consumer
                    continue
                # Everything else (broker down, transport, topic not there yet) is reported and
                # retried by librdkafka itself; the loop keeps polling so the group can recover.
                log.warning("consumer error (retried by the client): %s", err.str())
                continue
            p = msg.partition() or 0
            if run is None or run.partition != p:  # a batch comes in runs per partition
                run = runs.get(p)
                if run is None:
                    run = runs[p] = MessageRun(p)
            run.msgs.append(msg)
            run.values.append(msg.value())
        return runs

    def caught_up(self) -> list[int]:
        """Assigned partitions whose position has reached the (cached) high watermark; ``lag`` is
        updated on the way (records behind the high watermark, per partition with a position)."""
        out: list[int] = []
        try:
            assigned = self.consumer.assignment()
            positions = self.consumer.position(assigned) if assigned else []
        except KafkaException:
            return out
        self.lag = {}
        for tp in positions:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and (tp.offset >= high or (tp.offset < 0 and high == 0)):
                out.append(tp.partition)
            if high >= 0 and tp.offset >= 0:
                self.lag[tp.partition] = max(high - tp.offset, 0)
        return out

    def close(self) -> None:
        self.consumer.close()


def topic_partitions(bootstrap: str, topic: str, client: dict[str, str | int | bool] | None = None) -> list[int]:
    """The partition ids of a topic (empty if it does not exist)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"driftline-meta-{uuid.uuid4().hex[:8]}",
                         **(client or {})}, logger=log)
    try:
        md = consumer.list_topics(topic, timeout=30)
        if topic not in md.topics or md.topics[topic].error is not None:
            return []
        return sorted(md.topics[topic].partitions)
    finally:
        consumer.close()


def history_batches(bootstrap: str, topic: str, since_ms: int | None, batch_size: int = 5000,
                    client: dict[str, str | int | bool] | None = None, idle: float = 5.0
                    ) -> Iterator[tuple[list[Record], float, set[int]]]:
    """A topic's retained records from ``since_ms`` (broker timestamps; None: the start) up to the
    end offsets as of now, all partitions together, as (batch, fraction done, partitions without
    records in that range). For backtests: no group membership, nothing committed."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"driftline-replay-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest", **FETCH, **(client or {})}, logger=log)
    try:
        md = consumer.list_topics(topic, timeout=30)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise KafkaException(f"topic {topic!r} not found at {bootstrap}")
        parts = sorted(md.topics[topic].partitions)
        starts = [TopicPartition(topic, p, since_ms if since_ms is not None else OFFSET_BEGINNING) for p in parts]
        if since_ms is not None:
            starts = consumer.offsets_for_times(starts, timeout=30)
        ends: dict[int, int] = {}
        begin: dict[int, int] = {}
        for tp in starts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30)
            # offsets_for_times gives -1 where no record is at or after that time
            first = low if since_ms is None else high if tp.offset < 0 else max(tp.offset, low)
            if high > first:
                ends[tp.partition], begin[tp.partition] = high, first
        if not ends:
            return
        if len(ends) < len(parts):  # partitions with nothing to replay must not hold the watermark
            yield [], 0.0, set(parts) - set(ends)
        total = sum(ends[p] - begin[p] for p in ends)
        assigned = [TopicPartition(topic, p, begin[p]) for p in ends]
        consumer.assign(assigned)
        position = dict(begin)
        quiet_since = time.monotonic()
        while True:
            out: list[Record] = []
            for msg in consumer.consume(batch_size, 0.5):
                if msg.error() is not None:
                    continue
                p, off = msg.partition() or 0, msg.offset() or 0
                if off >= ends.get(p, 0):
                    continue
                position[p] = off + 1
                out.append(_new_record(Record, (msg.value(), msg.key(), topic, p, off)))
            if out:
                quiet_since = time.monotonic()
                yield out, sum(min(position[p], ends[p]) - begin[p] for p in ends) / total, set()
                continue
            # Done when every partition's position reached its end offset. The end counts the
            # commit markers of transactions, which are never delivered, and a read_committed
            # reader never gets past a transaction still open; so a while without records also ends it.
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] for tp in positions) or time.monotonic() - quiet_since > idle:
                return
    finally:
        consumer.close()
