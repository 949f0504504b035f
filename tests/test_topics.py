"""Reading a topic right after it was created: its partitions answer "not leader" until their
leader is elected, and the read asks again instead of failing the service's first start."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.topics import _offsets


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
