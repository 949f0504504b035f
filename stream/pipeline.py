"""The two stages in one process: a series task per input partition, the frontier, one model task.

What ``driftline replay`` runs, so that a backtest decides as the service does whatever the
partition count: each partition's records go to its own series task (its own watermark, its own
series, 1/partitions of each model's false-alarm budget, a ``Guard`` so that no batch can stop it);
their window reports and progress marks meet in the ``Frontier``; the model task decides each
window once every partition has passed it, in (end, model) order, and each model's shared bin
edges from the partitions' proposals (``model/edges.py``), which go to every series task at once
where the service broadcasts them on a topic. No Kafka, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter

from .config import Config
from .decode import Record
from .engine import Output
from .guard import Guard
from .metrics import Metrics
from .model.frontier import Frontier
from .model.task import ModelTask
from .series.tables import Stats
from .series.task import SeriesTask

_PARTITION = itemgetter(3)  # Record.partition
END = 2**63 - 1


class Pipeline:
    def __init__(self, config: Config, metrics: Metrics | None = None, partitions: Iterable[int] = (0,)):
        self.config = config
        self.metrics = metrics or Metrics()
        parts = sorted(set(partitions)) or [0]
        self.share = 1.0 / len(parts)
        self.decisions = ModelTask(config, self.metrics)
        self.guards: dict[int, Guard] = {p: self._guard(p) for p in parts}
        self.frontier = Frontier(max(parts) + 1, lateness=config.defaults.allowed_lateness)
        for p in range(max(parts) + 1):
            if p not in self.guards:
                self.frontier.drop(p)

    def _guard(self, p: int) -> Guard:
        task = SeriesTask(self.config, self.metrics, clock=None, budget_share=self.share, shared_edges=True)
        task.watermark.assign(p, 0.0)
        guard = Guard(task)
        for params in self.decisions.edges.decided.values():
            guard.apply(params)
        return guard

    def process(self, records: Sequence[Record]) -> Output:
        out = Output()
        for p, recs in self._by_partition(records):
            guard = self.guards.get(p)
            if guard is None:  # a partition the topic did not have when the replay began
                guard = self.guards[p] = self._guard(p)
                self.frontier.resize(p + 1)
            self._collect(p, guard.process(recs), out)
        self._share(self.frontier.progress(), out)
        self.decisions.act(self.frontier.due(), out)
        return out

    def _share(self, progress: int | None, out: Output) -> None:
        """The bin edges the model stage can decide now, to every series task, which then close
        the windows they held for them."""
        params = self.decisions.edges.due(progress)
        while params:
            for guard in self.guards.values():
                for prm in params:
                    out.dead_letters += guard.apply(prm).dead_letters
            for p, guard in self.guards.items():
                self._collect(p, guard.engine.tick(), out)
            params = self.decisions.edges.due(progress)

    def caught_up(self, partition: int) -> None:
        """Nothing to replay in this partition: it holds no window open."""
        guard = self.guards.get(partition)
        if guard is not None:
            guard.engine.watermark.caught_up(partition)
        self.frontier.drop(partition)

    def finish(self) -> Output:
        """End of input: every window closes, and is decided."""
        out = Output()
        for p, guard in self.guards.items():
            self._collect(p, guard.engine.finish(), out)
        self._share(END, out)  # every sample is in
        for p, guard in self.guards.items():
            self._collect(p, guard.engine.finish(), out)
        self.decisions.act(self.frontier.flush(), out)
        return out

    @property
    def stats(self) -> Stats:
        total = Stats()
        for g in self.guards.values():
            s = g.engine.stats
            total.consumed += s.consumed
            total.processed += s.processed
            total.dead_lettered += s.dead_lettered
            total.windows_closed += s.windows_closed
        return total

    def _collect(self, p: int, got: Output, out: Output) -> None:
        out.dead_letters += got.dead_letters
        engine = self.guards[p].engine
        for r in got.reports:
            self.frontier.report(p, r)
        for prop in got.proposals:
            self.decisions.edges.propose(p, prop)
        self.frontier.mark(p, engine.watermark.last, held=engine.held())

    @staticmethod
    def _by_partition(records: Sequence[Record]) -> list[tuple[int, Sequence[Record]]]:
        single = getattr(records, "partition", None)
        if single is not None:
            return [(int(single), records)]
        parts = set(map(_PARTITION, records))
        if len(parts) == 1:
            return [(parts.pop(), records)]
        by: dict[int, list[Record]] = {}
        for rec in records:
            by.setdefault(rec.partition, []).append(rec)
        return sorted(by.items())
