"""A series task: one input partition's records in; dead letters and window reports out.

The series stage of DESIGN.md's data flow, as one class whose steps are one module each (see
``tables.py``). No Kafka and no wall clock in here: the caller feeds records and an optional clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter

import numpy as np

from ..config import Config
from ..decode import DeadLetter, Record, decode_batch
from ..metrics import Metrics
from ..typed import TypedDecoder
from ..window import Watermark
from .accept import AcceptStep
from .close import CloseStep
from .ingest import IngestStep
from .judge import JudgeStep
from .lane import REFUSED, LaneStep
from .route import Routed, RouteStep
from .shadow import ShadowStep
from .silence import SilenceStep
from .tables import ModelState, Output, Stats

_PARTITION = itemgetter(3)  # Record.partition


class SeriesTask(RouteStep, IngestStep, CloseStep, JudgeStep, ShadowStep, LaneStep, SilenceStep, AcceptStep):
    """Decode, route, window, sketch and judge one partition's records (its series' whole state)."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
        idle_after: float = 30.0,
        budget_share: float = 1.0,
        shared_edges: bool = False,
    ):
        self.config = config
        self.d = config.defaults
        self.metrics = metrics or Metrics()
        self.clock = clock
        # The share of each model's false-alarm budget this task may spend (one task per input
        # partition: each gets 1/partitions, so the model's total stays within the budget).
        self.budget_share = budget_share
        # One task of several (a stage): a numeric prediction's bin edges are decided by the model
        # stage from every partition's sample and broadcast (``apply``), not learned here alone.
        self.shared_edges = shared_edges
        self.idle_after = idle_after if clock is not None else float("inf")
        self.watermark = Watermark(self.d.allowed_lateness)
        self.models = {name: ModelState(config.resolved(name), self.d.baseline_windows) for name in config.models}
        self.series_model = []
        self.series_segment = []
        self.series_key = []
        self.last_active = []
        self.alert_states = {}
        self.sent = {}
        self.accepted = []
        self.stats = Stats()
        self.typed = TypedDecoder(native=self.d.native_decoder)
        self._batch = []  # the batch being processed (records of dead letters come from it)
        self._parts = 0  # its partition, or each record's
        self._refused = []  # this batch's events refused for their prediction (counted for their series)
        self._early = Output()  # the fast lane's reports not yet handed out (from events counted outside a batch)
        self._reach = np.iinfo(np.int64).min  # the latest event time of the batches so far
        self._prefix = None  # this batch's latest event time up to each place (the fast lane's reports wait on it)
        self._heard = np.full(0, np.nan)  # per series: processing time of its last event (silence.py)
        self._looked = -np.inf

    def process(self, records: Sequence[Record]) -> Output:
        out = Output()
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        self.metrics.batch_events.observe(len(records))
        if len(self.typed.schemas) != len(self.models):
            for m in self.models.values():
                self._schema(m)
        self._batch = records
        single = getattr(records, "partition", None)
        if single is not None:
            self._parts = int(single)
        else:
            seen = set(map(_PARTITION, records))
            self._parts = seen.pop() if len(seen) == 1 else np.fromiter(map(_PARTITION, records), np.int64, len(records))
        now = self.clock() if self.clock is not None else 0.0
        now_ms = int(now * 1000) if self.clock is not None else None
        # Each model is routed, then ingested, in turn (lazily: dead letters keep that order).
        routed: Iterator[tuple[ModelState, Routed | None]]
        plans = self._plans(records, now_ms)
        self.metrics.batches_decoded.labels("native" if plans is not None else "python").inc()
        if plans is not None:  # the whole batch decoded into columns, and clean
            self._prefix = self._reaches(len(records), [(p.cols.where, p.cols.ts) for _m, p in plans])
            routed = ((m, self._commit(m, plan)) for m, plan in plans)
        else:
            dec = decode_batch(records, self.d.max_event_bytes, self.typed)
            times = np.fromiter((e.ts for e in dec.events), np.int64, len(dec.events))
            limit = self._limit(times, now_ms) if len(times) else None
            if limit is not None:  # events refused as from the future move nothing
                times = np.minimum(times, limit)
            self._prefix = self._reaches(len(records), [(np.asarray(dec.where, dtype=np.int64), times)])
            for dl in dec.dead:
                self._dead(out, dl)
            routed = ((m, self._route(m, evs, where, now_ms, out))
                      for m, evs, where in self._by_model(dec.events, dec.where, out))
        part_max: dict[int, int] = {}
        for m, cols in routed:
            if cols is None:
                continue
            self._arrived(cols.sids, now)
            for p, ts in self._ingest(m, cols, out).items():
                part_max[p] = max(part_max.get(p, ts), ts)
            if m.features is not None and tuple(m.features.kinds()) != self.typed.schemas[m.cfg.name].kinds:
                self._schema(m)  # a feature's kind is now known: type it in the decoder
        if self._refused:
            self._count_refused(out)
        self._reach = int(self._prefix[-1]) if len(self._prefix) else self._reach
        self._prefix = None
        for p, ts in part_max.items():
            self.watermark.observe(p, ts, now)
        self._close_due(out, self.watermark.value(now, self.idle_after))
        self._silence(out, now)
        return self._drain(out)

    def _reaches(self, n: int, columns: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """The latest event time up to each place of a batch of ``n`` records, from the times of its
        decoded events (their places, their times), counting the batches before it."""
        at = np.full(n, self._reach, np.int64)
        for where, ts in columns:
            if len(where):
                at[where] = np.maximum(ts, self._reach)
        return np.maximum.accumulate(at) if n else at

    def _drain(self, out: Output) -> Output:
        """The fast lane's reports first: they were due before anything this call closed."""
        if self._early.reports:
            out.reports[:0] = self._early.reports
            self._early.reports = []
        return out

    def finish(self) -> Output:
        """End of input (replay): close every open window."""
        out = Output()
        self.watermark.flush()
        self._close_due(out, self.watermark.value(0.0, self.idle_after))
        return self._drain(out)

    def tick(self) -> Output:
        """No new records: idle partitions may release the watermark."""
        out = Output()
        now = self.clock() if self.clock is not None else 0.0
        self._close_due(out, self.watermark.value(now, self.idle_after))
        self._silence(out, now)
        return self._drain(out)

    def reject(self, records: Sequence[Record], reason: str, details: Sequence[str]) -> Output:
        """Dead letters for records that were consumed but never given to ``process`` (the guard's
        culprits), counted as such: consumed = processed + dead-lettered still holds."""
        out = Output()
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        for rec, detail in zip(records, details, strict=True):
            self._dead(out, DeadLetter(rec, reason, detail))
        return out

    def _dead(self, out: Output, dl: DeadLetter) -> None:
        if dl.reason in REFUSED:
            self._refused.append(dl)
        out.dead_letters.append(dl)
        self.stats.dead_lettered += 1
        self.metrics.dead_lettered.labels(dl.reason).inc()

