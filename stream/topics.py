"""Small Kafka helpers for the command line, the demo and tests: create a topic, produce lines, read all."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger("driftline.topics")


def create_topic(
    bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None, timeout: float = 120.0
) -> None:
    """Create a topic (fine if it exists); a broker that has just started may take a while."""
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=log)
    deadline = time.monotonic() + timeout
    while True:
        fut = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=30,
        )[name]
        try:
            fut.result(timeout=40)
            return
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                return
            if time.monotonic() > deadline:
                raise
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1.0)


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Produce (key, value) pairs and wait for all of them; return how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                         "batch.size": 1_000_000, "enable.idempotence": True}, logger=log)
    n = 0
    for key, value in items:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise KafkaException("produce: not all records delivered")
    return n


#: What a partition answers while its leader is being elected (a topic created a moment ago, a
#: broker restarting): worth asking again, not a reason to give up on the read.
SETTLING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                      KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT})


def _offsets(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """A partition's low and high watermarks, asked again while it is still settling (seen: a state
    topic read 70 ms after the service created it, "Not leader for partition", and the service
    exited at its first start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = consumer.get_watermark_offsets(tp, timeout=max(0.5, deadline - time.monotonic()))
            if got is not None:
                return int(got[0]), int(got[1])
            if time.monotonic() >= deadline:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{tp.topic}[{tp.partition}]: no watermark offsets"))
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or err.code() not in SETTLING or time.monotonic() >= deadline:
                raise
            log.info("%s[%d] is settling (%s): asking again", tp.topic, tp.partition, err.str())
            time.sleep(0.2)


#: What a group's offset fetch answers while the coordinator cannot say yet: it is loading the
#: group (a broker restart), or a dead producer's transaction still holds offsets of these partitions
#: (the fetch asks for stable offsets; the transaction is aborted once ``transaction.timeout.ms``,
#: 60 s by default, is over, plus the broker's cleanup interval).
UNSETTLED_OFFSETS = frozenset({KafkaError._TIMED_OUT, KafkaError.UNSTABLE_OFFSET_COMMIT,
                               KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
                               KafkaError.NOT_COORDINATOR})


def committed_offsets(consumer: Consumer, tps: list[TopicPartition], patience: float = 180.0) -> list[TopicPartition]:
    """The group's committed offsets of ``tps``, asked again until ``patience`` seconds are over.

    One call of ``Consumer.committed`` gives up after its timeout; seen in CI: a service started
    right after its predecessor was killed with -9 asked for 60 s while the predecessor's open
    transaction held the offsets, and exited."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return list(consumer.committed(tps, timeout=max(1.0, min(60.0, deadline - time.monotonic()))))
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or err.code() not in UNSETTLED_OFFSETS or time.monotonic() >= deadline:
                raise
            log.warning("committed offsets of %s not known yet (%s): asking again",
                        sorted({tp.topic for tp in tps}), err.str())
            time.sleep(0.5)


class TopicIncomplete(RuntimeError):
    """A topic could not be read to the end offsets it had when the read began."""


def read_topic(
    bootstrap: str, topic: str, timeout: float = 10.0, with_headers: bool = False, stall: float | None = None,
    consumer_config: dict[str, object] | None = None,
) -> list[tuple[bytes | None, bytes]] | list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Everything committed in ``topic`` now (read_committed), in partition order.

    By default the read gives up after ``timeout`` seconds with what it has (for the command line and
    tests, reading outputs). With ``stall``, it reads to the end offsets however long that takes and
    raises ``TopicIncomplete`` only when ``stall`` seconds pass without progress (a state restore
    must never carry on half-read; an open transaction of a dead producer holds read_committed
    readers until the broker aborts it, so ``stall`` must outlast ``transaction.timeout.ms``).
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"driftline-read-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest",
        **(consumer_config or {}),
    }, logger=log)
    try:
        meta = max(timeout, 10.0)  # for metadata and offsets: the cap is on reading
        md = consumer.list_topics(topic, timeout=meta)
        if topic not in md.topics or md.topics[topic].error is not None:
            return []
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        ends = {}
        for tp in parts:
            low, high = _offsets(consumer, tp, meta)
            if high > low:
                ends[tp.partition] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list = []
        done: set[int] = set()
        wait = stall if stall is not None else timeout
        deadline = time.monotonic() + wait
        at: dict[int, int] = {}
        while len(done) < len(ends):
            if time.monotonic() >= deadline:
                if stall is None:
                    break
                behind = {p: (at.get(p, 0), end) for p, end in ends.items() if p not in done}
                raise TopicIncomplete(f"{topic}: no progress for {stall:.0f}s; partitions not read to their end "
                                      f"(position, end): {behind}")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                value = msg.value() if msg.value() is not None else b""
                if with_headers:
                    out.append((msg.key(), value, dict(msg.headers() or [])))
                else:
                    out.append((msg.key(), value))
                part, offset = msg.partition() or 0, msg.offset() or 0
                if offset + 1 >= ends[part]:
                    done.add(part)
            # Transaction markers occupy offsets: also stop on position.
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    done.add(tp.partition)
                if tp.offset > at.get(tp.partition, 0):
                    at[tp.partition] = tp.offset
                    if stall is not None:
                        deadline = time.monotonic() + stall  # progress: the stall clock starts again
        return out
    finally:
        consumer.close()
