"""Shared bin edges: decided once per model from every partition's sample, then broadcast.

Each series task bins a numeric prediction on edges at the quantiles of the model's first values.
Learned by each partition alone, they would differ from partition to partition, and so would the
histograms: not comparable, not mergeable. Instead each series task proposes its sample (its
first values before ``learn_until``, the end of its first window plus the allowed lateness) and
holds its windows; the model stage decides the edges once ``progress`` (every partition's
watermark) has passed the earliest first window proposed (``learn_until`` less the lateness: by
then every partition that began in that window has proposed, since it proposes at the latest when
its first window is due), from the samples of that ``learn_until`` (partitions that started later
take the edges as they are), and broadcasts them
(Flink's broadcast state; here a compacted topic keyed by model, which every series task reads).
Decided from data and event time only, so a replay decides the same edges as the service.

>>> book = EdgeBook(lateness=0)
>>> book.propose(0, Proposal("m", 100, [1.0, 2.0, 3.0]))
>>> book.propose(1, Proposal("m", 100, [4.0, 5.0]))
>>> book.due(99)
[]
>>> [(p.model, len(p.edges), round(p.edges[0], 6), round(p.edges[-1], 6)) for p in book.due(100)]  # quantiles of 1..5
[('m', 19, 1.2, 4.8)]
>>> book.due(200), len(book.decided["m"])  # decided once
([], 19)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sketch import NumericSpec
from ..verdict import Params, Proposal


class EdgeBook:
    def __init__(self, lateness: int):
        self.lateness = lateness
        self.proposals: dict[str, dict[int, Proposal]] = {}  # model -> partition -> its sample
        self.decided: dict[str, list[float]] = {}

    def propose(self, partition: int, p: Proposal) -> None:
        if p.model not in self.decided:
            self.proposals.setdefault(p.model, {})[partition] = p

    def due(self, progress: int | None) -> list[Params]:
        """The models whose edges can be decided now that every partition has passed ``progress``."""
        out = []
        for model in sorted(self.proposals):
            by_part = self.proposals[model]
            first = min(p.learn_until for p in by_part.values())
            if progress is None or progress < first - self.lateness:
                continue
            sample = [np.asarray(p.values, dtype=np.float64) for _part, p in sorted(by_part.items())
                      if p.learn_until == first]
            spec = NumericSpec()
            spec.learn(np.concatenate(sample))
            self.decided[model] = spec.edges.tolist()
            del self.proposals[model]
            out.append(Params(model, self.decided[model]))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"proposals": [[model, part, p.learn_until, p.values] for model, by in self.proposals.items()
                              for part, p in by.items()],
                "decided": [[model, edges] for model, edges in self.decided.items()]}

    def restore(self, d: dict[str, Any]) -> None:
        for model, part, until, values in d.get("proposals", []):
            self.proposals.setdefault(str(model), {})[int(part)] = Proposal(str(model), int(until), [float(v) for v in values])
        self.decided = {str(model): [float(x) for x in edges] for model, edges in d.get("decided", [])}
