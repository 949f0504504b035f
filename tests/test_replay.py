"""Backtests: `driftline replay` over a file and over a Kafka topic's history, with its summary,
progress bar and HTML report."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from stream.engine import segment_key
from stream.simulate import HOUR_MS, WEEK_MS, Scenario, simulate
from stream.topics import create_topic, produce

from .conftest import driftline

END = 1795716000000


@pytest.fixture(scope="module")
def backtest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("backtest")
    sc = Scenario(weeks=8, end_ms=END, rate=40, drift_segment=2, drift_start_ms=END - WEEK_MS + 6 * HOUR_MS)
    events = tmp / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in simulate(sc, seed=8)) + b"not json\n")
    cfg = tmp / "driftline.toml"
    cfg.write_text('[models.fraud]\naction = "circuit_break"\nsegment_by = ["country", "channel"]\n')
    return events, cfg


def test_replay_prints_a_summary_a_progress_bar_and_writes_a_report(backtest: tuple[Path, Path], tmp_path: Path) -> None:
    events, cfg = backtest
    report = tmp_path / "report.html"
    proc = driftline("replay", str(events), "--config", str(cfg), "--alerts", str(tmp_path / "a.jsonl"),
                     "--commands", str(tmp_path / "c.jsonl"), "--report", str(report), "--progress")
    out = proc.stdout
    assert "dead-lettered 1 {'malformed_json': 1}" in out
    assert "per week:\n  2026-W47: 1" in out  # the drift starts on Thursday of week 47
    assert "fraud [channel=web,country=DE]: " in out  # per segment: the drifted one
    assert "would have been circuit-broken:\n  fraud from 2026-11-" in out
    assert "[##############################] 100%" in proc.stderr  # the bar, ending full
    page = report.read_text()
    alerts = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    new = [a for a in alerts if a["status"] == "firing" and a["notify_reason"] == "new"]
    assert new and page.count('<section class="alert"') == len(new)
    assert page.count('<svg id="distribution"') == sum(1 for a in new if a["signal"] == "prediction")
    assert "Would have been circuit-broken" in page and "channel=web,country=DE" in page


@pytest.mark.kafka
def test_replay_a_topic_history_from_a_given_time(kafka_bootstrap: str, prefix: str, backtest: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    events, cfg = backtest
    raw = [line for line in events.read_bytes().splitlines() if line.startswith(b"{")]
    topic = f"{prefix}.history"
    create_topic(kafka_bootstrap, topic, partitions=2)

    def keyed(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        return [(segment_key(orjson.loads(v)["segment"]).encode(), v) for v in lines]

    produce(kafka_bootstrap, topic, keyed(raw[:1000]))  # older traffic, to be skipped
    time.sleep(1.5)
    since = int(time.time() * 1000)
    time.sleep(0.2)
    produce(kafka_bootstrap, topic, keyed(raw[1000:]))
    proc = driftline("replay", "--topic", topic, "--bootstrap", kafka_bootstrap, "--from", str(since),
                     "--config", str(cfg), "--alerts", str(tmp_path / "a.jsonl"))
    assert f"replayed {len(raw) - 1000} events" in proc.stdout
    assert f"processed {len(raw) - 1000}" in proc.stdout
    assert "new alerts: " in proc.stdout and "would have been circuit-broken:\n  fraud" in proc.stdout
    whole = driftline("replay", "--topic", topic, "--bootstrap", kafka_bootstrap, "--config", str(cfg))
    assert f"replayed {len(raw)} events" in whole.stdout


def test_file_batches_match_a_plain_line_split_whatever_the_block_size() -> None:
    """Blank and whitespace-only lines are skipped but counted, a CR before the LF is dropped, a line
    cut by a block boundary comes out whole, and batches are cut the same whatever the block size
    (seeded random files, many block sizes)."""
    import io
    import random

    from stream.replay import file_batches

    rng = random.Random(1)
    for _ in range(200):
        lines = []
        for i in range(rng.randint(0, 30)):
            kind = rng.random()
            blank = rng.choice([b"", b"  \t", b"\x0b", b"\x0c "])
            lines.append(blank if kind < 0.15 else b'{"i":%d}' % i + (b"\r" if kind > 0.9 else b""))
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        want = [(line.rstrip(b"\r"), n) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
        for size in (1, 2, 3, 7, 13, 64, 1 << 20):
            batches = list(file_batches(io.BytesIO(data), "f", chunk=3, read_size=size))
            got = [(r.value, r.offset) for batch in batches for r in batch]
            assert got == want, (data, size)
            # exactly `chunk` lines a batch whatever the block size: the watermark moves per batch
            assert [len(b) for b in batches] == [3] * (len(want) // 3) + ([len(want) % 3] if len(want) % 3 else [])


@pytest.mark.kafka
def test_replay_of_a_topic_written_in_transactions_ends(kafka_bootstrap: str, prefix: str, backtest: tuple[Path, Path]
                                                        ) -> None:
    """The end offset counts transaction markers, which a reader never gets: the replay still ends."""
    from confluent_kafka import Producer

    events, cfg = backtest
    topic = f"{prefix}.tx"
    create_topic(kafka_bootstrap, topic, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{prefix}-tx"})
    producer.init_transactions(30)
    producer.begin_transaction()
    lines = [line for line in events.read_bytes().splitlines() if line.startswith(b"{")][:3000]
    for line in lines:
        producer.produce(topic, line)
    producer.commit_transaction(30)
    proc = driftline("replay", "--topic", topic, "--bootstrap", kafka_bootstrap, "--config", str(cfg), timeout=120)
    assert f"replayed {len(lines)} events" in proc.stdout


def test_a_stray_far_future_event_in_a_replay_closes_no_window(backtest: tuple[Path, Path], tmp_path: Path) -> None:
    """Without a clock a replay cannot call anything 'ahead of now': an event years after the rest of its
    batch is a stray (``future``), or the watermark would jump there and every event after it be late."""
    from stream.config import load_config
    from stream.replay import replay

    events, cfg = backtest
    lines = events.read_bytes().splitlines(keepends=True)
    stray = orjson.loads(lines[len(lines) // 2])
    stray.update(event_id="stray", ts=END + 3 * 365 * 86_400_000)  # 2029: inside the accepted range
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_bytes(b"".join(lines[: len(lines) // 2]) + orjson.dumps(stray) + b"\n" + b"".join(lines[len(lines) // 2:]))
    want, got = tmp_path / "want.jsonl", tmp_path / "got.jsonl"
    config = load_config(cfg)
    with want.open("wb") as a:
        clean = replay(events, config, alerts_out=a)
    with got.open("wb") as a:
        result = replay(hostile, config, alerts_out=a)
    assert clean.alerts and want.read_bytes() == got.read_bytes()
    assert result.by_reason == {"malformed_json": 1, "future": 1} and "late" not in result.by_reason
