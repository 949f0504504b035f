"""Reading a topic right after it was created: its partitions answer "not leader" until their
leader is elected, and the read asks again instead of failing the service's first start. Asking
for a group's committed offsets right after its last holder was killed: the coordinator answers
once the dead producer's transaction is aborted, and the question is asked again until then."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.topics import _offsets, committed_offsets


class Settling:
    """A consumer whose partition has no leader for its first ``refusals`` questions."""

    def __init__(self, refusals: int, code: int = KafkaError.NOT_LEADER_FOR_PARTITION):
        self.refusals, self.code, self.asked = refusals, code, 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.asked += 1
        if self.asked <= self.refusals:
            raise KafkaException(KafkaError(self.code))
        return 0, 42


def test_a_partition_without_a_leader_yet_is_asked_again() -> None:
    c = Settling(refusals=3)
    assert _offsets(c, TopicPartition("t", 0), timeout=10) == (0, 42)  # type: ignore[arg-type]
    assert c.asked == 4


def test_other_errors_and_a_leader_that_never_comes_still_fail() -> None:
    with pytest.raises(KafkaException):
        _offsets(Settling(refusals=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED), TopicPartition("t", 0), 10)  # type: ignore[arg-type]
    never = Settling(refusals=10**9)
    with pytest.raises(KafkaException):
        _offsets(never, TopicPartition("t", 0), timeout=0.5)  # type: ignore[arg-type]
    assert 1 < never.asked < 10


class Held:
    """A consumer whose group offsets are held (a dead producer's open transaction) for ``refusals`` calls."""

    def __init__(self, refusals: int, code: int = KafkaError._TIMED_OUT):
        self.refusals, self.code, self.asked = refusals, code, 0

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked += 1
        if self.asked <= self.refusals:
            raise KafkaException(KafkaError(self.code, "Failed to get committed offsets: Local: Timed out"))
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in tps]


def test_committed_offsets_held_by_a_dead_transaction_are_asked_for_again() -> None:
    c = Held(refusals=2)
    got = committed_offsets(c, [TopicPartition("t", 0), TopicPartition("t", 1)], patience=30)  # type: ignore[arg-type]
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 7)]
    assert c.asked == 3


def test_committed_offsets_give_up_on_other_errors_and_after_their_patience() -> None:
    with pytest.raises(KafkaException):
        committed_offsets(Held(1, KafkaError.GROUP_AUTHORIZATION_FAILED), [TopicPartition("t", 0)], 30)  # type: ignore[arg-type]
    never = Held(refusals=10**9)
    with pytest.raises(KafkaException):
        committed_offsets(never, [TopicPartition("t", 0)], patience=0.8)  # type: ignore[arg-type]
    assert 1 < never.asked < 10
