"""The guard: no record can stop driftline.

Every value is validated where it enters (decode), so that the engine never sees one it cannot
handle. This module is for the case that validation missed: a batch that makes ``Engine.process``
raise. The records responsible are found by bisecting the batch, each half tried on a copy of the
engine's state as it stood before the batch (copies are the state records the service restores
from, never pickles); they are dead-lettered with reason ``engine_error``, the exception's summary and
their original bytes, and the rest of the batch is then processed, once, on the real engine, as one
batch (so the watermark moves exactly as it would have without the culprits).

Finding them is delta debugging over the batch's records, in order: a half that fails alone holds
a culprit; the second half is tried after the first half's good records, so a record that fails only
after another one is found too. With ``k`` culprits among ``n`` records that is at most about ``2 k log2 n``
trials, each a restore and a ``process`` of at most the batch: seconds for a large state, and only
when something is already wrong.

>>> bad = {3, 7}  # records that break the engine, for the example
>>> culprits(lambda xs: not bad & set(xs), 10, list(range(10)))
[3, 7]
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .decode import Record
from .engine import Output
from .metrics import Metrics
from .series.task import SeriesTask
from .verdict import Params

log = logging.getLogger("driftline.guard")

REASON = "engine_error"
DETAIL_CHARS = 400  # of the exception's summary, in the dead letter's detail header
#: More culprits than this in one batch is not a few bad records but the engine's own state failing
#: (a bug at a window close fails for every record that moves the watermark): stop, do not guess.
MAX_CULPRITS = 16


class EngineFailure(RuntimeError):
    """No few records are to blame: the engine fails with none of them, with more than
    ``MAX_CULPRITS`` of them, or fails on the real engine where every trial passed (a bug in the
    engine's own state, e.g. at a window close). Stopping is the honest answer."""


class _TooMany(Exception):
    pass


def engine_error(exc: BaseException) -> bool:
    """Whether an exception out of the engine is one the guard handles: any error, and a panic of the
    compiled decoder (pyo3's PanicException derives from BaseException); not an interrupt or exit."""
    return not isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def summary(exc: BaseException) -> str:
    """The exception in one line, with where it was raised (file:line in function).

    >>> try:
    ...     int("x")
    ... except ValueError as e:
    ...     print(summary(e).split(" at ")[0])
    ValueError: invalid literal for int() with base 10: 'x'
    """
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return (text[: DETAIL_CHARS - len(where)] + where) if len(text) + len(where) > DETAIL_CHARS else text + where


def culprits(ok: Callable[[list[Any]], bool], n: int, items: Sequence[Any], failing: bool = False,
             limit: int | None = None) -> list[int]:
    """Positions (ascending) of a smallest-found set of ``items[:n]`` without which ``ok`` holds for
    the rest, in order. ``ok([])`` must be true; ``failing`` says ``ok(items)`` is known to be false
    (it is then not tried again). A half whose sibling passed is known to fail, and is not tried
    either: one culprit among n costs between log2(n) and 2 log2(n) trials.

    >>> bad, tried = {3, 7}, []
    >>> culprits(lambda xs: tried.append(1) or not bad & set(xs), 10, list(range(10)))
    [3, 7]
    >>> culprits(lambda xs: not {2, 5} <= set(xs), 8, list(range(8)))  # only the pair together fails
    [5]
    >>> tried.clear(); culprits(lambda xs: tried.append(1) or 700 not in xs, 1024, list(range(1024)), True), len(tried)
    ([700], 14)
    """

    def find(ctx: list[int], idx: list[int], failing: bool) -> list[int]:
        if not failing and ok([items[i] for i in ctx + idx]):
            return []
        if len(idx) == 1:
            found[0] += 1
            if limit is not None and found[0] > limit:
                raise _TooMany
            return idx
        mid = len(idx) // 2
        bad_a = find(ctx, idx[:mid], False)
        gone = set(bad_a)
        good_a = [i for i in idx[:mid] if i not in gone]
        # the first half all good: ctx + idx is what failed, so the second half fails (no trial)
        return bad_a + find(ctx + good_a, idx[mid:], not bad_a)

    found = [0]
    return find([], list(range(n)), failing)


def isolate(engine: SeriesTask, records: Sequence[Record], copy: Callable[[], SeriesTask] | None = None) -> Output:
    """Process ``records`` on ``engine`` (as it stands: before the batch) whatever they hold: the ones
    that make it raise become ``engine_error`` dead letters, the rest is processed as one batch.

    ``copy`` makes an engine in the same state as ``engine`` (default: through its state records),
    with its own metrics; each trial runs on one. The clock is read once: every trial and the final
    run see the same time. Raises ``EngineFailure`` when even an empty batch fails.
    """
    from .state import dumps, loads

    if copy is None:
        blob = dumps(engine)

        def copy() -> SeriesTask:
            e = loads(engine.config, blob, Metrics(), engine.clock, engine.budget_share, type(engine))
            e.idle_after, e.shared_edges = engine.idle_after, engine.shared_edges
            e.watermark._seen_at = dict(engine.watermark._seen_at)
            return e

    clock = engine.clock
    frozen: Callable[[], float] | None = None
    if clock is not None:
        now = clock()

        def frozen() -> float:
            return now

    errors: dict[int, str] = {}
    first: list[BaseException] = []
    t0 = time.perf_counter()
    trials = [0]
    recs = [records[i] for i in range(len(records))]
    position = {id(r): i for i, r in enumerate(recs)}

    def ok(subset: list[Record]) -> bool:
        trials[0] += 1
        try:
            trial = copy()
        except BaseException as exc:
            if not engine_error(exc):
                raise
            raise EngineFailure(f"a copy of the engine's state cannot be made: {summary(exc)}") from exc
        trial.clock = frozen
        try:
            trial.process(subset)
            if not subset:
                trial.tick()
        except BaseException as exc:
            if not engine_error(exc):
                raise
            if not first:
                first.append(exc)
            if len(subset) == 1:
                errors[position[id(subset[0])]] = summary(exc)
            return False
        return True

    if ok(recs):
        bad: list[int] = []
    else:
        if not ok([]):
            raise EngineFailure(f"the engine fails with no record at all: {summary(first[0])}") from first[0]
        try:
            bad = culprits(ok, len(recs), recs, failing=True, limit=MAX_CULPRITS)
        except _TooMany:
            raise EngineFailure(f"more than {MAX_CULPRITS} records of a batch of {len(recs)} make the engine raise "
                                f"({summary(first[0])}): its own state fails, not a few records") from first[0]
    gone = set(bad)
    good = [r for i, r in enumerate(recs) if i not in gone]
    engine.clock = frozen
    try:
        out = engine.process(good) if bad else engine.process(records)
    except BaseException as exc:
        if not engine_error(exc):
            raise
        raise EngineFailure(f"the engine raises on what passed on its copies ({summary(exc)}): its state "
                            "is not what its copies restore") from exc
    finally:
        engine.clock = clock
    if bad:
        cause = first[0]
        log.error("%d record(s) of a batch of %d made the engine raise (%s); dead-lettered as %s after %d "
                  "trials in %.2fs:\n%s", len(bad), len(records), summary(cause), REASON, trials[0],
                  time.perf_counter() - t0, "".join(traceback.format_exception(cause)))
        out.extend(engine.reject([recs[i] for i in bad], REASON, [errors.get(i, summary(cause)) for i in bad]))
    return out


def count_culprits(metrics: Metrics, out: Output) -> None:
    """``driftline_engine_errors``, counted where the culprits' dead letters are emitted for good (in
    the service: once their transaction commits; a rewound isolation finds them again)."""
    n = sum(1 for d in out.dead_letters if d.reason == REASON)
    if n:
        metrics.engine_errors.inc(n)


class Guard:
    """An engine over batches (``driftline replay``) that no batch can stop: a checkpoint of its
    state now and then, and the batches since, to go back to when one raises.

    A checkpoint is the engine's state records (``stream.state.records``): the first one whole, then
    only the records that changed since the last (the meta and the calendar-slot columns touched), as
    the service writes its changelog; so one costs what changed, not the whole state. It is taken
    when the batches kept since the last one hold ``keep_bytes``, or when the time since it is
    ``1 / overhead`` times what it took. After a failure the engine is restored from the checkpoint,
    the kept batches are processed again (their output was emitted already: it is the same, and
    dropped), and the failing batch goes through ``isolate``.
    """

    def __init__(self, engine: SeriesTask, keep_bytes: int = 256 << 20, overhead: float = 0.02):
        from .state import records

        self.engine = engine
        self.keep_bytes = keep_bytes
        self.overhead = overhead
        self.failures = 0
        self._state: dict[str, bytes] = records(engine, changed_only=False)
        self._mark()

    def process(self, batch: Sequence[Record]) -> Output:
        try:
            out = self.engine.process(batch)
        except BaseException as exc:
            if not engine_error(exc):
                raise
            self.failures += 1
            self._back()
            out = isolate(self.engine, batch)
            count_culprits(self.engine.metrics, out)
            self._checkpoint()
            return out
        self._kept.append(batch)
        self._kept_bytes += _size(batch)
        if self._kept_bytes >= self.keep_bytes or time.perf_counter() - self._at >= self._cost / self.overhead:
            self._checkpoint()
        return out

    def apply(self, params: Params) -> Output:
        """The model stage's shared edges into the engine, and into a checkpoint at once, so that an
        engine restored after a failure has them too. They make the engine count what waited for
        them: when that raises, the culprit is in a batch kept since the checkpoint, so the engine
        goes back to it, takes the edges, and each kept batch goes through ``isolate`` again: the
        culprits' dead letters are what comes out (the rest of those batches' output was emitted)."""
        out = Output()
        try:
            changed = self.engine.apply(params)
        except BaseException as exc:
            if not engine_error(exc):
                raise
            self.failures += 1
            kept = list(self._kept)
            self._kept.clear()  # to go through isolate below, not through _back
            self._back()
            self.engine.apply(params)
            for batch in kept:
                again = isolate(self.engine, batch)
                out.dead_letters += [d for d in again.dead_letters if d.reason == REASON]
            count_culprits(self.engine.metrics, out)
            changed = True
        if changed:
            self._checkpoint()
        return out

    def _checkpoint(self) -> None:
        from .state import records

        t0 = time.perf_counter()
        self._state.update(records(self.engine))
        self._mark(time.perf_counter() - t0)

    def _mark(self, cost: float = 0.0) -> None:
        self._seen_at = dict(self.engine.watermark._seen_at)
        self._at = time.perf_counter()
        self._cost = cost
        self._kept: list[Sequence[Record]] = []
        self._kept_bytes = 0

    def _back(self) -> None:
        """The engine as it stood before the failing batch: the checkpoint, then the kept batches."""
        from .state import from_records

        e = self.engine
        restored = from_records(e.config, self._state, e.metrics, e.clock, e.budget_share, type(e))
        restored.idle_after, restored.shared_edges = e.idle_after, e.shared_edges
        restored.watermark._seen_at = dict(self._seen_at)
        for batch in self._kept:
            restored.process(batch)
        for p, seen in e.watermark._seen_at.items():  # partitions said to be caught up since
            if seen == float("-inf"):
                restored.watermark._seen_at[p] = seen
        self.engine = restored


def _size(batch: Sequence[Record]) -> int:
    block = getattr(batch, "block", None)
    if block is not None:
        return len(block)
    values = getattr(batch, "values", None)
    if values is None:
        values = [r.value for r in batch]
    return sum(len(v) for v in values if v is not None)
