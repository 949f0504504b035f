"""Small Kafka helpers for the command line, the demo and tests: create a topic, produce lines, read all."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
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


def read_topic(
    bootstrap: str, topic: str, timeout: float = 10.0, with_headers: bool = False
) -> list[tuple[bytes | None, bytes]] | list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Everything committed in ``topic`` now (read_committed), in partition order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"driftline-read-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest",
    }, logger=log)
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error is not None:
            return []
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        ends = {}
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            if high > low:
                ends[tp.partition] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(ends) and time.monotonic() < deadline:
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
        return out
    finally:
        consumer.close()
