"""The pure core in one object: a micro-batch of records in; alerts, commands and dead letters out.

The two stages of DESIGN.md's data flow, composed in process: a series task (``series/``: decode,
route, window, sketch, per-series tests at window close) whose window reports feed a model task
(``model/``: grouping, severities, breakers, commands). No Kafka and no wall clock in here: the
service and the replay command feed records and an optional clock, and publish what comes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import Config
from .contract import Operation
from .decode import Record
from .metrics import Metrics
from .model.frontier import Frontier
from .model.task import ModelTask
from .series.tables import ModelState, Output, Stats, fingerprint, segment_key
from .series.task import SeriesTask

__all__ = ["Engine", "ModelState", "Output", "Stats", "fingerprint", "segment_key"]


class Engine(SeriesTask):
    """A series task with its model task: drift detection over micro-batches of raw records.

    The series side's tables are this object's own (it is the series task); ``decisions`` is the
    model side, which sees nothing but the window reports.
    """

    def __init__(self, config: Config, metrics: Metrics | None = None, **task: Any):
        """``task``: the series task's clock, idle_after and budget_share."""
        super().__init__(config, metrics, **task)
        self.decisions = ModelTask(config, self.metrics)
        # The reports in the order a stage of many decides them (the fast lane's wait for the watermark
        # to pass where they were found): one partition's frontier.
        self.frontier = Frontier(1, lateness=config.defaults.allowed_lateness)

    def process(self, records: Sequence[Record]) -> Output:
        return self._decide(super().process(records))

    def finish(self) -> Output:
        return self._decide(super().finish(), end=True)

    def tick(self) -> Output:
        return self._decide(super().tick())

    def operate(self, op: Operation) -> Output:
        """An operator's command: the model side applies it, and an accept then rebases the series here."""
        out = Output()
        self.decisions.operate(op, out)
        for accept in out.accepts:
            self.accept(accept)
        out.accepts = []
        return out

    def _decide(self, out: Output, end: bool = False) -> Output:
        for r in out.reports:
            self.frontier.report(0, r)
        out.reports = []
        if end:
            self.decisions.act(self.frontier.flush(), out)
        else:
            self.frontier.mark(0, self.watermark.last)
            self.decisions.act(self.frontier.due(), out)
        return out
