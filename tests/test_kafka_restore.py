"""A state restore never carries on half-read (issue 13), on the real broker.

A restore used to read the state topic for at most 60 s and carry on with whatever it had. The cap
is scaled down here rather than the state scaled up (reading takes about 0.1 s per 10 MB locally):
with the cap at zero the old read returns a part, the new one reads to the end offsets however long
that takes. And when a read cannot progress, the service stops with the reason instead of starting
from part of its state: here the stall allowance is zero, so the first check fails it (a broker-side
consumer quota, tried as a way to make a real read crawl, did not slow librdkafka's fetches).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from stream.topics import TopicIncomplete, create_topic, produce, read_topic

from .test_kafka_faults import config

pytestmark = pytest.mark.kafka


def state_topic(bootstrap: str, name: str, records: int, size: int) -> str:
    topic = f"{name}.state"
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact"})
    produce(bootstrap, topic, [(f"other|{i}/meta#0".encode(), bytes([i % 251]) * size) for i in range(records)])
    return topic


def test_a_restore_is_not_cut_off_by_a_time_cap(kafka_bootstrap: str) -> None:
    name = f"restore-{uuid.uuid4().hex[:8]}"
    topic = state_topic(kafka_bootstrap, name, records=60, size=100_000)
    capped = read_topic(kafka_bootstrap, topic, timeout=0.0)  # the old way, its cap scaled to nothing
    assert len(capped) < 60
    whole = read_topic(kafka_bootstrap, topic, timeout=0.0, stall=30)
    assert len(whole) == 60 and [v for _k, v in whole] == [bytes([i % 251]) * 100_000 for i in range(60)]  # type: ignore[misc]


def test_a_state_that_cannot_be_read_to_its_end_stops_the_service_with_the_reason(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    from stream.config import load_config
    from stream.service import Service

    name = f"restore-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, f"{name}.input", partitions=2)
    state_topic(kafka_bootstrap, name, records=40, size=200_000)
    service = Service(load_config(config(tmp_path, name, kafka_bootstrap, f"{name}.input")), commit_interval=0.5)
    service.series.restore_stall = 0.0
    t0 = time.monotonic()
    with pytest.raises(TopicIncomplete, match=r"no progress for 0s.*\(position, end\)"):
        service.run(idle_exit=60)
    assert time.monotonic() - t0 < 50  # it stopped at the restore, not on the idle exit
    assert not service.series.partitions  # nothing was started from part of the state
