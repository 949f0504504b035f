"""``driftline replay``: the two stages over a JSONL file (in file order) or a topic's history, without
Kafka in between (backtests)."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from .config import Config
from .contract import Alert
from .decode import Record
from .engine import Output, segment_key
from .lines import LineBatch, LineBlock, line_end, plain_line_count
from .metrics import Metrics
from .pipeline import Pipeline
from .publish import alert_bytes, command_bytes
from .report import BacktestReport, Progress


@dataclass
class ReplayResult:
    events: int
    processed: int
    dead_lettered: int
    alerts: int
    commands: int
    seconds: float
    by_reason: Counter[str] = field(default_factory=Counter)
    firing: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def replay(
    events: Path,
    config: Config,
    alerts_out: IO[bytes] | None = None,
    commands_out: IO[bytes] | None = None,
    dead_out: IO[bytes] | None = None,
    chunk: int = 5000,
    report: BacktestReport | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Replay a JSONL file, one event per line, in file order."""
    with events.open("rb") as fh:
        return replay_batches(file_batches(fh, str(events), chunk), config, alerts_out, commands_out, dead_out,
                              report=report, progress=progress,
                              fraction=lambda: fh.tell() / max(events.stat().st_size, 1))


def replay_kafka(bootstrap: str, topic: str, since_ms: int | None, config: Config,
                 alerts_out: IO[bytes] | None = None, commands_out: IO[bytes] | None = None,
                 dead_out: IO[bytes] | None = None, report: BacktestReport | None = None,
                 progress: Progress | None = None) -> ReplayResult:
    """Replay a Kafka topic's retained history from ``since_ms`` (broker timestamps) to its end now."""
    from .consume import history_batches, topic_partitions

    done = [0.0]
    client = dict(config.kafka.client)
    empty: set[int] = set()

    def batches() -> Iterator[list[Record]]:
        for batch, fraction, nothing in history_batches(bootstrap, topic, since_ms, client=client):
            done[0] = fraction
            empty.update(nothing)
            if batch:
                yield batch

    # A series task per partition, as the service runs them (each with its own watermark, and the
    # stray rule on its own stream); every partition holds the frontier until it delivers.
    return replay_batches(batches(), config, alerts_out, commands_out, dead_out, report=report, progress=progress,
                          fraction=lambda: done[0], partitions=topic_partitions(bootstrap, topic, client),
                          idle_partitions=lambda: empty)


def file_batches(fh: IO[bytes], source: str, chunk: int = 5000, read_size: int = 1 << 20
                 ) -> Iterator[LineBatch | LineBlock]:
    """Batches of ``chunk`` lines (the last may be shorter) from a JSONL file, read in large blocks: a
    record's ``offset`` is its 1-based line number; blank lines are skipped but counted; a CR before
    the LF is dropped. The batches do not depend on the block size (the watermark moves per batch).

    Runs of plain lines (no blank line, no CR) go on as one block of bytes each (``LineBlock``);
    reads grow toward ``chunk`` lines from the line length seen so far.
    """
    cut_into = _Chunker(source, chunk)
    lineno = 0
    rest = b""
    size = read_size
    while True:
        block = fh.read(size)
        if not block:
            break
        data = rest + block if rest else block
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no line ends in it yet
            rest = data
            continue
        whole, rest = data[:cut], data[cut:]
        n = plain_line_count(whole)
        if n is None:
            n = whole.count(b"\n")
            yield from cut_into.lines(whole, lineno + 1)
        else:  # the common case: every line is an event
            yield from cut_into.plain(whole, lineno + 1, n)
        lineno += n
        size = max(read_size, min(1 << 24, chunk * max(1, len(whole) // n)))
    if rest:
        yield from cut_into.lines(rest, lineno + 1)
    yield from cut_into.finish()


class _Chunker:
    """Cuts a file's lines into batches of exactly ``chunk`` lines. Plain lines wait as one block of
    bytes, other lines one by one; at most one of the two holds lines at any time."""

    def __init__(self, source: str, chunk: int):
        self.source, self.chunk = source, chunk
        self.block, self.first, self.n = b"", 0, 0  # plain lines waiting: bytes, first line number, count
        self.values: list[bytes] = []  # lines waiting one by one, with their numbers
        self.numbers: list[int] = []

    def plain(self, whole: bytes, first: int, n: int) -> Iterator[LineBatch | LineBlock]:
        """``n`` plain, whole lines, the first numbered ``first``. Each byte is copied once, into the
        batch it ends up in (offsets into ``whole``, no sliced remainders)."""
        start = 0
        if self.values:  # a batch is being made line by line: complete it first
            take = min(self.chunk - len(self.values), n)
            cut = line_end(whole, take)
            self.values += whole[:cut].split(b"\n")[:-1]
            self.numbers += range(first, first + take)
            start, first, n = cut, first + take, n - take
            if len(self.values) == self.chunk:
                yield self._lines()
            if not n:
                return
        if self.n:  # plain lines waiting: complete their batch, or wait on
            need = self.chunk - self.n
            if n < need:
                self.block += whole[start:]
                self.n += n
                return
            cut = line_end(whole, need, start)
            yield LineBlock(self.block + whole[start:cut], self.source, self.first, self.chunk)
            self.block, self.n = b"", 0
            start, first, n = cut, first + need, n - need
        while n >= self.chunk:
            cut = line_end(whole, self.chunk, start)
            yield LineBlock(whole[start:cut], self.source, first, self.chunk)
            start, first, n = cut, first + self.chunk, n - self.chunk
        if n:
            self.block, self.first, self.n = whole[start:], first, n

    def lines(self, data: bytes, first: int) -> Iterator[LineBatch]:
        """Lines that may be blank or end in a CR (the first numbered ``first``)."""
        if self.n:  # the plain lines waiting join the line-by-line batch
            self.values, self.numbers = self.block.split(b"\n")[:-1], list(range(self.first, self.first + self.n))
            self.block, self.n = b"", 0
        for number, line in enumerate(data.split(b"\n"), start=first):
            line = line.rstrip(b"\r")
            if line.strip():
                self.values.append(line)
                self.numbers.append(number)
                if len(self.values) == self.chunk:
                    yield self._lines()

    def finish(self) -> Iterator[LineBatch | LineBlock]:
        if self.n:
            yield LineBlock(self.block, self.source, self.first, self.n)
        if self.values:
            yield self._lines()

    def _lines(self) -> LineBatch:
        batch = LineBatch(self.values, self.source, self.numbers)
        self.values, self.numbers = [], []
        return batch


def replay_lines(
    lines: Iterable[bytes],
    config: Config,
    alerts_out: IO[bytes] | None = None,
    commands_out: IO[bytes] | None = None,
    dead_out: IO[bytes] | None = None,
    chunk: int = 5000,
    source: str = "replay",
    on_alert: Callable[[Alert], None] | None = None,
) -> ReplayResult:
    """The engine over lines of JSON (one event each), closing every window at the end."""

    def batches() -> Iterator[list[Record]]:
        batch: list[Record] = []
        for lineno, line in enumerate(lines, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            batch.append(Record(line, None, source, 0, lineno))
            if len(batch) >= chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    return replay_batches(batches(), config, alerts_out, commands_out, dead_out, on_alert)


def replay_batches(
    batches: Iterable[Sequence[Record]],
    config: Config,
    alerts_out: IO[bytes] | None = None,
    commands_out: IO[bytes] | None = None,
    dead_out: IO[bytes] | None = None,
    on_alert: Callable[[Alert], None] | None = None,
    report: BacktestReport | None = None,
    progress: Progress | None = None,
    fraction: Callable[[], float] | None = None,
    partitions: Iterable[int] = (),
    idle_partitions: Callable[[], Iterable[int]] | None = None,
) -> ReplayResult:
    """The two stages over batches of records (``Pipeline``: a series task per partition), closing
    every window at the end. A batch that makes a series task raise does not stop it: its culprits
    become ``engine_error`` dead letters (``Guard``)."""
    pipeline = Pipeline(config, Metrics(), partitions=list(partitions) or [0])
    result = ReplayResult(0, 0, 0, 0, 0, 0.0)

    def emit(out: Output) -> None:
        for a in out.alerts:
            result.alerts += 1
            if on_alert is not None:
                on_alert(a)
            if report is not None:
                report.add_alert(a)
            if a.status == "firing" and a.notify_reason == "new":
                result.firing[(a.model, segment_key(a.segment) or "(all)", a.signal)] += 1
            if alerts_out is not None:
                alerts_out.write(alert_bytes(a) + b"\n")
        for c in out.commands:
            result.commands += 1
            if report is not None:
                report.add_command(c)
            if commands_out is not None:
                commands_out.write(command_bytes(c) + b"\n")
        for dl in out.dead_letters:
            result.by_reason[dl.reason] += 1
            if dead_out is not None:
                value = dl.record.value or b""
                dead_out.write(
                    orjson.dumps(
                        {"reason": dl.reason, "detail": dl.detail, "line": dl.record.offset,
                         "value_base64": base64.b64encode(value).decode()}
                    ) + b"\n"
                )

    started = time.perf_counter()
    for batch in batches:
        for p in idle_partitions() if idle_partitions is not None else ():
            pipeline.caught_up(p)  # nothing to replay there: it holds no window open
        emit(pipeline.process(batch))
        if progress is not None:
            progress.update(pipeline.stats.consumed, fraction() if fraction is not None else None)
    emit(pipeline.finish())
    s = pipeline.stats
    if progress is not None:
        progress.update(s.consumed, 1.0, final=True)
    result.seconds = time.perf_counter() - started
    result.events, result.processed, result.dead_lettered = s.consumed, s.processed, s.dead_lettered
    return result

