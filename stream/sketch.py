"""Bounded, mergeable sketches: fixed-edge histograms whose edges come from a model's early quantiles.

A model's numeric prediction gets ``bins`` histogram bins whose inner edges are quantiles of its
first values (the outer bins are open), so every window of every segment of that model is counted
on the same edges and histograms add up. Class labels get a bounded vocabulary with an "other" bin.
Binning is vectorised: one ``searchsorted`` per model per micro-batch.

>>> spec = NumericSpec(bins=4)
>>> spec.learn(np.arange(100.0))
>>> spec.frozen, spec.edges.tolist()
(True, [24.75, 49.5, 74.25])
>>> spec.bin(np.array([0.0, 30.0, 99.0])).tolist()
[0, 1, 3]
>>> spec.clip(np.array([1e300, -1e300, 5e-324, 50.0])).tolist()  # sums of these cannot overflow
[569.25, -470.25, 5e-324, 50.0]
>>> cat = CategoricalSpec(max_labels=2)
>>> cat.codes(["spam", "ham", "spam", "eggs"]).tolist()
[0, 1, 0, 2]
>>> cat.labels
['spam', 'ham']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Values beyond this magnitude are taken as this before anything is computed from them: squares and
#: sums of a window's values stay finite (1e300 squared is inf, and inf - inf is NaN).
SAFE = 1e100
#: A value counts in a window's sums at most this many spreads of the edges beyond them: far enough
#: that heavy tails keep moving the mean (a lognormal of sigma 2 loses 0.2% of its values to it),
#: near enough that one absurd value counts as a large one, not as an overflow.
REACH = 10.0


def bin_centers(edges: FloatArray) -> FloatArray:
    """A position for each bin of ``edges``, in the values' units: the middle of an inner bin, and
    half its neighbour's width beyond the last inner edge for an outer one (distances between bins:
    a move into the next bin is a small move, not a total change).

    >>> bin_centers(np.array([1.0, 2.0, 4.0])).tolist()
    [0.5, 1.5, 3.0, 5.0]
    """
    if len(edges) < 2:
        return np.arange(len(edges) + 1, dtype=np.float64)
    mid = (edges[:-1] + edges[1:]) / 2
    return np.concatenate(([edges[0] - (edges[1] - edges[0]) / 2], mid, [edges[-1] + (edges[-1] - edges[-2]) / 2]))


class NumericSpec:
    """Bin edges of one model's numeric signal, learned once from its first values."""

    kind = "numeric"

    def __init__(self, bins: int = 20, learn_from: int = 2000):
        self.n_bins = bins
        self.learn_from = learn_from
        self.edges: FloatArray = np.empty(0)
        self.frozen = False
        self._seen: list[FloatArray] = []
        self._seen_n = 0
        self._range: tuple[float, float] | None = None  # of ``clip``, from the edges when first asked

    def observe(self, values: FloatArray, freeze: bool = True) -> None:
        """Keep early values until there are enough to place the edges: exactly the first
        ``learn_from``, so the edges do not depend on how the stream was cut into batches. Without
        ``freeze`` the values are only kept (the edges will come from elsewhere: ``freeze_at``)."""
        if self.frozen:
            return
        values = values[: self.learn_from - self._seen_n]
        self._seen.append(values)
        self._seen_n += len(values)
        if self._seen_n >= self.learn_from and freeze:
            self.learn(np.concatenate(self._seen))

    @property
    def sample(self) -> FloatArray:
        """The values kept so far for learning the edges."""
        return np.concatenate(self._seen) if self._seen else np.empty(0)

    @property
    def sampled(self) -> bool:
        """Whether the sample is complete (``learn_from`` values)."""
        return self._seen_n >= self.learn_from

    def freeze_at(self, edges: Sequence[float]) -> None:
        """Freeze at edges decided elsewhere (the model stage's, shared by every partition)."""
        self.edges = np.asarray(edges, dtype=np.float64)
        self.frozen = True
        self._seen = []
        self._range = None

    def learn(self, values: FloatArray | None = None) -> None:
        """Freeze the edges at the quantiles of ``values`` (or of what was observed)."""
        if values is None:
            values = np.concatenate(self._seen) if self._seen else np.empty(0)
        values = np.clip(values[np.isfinite(values)], -SAFE, SAFE)
        if len(values) == 0:
            edges = np.array([0.5])
        else:
            qs = np.quantile(values, np.linspace(0, 1, self.n_bins + 1)[1:-1])
            edges = np.unique(qs)
        self.edges = edges.astype(np.float64)
        self.frozen = True
        self._seen = []
        self._range = None

    def clip(self, values: FloatArray) -> FloatArray:
        """Values as they count in a window's sums and moments (frozen edges only): within ``REACH``
        spreads of the edges (the spread is their span, or their magnitude when they are close
        together), and within ``SAFE`` whatever the edges. The bins see every value as it is; the sums see an
        extreme one as a value at the sketch's reach, so one 1e300 cannot overflow them, and moves a
        window's mean no more than a few ordinary values far out in the tail would."""
        lo, hi = self.reach()
        return np.clip(values, lo, hi)

    def reach(self) -> tuple[float, float]:
        """The range ``clip`` keeps values in."""
        if self._range is None:
            lo, hi = (float(x) for x in np.clip(self.edges[[0, -1]], -SAFE, SAFE))
            if hi > lo:
                spread = max(hi - lo, 0.5 * (abs(lo) + abs(hi)))
                self._range = (max(lo - REACH * spread, -SAFE), min(hi + REACH * spread, SAFE))
            else:  # one edge (most values were one constant): no spread to measure a reach by
                self._range = (-SAFE, SAFE)
        return self._range

    @property
    def size(self) -> int:
        return len(self.edges) + 1

    def bin(self, values: FloatArray) -> IntArray:
        return np.searchsorted(self.edges, values, side="right").astype(np.int64)

    def centers(self) -> FloatArray:
        """A position for each bin, in the values' units (``bin_centers``)."""
        return bin_centers(self.edges)

    def snapshot(self) -> dict[str, object]:
        return {"kind": self.kind, "edges": self.edges.tolist(), "frozen": self.frozen}


class CategoricalSpec:
    """A bounded vocabulary of class labels; labels beyond ``max_labels`` share the last bin."""

    kind = "categorical"
    frozen = True

    def __init__(self, max_labels: int = 32):
        self.max_labels = max_labels
        self._index: dict[str, int] = {}
        self.labels: list[str] = []

    @property
    def size(self) -> int:
        return self.max_labels + 1

    def codes(self, labels: Sequence[str]) -> IntArray:
        out = np.empty(len(labels), dtype=np.int64)
        index = self._index
        other = self.max_labels
        for i, label in enumerate(labels):
            code = index.get(label)
            if code is None:
                if len(index) < self.max_labels:
                    code = index[label] = len(index)
                    self.labels.append(label)
                else:
                    code = other
            out[i] = code
        return out

    def observe(self, values: FloatArray) -> None:  # pragma: no cover - nothing to learn
        return None

    def learn(self, values: FloatArray | None = None) -> None:
        return None

    def bin(self, values: FloatArray) -> IntArray:
        return values.astype(np.int64)

    def compact(self, counts: FloatArray) -> tuple[list[str], list[float]]:
        """Labels seen so far plus "(other)", with their counts (drops the unused bins)."""
        n = len(self.labels)
        return [*self.labels, "(other)"], [*counts[:n].tolist(), float(counts[self.max_labels])]

    def snapshot(self) -> dict[str, object]:
        return {"kind": self.kind, "labels": self.labels}


Spec = NumericSpec | CategoricalSpec


def histogram_summary(counts: FloatArray, spec: Spec) -> dict[str, object]:
    """Readable summary of a histogram on a spec's bins (mean and quantiles from bin midpoints)."""
    total = float(counts.sum())
    out: dict[str, object] = {"count": total}
    if isinstance(spec, NumericSpec):
        edges = spec.edges
        out["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist()}
        if total > 0 and len(edges):
            width = float(edges[-1] - edges[0]) / max(len(edges) - 1, 1) if len(edges) > 1 else 1.0
            mids = np.concatenate(([edges[0] - width / 2], (edges[:-1] + edges[1:]) / 2, [edges[-1] + width / 2]))
            mids = mids[: len(counts)]
            out["mean"] = float((mids * counts).sum() / total)
            cdf = np.cumsum(counts) / total
            out["quantiles"] = {
                f"p{int(q * 100):02d}": float(mids[min(int(np.searchsorted(cdf, q)), len(mids) - 1)])
                for q in (0.05, 0.5, 0.95)
            }
    else:
        labels, compact = spec.compact(counts)
        out["histogram"] = {"labels": labels, "counts": compact}
    return out
