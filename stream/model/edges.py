"""Shared parameters: decided once per model from every partition's sample, then broadcast.

Each series task bins a numeric prediction (and each numeric feature) on edges at the quantiles of
the model's first values, and types each feature by its first value. Learned by each partition
alone, edges and kinds would differ from partition to partition, and so would the histograms: not
comparable, not mergeable. Instead each series task proposes its sample (its
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
>>> book.due(200), len(book.decided["m"].edges)  # decided once
([], 19)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..features import BINS, LEARN_FROM
from ..sketch import NumericSpec
from ..verdict import Params, Proposal, proposal_in, proposal_out


class EdgeBook:
    def __init__(self, lateness: int):
        self.lateness = lateness
        self.proposals: dict[str, dict[int, Proposal]] = {}  # model -> partition -> its sample
        self.decided: dict[str, Params] = {}

    def propose(self, partition: int, p: Proposal) -> None:
        if p.model not in self.decided:
            self.proposals.setdefault(p.model, {})[partition] = p

    def due(self, progress: int | None) -> list[Params]:
        """The models whose parameters can be decided now that every partition has passed ``progress``."""
        out = []
        for model in sorted(self.proposals):
            by_part = self.proposals[model]
            first = min(p.learn_until for p in by_part.values())
            if progress is None or progress < first - self.lateness:
                continue
            props = [p for _part, p in sorted(by_part.items()) if p.learn_until == first]
            self.decided[model] = decide(model, props)
            del self.proposals[model]
            out.append(self.decided[model])
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"proposals": [[model, part, proposal_out(p)] for model, by in self.proposals.items()
                              for part, p in by.items()],
                "decided": [prm.to_dict() for prm in self.decided.values()]}

    def restore(self, d: dict[str, Any]) -> None:
        for model, part, *p in d.get("proposals", []):
            # a snapshot from before features were shared: [model, part, until, values]
            self.proposals.setdefault(str(model), {})[int(part)] = proposal_in(p[0] if len(p) == 1 else [model, *p])
        self.decided = {}
        for prm in d.get("decided", []):
            params = Params(str(prm[0]), [float(x) for x in prm[1]]) if isinstance(prm, list) else Params.from_dict(prm)
            self.decided[params.model] = params


def decide(model: str, props: list[Proposal]) -> Params:
    """Shared parameters from the partitions' samples: the prediction's edges at the quantiles of
    every sample together (None when no partition saw a number: class labels); a feature's kind as
    most partitions first saw it (numeric on a tie), and a numeric one's edges likewise.

    >>> a = Proposal("m", 9, [], {"x": ("numeric", [1.0, 2.0]), "c": ("categorical", []), "z": (None, [])})
    >>> b = Proposal("m", 9, [], {"x": ("categorical", [3.0]), "c": ("categorical", [])})
    >>> p = decide("m", [a, b])
    >>> p.edges, sorted(p.features), p.features["x"][0], p.features["c"]
    (None, ['c', 'x'], 'numeric', ('categorical', []))
    """
    values = [np.asarray(p.values, dtype=np.float64) for p in props if p.values]
    edges = None
    if values:
        spec = NumericSpec()
        spec.learn(np.concatenate(values))
        edges = spec.edges.tolist()
    features: dict[str, tuple[str, list[float]]] = {}
    for name in sorted({n for p in props for n in p.features}):
        kinds = [p.features[name][0] for p in props if name in p.features]
        numeric, categorical = kinds.count("numeric"), kinds.count("categorical")
        if numeric + categorical == 0:
            continue  # no partition saw a value: each will learn it alone
        if numeric >= categorical:
            sample = [np.asarray(p.features[name][1], dtype=np.float64) for p in props if name in p.features]
            fspec = NumericSpec(bins=BINS, learn_from=LEARN_FROM)
            fspec.learn(np.concatenate(sample))
            features[name] = ("numeric", fspec.edges.tolist())
        else:
            features[name] = ("categorical", [])
    return Params(model, edges, features)
