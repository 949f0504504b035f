"""The series stage's Kafka edge in the service: the input partitions assigned here, one task each.

Input is keyed by model|segment, so a series always lands on the same partition. Each assigned
partition has a series task (``task.py``), restored from the compacted state topic at assignment,
here or on another process after a rebalance: the restore reads the state topic to the end offsets
it had when the read began, and a restore that cannot (a stall of ``restore_stall`` seconds) stops
the process rather than carry on with part of a state. The tasks' window reports and progress marks
are queued here for the verdicts topic; the service writes them, the changed tasks' state records
and the consumed offsets in one transaction, then tells this side what committed
(``committed_now``), which is what a rewind goes back to. The model stage's shared parameters
(``verdict.Params``: a model's bin edges) come back on the params topic, which this side reads
whole (read_committed, no group) and gives to every task, restored ones too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ..config import Config
from ..consume import INTERNAL_FETCH, BatchConsumer, MessageRun, client_settings
from ..contract import Operation
from ..framing import StateError, compress, decompress, from_chunks, to_chunks
from ..guard import EngineFailure, engine_error, isolate, summary
from ..metrics import Metrics
from ..state import from_records, records
from ..topics import TopicIncomplete, committed_offsets, read_topic
from ..verdict import Mark, Params, encode
from .tables import Output
from .task import SeriesTask

log = logging.getLogger("driftline.service")

#: Key suffix of an operator's accept on the params topic (``model#accept``): kept apart from the
#: model's parameters, so that compaction keeps both.
ACCEPT_KEY = b"#accept"
HEARTBEAT = 5.0  # seconds between progress marks of a partition whose watermark stands still


@dataclass
class Partition:
    task: SeriesTask
    # The state records as of the last committed transaction (compressed, by name): what the
    # state topic holds for this partition, kept to rewind to without reading it back.
    committed_state: dict[str, bytes] | None = None
    offset: int = OFFSET_BEGINNING  # the input offset committed with it
    dirty: bool = False
    marked: Mark | None = None  # the last progress mark sent
    marked_at: float = float("-inf")


@dataclass
class Failed:
    """A batch made a task raise: ``whole`` go back to their last commit (task and offset), ``seek``
    only re-read the batch they had not processed yet."""
    whole: list[int]
    seek: list[int]


class SeriesSide:
    def __init__(self, config: Config, metrics: Metrics, clock: Callable[[], float], restore_stall: float):
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.restore_stall = restore_stall
        self.consumer: BatchConsumer | None = None  # the service's input consumer, once it has one
        self.partitions: dict[int, Partition] = {}
        self.input_partitions = 1
        # Counts (consumed, processed, dead-lettered, windows closed) of partitions that left this
        # process. A partition that comes back restores its counts with its state, so its entry goes.
        self.gone: dict[int, list[int]] = {}
        # Offsets (first, last) per partition of a batch that made a task raise: isolated when read again.
        self.suspects: dict[int, tuple[int, int]] = {}
        self.verdicts_out: list[tuple[bytes | None, bytes]] = []  # reports and marks for the model stage
        self.proposed = False  # verdicts_out holds a proposal for shared parameters (committed at once)
        self.restore_seconds = 0.0
        self.params: dict[str, Params] = {}  # the model stage's shared parameters, by model
        self.accepts: dict[str, Operation] = {}  # the latest operator's accept, by model
        self._drop_waiting: set[int] = set()  # partitions to rewind without what waited for the edges
        self._unseeked: set[int] = set()  # partitions whose rewind's seek has not succeeded yet
        self.paused: set[int] = set()  # partitions not read while their task holds windows
        self._params_in: Consumer | None = None  # made at the first read, once the topic exists

    # ----------------------------------------------------------------- the loop's calls
    def _accept(self, raw: bytes) -> None:
        """An operator's accept, broadcast by the model stage: every task rebases the series it covers."""
        try:
            op = Operation.model_validate_json(raw)
        except ValueError as exc:
            log.error("unusable accept on the params topic (%s): skipped", str(exc).splitlines()[0])
            return
        self.accepts[op.model] = op  # (for tasks restored later: the topic keeps the latest per model)
        for p, part in self.partitions.items():
            rebased = part.task.accept(op)
            if rebased:
                log.warning("partition %d: %s rebased on what it sees now (accepted by %s): %s", p, op.model,
                            op.by or "?", ", ".join(rebased))
            part.dirty = part.dirty or op.command_id in part.task.accepted  # (it keeps the ids it applied)

    def read_params(self) -> list[int]:
        """New shared parameters from the model stage, to every task (they close what they held).
        Returns the partitions to rewind: those whose task raised taking them (see below)."""
        failed: list[int] = []
        if self._params_in is None:
            k = self.config.kafka
            self._params_in = Consumer({
                **INTERNAL_FETCH, **client_settings(k), "group.id": f"{k.group_id}.params-reader", "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }, logger=log)
            self._params_in.assign([TopicPartition(k.params(), 0, OFFSET_BEGINNING)])
        for msg in self._params_in.consume(num_messages=1000, timeout=0):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            if (msg.key() or b"").endswith(ACCEPT_KEY):
                self._accept(msg.value() or b"")
                continue
            try:
                prm = Params.decode(msg.value() or b"")
            except (ValueError, KeyError, TypeError) as exc:
                log.error("unusable record on the params topic (%s): skipped", exc)
                continue
            if prm.model not in self.params:
                log.info("model %s: shared parameters from the model stage (%s edges, %d features)", prm.model,
                         "no" if prm.edges is None else len(prm.edges), len(prm.features))
            self.params[prm.model] = prm
            for p, part in self.partitions.items():
                try:
                    changed = part.task.apply(prm)
                except BaseException as exc:
                    if not engine_error(exc):
                        raise
                    # What waited for the edges makes the engine raise; its records are in committed
                    # batches, so the guard cannot find them. Drop it rather than stop for good.
                    log.critical("partition %d: counting model %s's events that waited for its shared edges made "
                                 "the engine raise (%s): back to its last commit, dropping them there "
                                 "(driftline_engine_errors)", p, prm.model, summary(exc))
                    self._drop_waiting.add(p)
                    failed.append(p)
                    continue
                if changed:
                    part.dirty = True
        return failed

    def hold_back(self) -> None:
        """Back-pressure: a partition whose task holds windows (waiting for shared parameters) is
        not read until it closes them, so it cannot run ahead of the model stage. (Reading on would
        save a fetch restart, but a record that makes the engine raise would then wait with the
        held events and raise only when they are counted, where it cannot be dead-lettered alone.)"""
        holding = {p for p, part in self.partitions.items() if part.task.held() is not None}
        topic = self.config.kafka.input_topic
        if self.consumer is None or holding == self.paused:
            return
        pause, resume = holding - self.paused, self.paused - holding
        if pause:
            self.consumer.consumer.pause([TopicPartition(topic, p) for p in sorted(pause)])
        if resume:
            self.consumer.consumer.resume([TopicPartition(topic, p) for p in sorted(resume)])
        self.paused = holding

    def close(self) -> None:
        if self._params_in is not None:
            self._params_in.close()

    def process(self, by_partition: dict[int, MessageRun], caught_up: list[int], out: Output) -> Failed | None:
        """Every assigned partition's batch (or tick), its outputs into ``out``, its reports and mark
        queued. A batch that makes a task raise stops the round: the caller rewinds what ``Failed`` says."""
        for p in caught_up:
            part = self.partitions.get(p)
            if part is not None:
                part.task.watermark.caught_up(p)
        seeked = self._seek_pending() if self._unseeked else set()
        for p, part in self.partitions.items():
            recs = by_partition.get(p)
            if p in self._unseeked or p in seeked:
                continue  # read from where the task is not: dropped, read again after the seek
            if recs and self._is_suspect(p, recs):
                try:
                    got = isolate(part.task, recs)
                except EngineFailure:
                    log.critical("partition %d: the engine fails and no few records are to blame: stopping "
                                 "(nothing of it was committed)", p)
                    raise
            elif recs:
                try:
                    got = part.task.process(recs)
                except BaseException as exc:
                    if not engine_error(exc):
                        raise
                    return self._failed(p, recs, exc, by_partition)  # a batch never stops the service
            else:
                got = part.task.tick()
            if recs or got.reports or got.proposals:
                part.dirty = True
            for prop in got.proposals:
                self.verdicts_out.append((prop.model.encode(), encode(p, prop)))
                self.proposed = True
            for r in got.reports:
                self.verdicts_out.append((r.model.encode(), encode(p, r)))
            got.reports, got.proposals = [], []
            out.extend(got)
            self._mark(p, part, p in caught_up and not recs)
        return None

    def _mark(self, p: int, part: Partition, caught_up: bool) -> None:
        """A progress mark after the partition's reports: when its watermark moved, or as a heartbeat."""
        wm = part.task.watermark.last
        mark = Mark(wm, caught_up and wm is None, part.task.held())  # empty: no event (maybe only bad records), nothing left to read
        now = time.monotonic()
        if mark != part.marked or now - part.marked_at >= HEARTBEAT:
            self.verdicts_out.append((None, encode(p, mark)))
            part.marked, part.marked_at = mark, now

    def _is_suspect(self, p: int, recs: MessageRun) -> bool:
        """Whether this batch holds offsets of one that made a task raise (then it goes through
        ``isolate``, which finds the culprits); the mark goes once the batch reaches its end."""
        span = self.suspects.get(p)
        if span is None:
            return False
        first, last = recs[0].offset, recs[len(recs) - 1].offset
        if first > span[1] or last < span[0]:
            return False
        if last >= span[1]:
            del self.suspects[p]
        return True

    def _failed(self, p: int, recs: MessageRun, exc: BaseException, by_partition: dict[int, MessageRun]) -> Failed:
        """A batch made partition ``p``'s task raise, half-way through: its state cannot be trusted.
        Every partition with work since the last commit goes back to it (task and offsets, as after
        a failed transaction), and the batch's offsets are marked, so that when they come again they
        go through ``isolate`` on a task that is whole: its culprits are dead-lettered, the rest
        is processed once."""
        first, last = recs[0].offset, recs[len(recs) - 1].offset
        self.suspects[p] = (first, last)
        self.metrics.batches_failed.inc()
        log.error("partition %d: a batch (offsets %d..%d) made the engine raise (%s); rewinding to the last "
                  "commit to find the records responsible", p, first, last, summary(exc))
        whole = [q for q, part in self.partitions.items() if part.dirty or q == p]
        return Failed(whole, [q for q in by_partition if q not in whole and q in self.partitions])

    # ----------------------------------------------------------------- transactions
    def dirty(self) -> list[int]:
        return [p for p, part in self.partitions.items() if part.dirty]

    def snapshots(self, dirty: list[int]) -> dict[int, dict[str, bytes]]:
        """The changed partitions' compressed state records. Only the records that changed: a
        transaction in live traffic touches one or two calendar slots, so it writes those columns
        and the meta, not the whole state."""
        return {p: {name: compress(rec) for name, rec in records(self.partitions[p].task).items()} for p in dirty}

    def positions(self, dirty: list[int]) -> list[TopicPartition]:
        assert self.consumer is not None
        return [tp for tp in self.consumer.consumer.position(
            [TopicPartition(self.config.kafka.input_topic, p) for p in dirty]) if tp.offset >= 0]

    def committed_now(self, snapshots: dict[int, dict[str, bytes]], positions: list[TopicPartition]) -> None:
        """The transaction committed: it held these snapshots and offsets, the queue went with it."""
        self.verdicts_out, self.proposed = [], False
        for p, snap in snapshots.items():
            part = self.partitions[p]
            part.committed_state = {**(part.committed_state or {}), **snap}
            part.dirty = False
        for tp in positions:
            if tp.partition in self.partitions:
                self.partitions[tp.partition].offset = tp.offset

    def rewind(self, partitions: list[int]) -> None:
        """After an aborted transaction: tasks back to their committed snapshots, consumer to committed offsets."""
        for p in partitions:
            part = self.partitions[p]
            part.task = self.task_from(part.committed_state, drop_waiting=p in self._drop_waiting)
            self._drop_waiting.discard(p)
            part.dirty = False
        self.seek_back(partitions)

    def seek_back(self, partitions: list[int]) -> None:
        """Seek to the offsets of the last committed transaction, which this process remembers.

        Remembering them (rather than asking the group coordinator) keeps the rewind working while
        the coordinator is away, e.g. during a broker restart. A seek that fails would leave the
        task and the consumer position out of step, so it is retried (``_seek_pending``) and the
        partition's records are not processed meanwhile.
        """
        self._unseeked.update(p for p in partitions if p in self.partitions)
        self._seek_pending()

    def _seek_pending(self) -> set[int]:
        """The seeks still owed. librdkafka refuses a seek while a partition is not being fetched
        (``_STATE``: seen while the broker restarts); such a partition's records are dropped until
        its seek succeeds (they come from a position the task is no longer at)."""
        assert self.consumer is not None
        topic = self.config.kafka.input_topic
        done: set[int] = set()
        for p in sorted(self._unseeked):
            part = self.partitions.get(p)
            try:
                if part is not None:
                    self.consumer.consumer.seek(TopicPartition(topic, p, part.offset))
            except KafkaException as exc:
                log.warning("partition %d: seek to its last committed offset %d failed (%s): retried before "
                            "its next records", p, part.offset if part is not None else -1, exc)
                continue
            self._unseeked.discard(p)
            done.add(p)
        return done

    # ----------------------------------------------------------------- partitions and their state
    def _state_key(self, partition: int) -> bytes:
        k = self.config.kafka
        return f"{k.group_id}|{k.input_topic}|{partition}".encode()

    def state_records(self, partition: int, recs: dict[str, bytes]) -> list[tuple[bytes, bytes]]:
        """(key, value) of a partition's compressed state records on the state topic: the key is
        the partition's, ``/``, the record's name, ``#`` and the chunk's index."""
        base = self._state_key(partition) + b"/"
        return [(base + name.encode() + b"#%d" % i, chunk)
                for name, blob in recs.items() for i, chunk in enumerate(to_chunks(blob))]

    def task_from(self, recs: dict[str, bytes] | None, drop_waiting: bool = False) -> SeriesTask:
        share = 1.0 / max(self.input_partitions, 1)
        task = None
        if recs:
            try:
                task = from_records(self.config, {n: decompress(v) for n, v in recs.items()}, self.metrics,
                                    self.clock, share, SeriesTask)
                task.shared_edges = True
            except StateError as exc:
                log.error("state snapshot unusable (%s): starting this partition from scratch", exc)
        if task is None:
            task = SeriesTask(self.config, self.metrics, clock=self.clock, budget_share=share, shared_edges=True)
        for prm in self.params.values():
            task.apply(prm, drop_waiting)
        for op in self.accepts.values():
            task.accept(op)
        return task

    def assigned(self, partitions: list[int]) -> None:
        """Restore each partition's task from the state topic, read to its end offsets, and its offset."""
        t0 = time.perf_counter()
        self.paused = set()  # a new assignment starts unpaused
        if self.consumer is not None:
            md = self.consumer.consumer.list_topics(self.config.kafka.input_topic, timeout=30)
            topic = md.topics.get(self.config.kafka.input_topic)
            self.input_partitions = len(topic.partitions) if topic is not None and topic.partitions else 1
        wanted = {self._state_key(p) + b"/": p for p in partitions}
        chunks: dict[int, dict[str, dict[int, bytes]]] = {}
        try:
            state = read_topic(self.config.kafka.bootstrap_servers, self.config.kafka.state_topic, timeout=60,
                               stall=self.restore_stall, consumer_config=dict(self.config.kafka.client))
        except TopicIncomplete as exc:
            # Carrying on with part of a state would double or lose what the rest holds: stop instead.
            log.critical("cannot restore the state of partitions %s: %s. Stopping; a restart retries", partitions, exc)
            raise
        size = 0
        for key, value in state:  # type: ignore[misc]
            # Keys are the partition's key (which may itself hold "/"), "/", the record's name, "#", the chunk.
            prefix = next((b for b in wanted if (key or b"").startswith(b)), None)
            if prefix is None:
                continue
            p = wanted[prefix]
            name, _, index = (key or b"")[len(prefix):].rpartition(b"#")
            size += len(value)
            if index.isdigit():
                chunks.setdefault(p, {}).setdefault(name.decode(errors="replace"), {})[int(index)] = value
        found: dict[int, dict[str, bytes]] = {}
        for p, by_name in chunks.items():
            recs = {name: from_chunks(c) for name, c in by_name.items()}
            broken = sorted(name for name, blob in recs.items() if blob is None)
            if broken:
                log.error("state of partition %d has incomplete or mixed records %s: starting it from scratch", p, broken[:5])
            else:
                found[p] = {name: blob for name, blob in recs.items() if blob is not None}
        offsets = {p: OFFSET_BEGINNING for p in partitions}  # no committed offset: the earliest, as auto.offset.reset
        if self.consumer is not None:
            tps = [TopicPartition(self.config.kafka.input_topic, p) for p in partitions]
            for tp in committed_offsets(self.consumer.consumer, tps):
                if tp.offset >= 0:
                    offsets[tp.partition] = tp.offset
        for p in partitions:
            self.gone.pop(p, None)
            task = self.task_from(found.get(p))
            task.watermark.assign(p, self.clock())
            self.partitions[p] = Partition(task, found.get(p), offsets[p])
        self.restore_seconds = time.perf_counter() - t0
        self.metrics.restore_seconds.set(self.restore_seconds)
        self.metrics.restore_bytes.set(size)
        log.info("assigned partitions %s (%d restored from state, %d bytes, in %.2fs)", partitions, len(found), size,
                 self.restore_seconds)

    def revoked(self, partitions: list[int]) -> None:
        """The partitions left (after the service committed what was done with them)."""
        self.paused -= set(partitions)
        for p in partitions:
            part = self.partitions.pop(p, None)
            if part is not None:
                self.gone[p] = counts(part.task)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(str(p))

    def drop_all(self) -> None:
        """Every partition goes (a new consumer takes over): their committed state is what is left."""
        for p in list(self.partitions):
            self.gone[p] = counts(self.partitions.pop(p).task)
        self.paused = set()

    def lost(self, partitions: list[int]) -> None:
        """Partitions taken away without a hand-over, after the transaction was aborted: they go, and
        the kept ones whose outputs were in it go back to their last commit."""
        for p in partitions:
            self.partitions.pop(p, None)
        self.paused -= set(partitions)
        self.verdicts_out, self.proposed = [], False
        for part in self.partitions.values():
            if part.dirty:
                part.task = self.task_from(part.committed_state)
                part.dirty = False
        if self.partitions and self.consumer is not None:
            self.seek_back(list(self.partitions))

    def totals(self) -> list[int]:
        """(consumed, processed, dead-lettered, windows closed) of every partition this process had."""
        totals = [sum(c) for c in zip([0, 0, 0, 0], *self.gone.values(), strict=False)]
        for part in self.partitions.values():
            totals = [a + b for a, b in zip(totals, counts(part.task), strict=True)]
        return totals


def counts(task: SeriesTask) -> list[int]:
    s = task.stats
    return [s.consumed, s.processed, s.dead_lettered, s.windows_closed]
