"""Feature sketches of one model: a histogram per feature with a null bin, and a running correlation.

Each configured feature gets a spec from its first non-null value (numeric: quantile edges learned
from its first values; text or boolean: a bounded vocabulary). Missing, null and wrong-typed values
count in an extra last bin, so the null rate drifts like any other bin. Numeric features also feed
a running correlation matrix (over events), used to group features that drift together.

>>> fs = FeatureSketch(["a", "b"], learn_from=4)
>>> rows = [{"a": float(i), "b": 2.0 * i + 1} for i in range(50)] + [{"a": None}]
>>> out = fs.bins(rows)
>>> out["a"].tolist()[-1] == fs.size("a") - 1       # the null bin
True
>>> float(round(fs.correlation()[0, 1], 3))
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .sketch import CategoricalSpec, NumericSpec, Spec

_NUMERIC = (int, float)
_PLAIN = {int, float, type(None)}


#: A numeric feature's bins, and the values its edges are learned from (per partition, or shared).
BINS = 10
LEARN_FROM = 500
_OTHER = "\x00(other)"  # a label no vocabulary holds: codes to the "other" bin of a full one


class FeatureSketch:
    def __init__(self, names: Sequence[str], learn_from: int = LEARN_FROM, bins: int = BINS):
        self.names = list(names)
        self.learn_from = learn_from
        self.n_bins = bins
        self.max_labels = 16
        self.specs: dict[str, Spec | None] = {n: None for n in self.names}
        # While the model waits for its shared parameters (a task of several): each feature's kind
        # as first seen here, its first numeric values, and its labels so far.
        self.first_kind: dict[str, str | None] = {n: None for n in self.names}
        self.sample: dict[str, NumericSpec] = {}
        self.vocab: dict[str, CategoricalSpec] = {}
        k = len(self.names)
        # Pairwise sums over events where both features are present.
        self._cross = np.zeros((k, k))  # sum x_i x_j
        self._cnt = np.zeros((k, k))  # count
        self._sumpair = np.zeros((k, k))  # sum x_i (where j present)
        self._sqpair = np.zeros((k, k))  # sum x_i^2 (where j present)

    def size(self, name: str) -> int:
        spec = self.specs[name]
        return (spec.size if spec is not None else 0) + 1

    @property
    def max_size(self) -> int:
        """Bins a feature's histogram can have (numeric bins or labels, plus other and null)."""
        return max(self.n_bins, self.max_labels + 1) + 1

    def ready(self, name: str) -> bool:
        spec = self.specs[name]
        return spec is not None and spec.frozen

    def kinds(self) -> list[str | None]:
        """Each feature's kind as learned so far ("numeric", "categorical", or None: no value yet);
        while the shared parameters are awaited, as first seen here (the decoders type by it)."""
        return [self.first_kind[n] if (s := self.specs[n]) is None else s.kind for n in self.names]

    def bins(self, rows: Sequence[dict[str, Any]]) -> dict[str, npt.NDArray[np.int64]]:
        """Bin ids of every ready feature for these events (the last bin is null or wrong type)."""
        return self.bins_of([[r.get(name) for r in rows] for name in self.names])

    def bins_of(self, columns: Sequence[Sequence[Any] | npt.NDArray[np.float64]]) -> dict[str, npt.NDArray[np.int64]]:
        """``bins`` for the events given column-wise, one column per feature in ``names`` order: a list
        of the values as sent, or a float array (NaN for null) when they are known to be numbers."""
        out: dict[str, npt.NDArray[np.int64]] = {}
        numeric_cols: dict[int, npt.NDArray[np.float64]] = {}
        n_rows = len(columns[0]) if columns else 0
        for j, name in enumerate(self.names):
            raw = columns[j]
            spec = self.specs[name]
            if spec is None:
                if isinstance(raw, np.ndarray):
                    first: Any = 0.0 if np.isfinite(raw).any() else None
                else:
                    first = next((v for v in raw if v is not None), None)
                if first is None:
                    continue
                spec = self.specs[name] = (
                    NumericSpec(bins=self.n_bins, learn_from=self.learn_from)
                    if type(first) in _NUMERIC else CategoricalSpec(max_labels=self.max_labels)
                )
            if isinstance(spec, NumericSpec):
                if isinstance(raw, np.ndarray):
                    arr = raw
                elif set(map(type, raw)) <= _PLAIN:  # the common case: numpy maps None to NaN itself
                    arr = np.array(raw, dtype=np.float64)
                else:
                    arr = np.array([v if type(v) in _NUMERIC else np.nan for v in raw], dtype=np.float64)
                numeric_cols[j] = arr
                if not spec.frozen:
                    spec.observe(arr[np.isfinite(arr)])
                    if not spec.frozen:
                        continue
                b = spec.bin(np.nan_to_num(arr))
                b[~np.isfinite(arr)] = spec.size
                out[name] = b
            else:
                if isinstance(raw, np.ndarray):  # a float column given to a text feature: all wrong-typed
                    raw = [None] * len(raw)
                labels = [v if type(v) is str else ("true" if v is True else "false") if type(v) is bool else None
                          for v in raw]
                codes = spec.codes([lab if lab is not None else "" for lab in labels])
                codes[np.array([lab is None for lab in labels])] = spec.size
                out[name] = codes
        self._correlate(numeric_cols, n_rows)
        return out

    def wait(self, columns: Sequence[Sequence[Any] | npt.NDArray[np.float64]], cut: int
             ) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
        """Events that wait for the shared parameters, kept both ways they may be binned: each
        feature as numbers (NaN: null or not a number) and as label codes (-1: null or not a label).
        The first ``cut`` events feed the sample: each feature's first kind and first values."""
        out = []
        for j, name in enumerate(self.names):
            raw = columns[j]
            n = len(raw)
            if isinstance(raw, np.ndarray):
                floats = np.asarray(raw, dtype=np.float64)
                codes = np.full(n, -1, np.int64)
                seen = "numeric" if np.isfinite(floats[:cut]).any() else None
            else:
                floats = np.array([v if type(v) in _NUMERIC else np.nan for v in raw], dtype=np.float64)
                labels = [v if type(v) is str else ("true" if v is True else "false") if type(v) is bool else None
                          for v in raw]
                vocab = self.vocab.setdefault(name, CategoricalSpec(max_labels=self.max_labels))
                codes = vocab.codes([lab if lab is not None else "" for lab in labels])
                codes[np.array([lab is None for lab in labels], dtype=bool)] = -1
                first = next((v for v in raw[:cut] if v is not None), None)
                seen = None if first is None else "numeric" if type(first) in _NUMERIC else "categorical"
            if self.first_kind[name] is None and seen is not None:
                self.first_kind[name] = seen
            head = floats[:cut]
            self.sample.setdefault(name, NumericSpec(bins=self.n_bins, learn_from=self.learn_from)).observe(
                head[np.isfinite(head)], freeze=False)
            out.append((floats, codes))
        return out

    def proposal(self) -> dict[str, tuple[str | None, list[float]]]:
        """Each feature's first kind and first numeric values, for the model stage."""
        return {n: (self.first_kind[n], self.sample[n].sample.tolist() if n in self.sample else [])
                for n in self.names}

    def adopt(self, params: dict[str, tuple[str, list[float]]]) -> None:
        """The model stage's kinds and edges; a feature it has none for stays to be learned here."""
        for name in self.names:
            got = params.get(name)
            if got is None or self.specs[name] is not None:
                continue
            kind, edges = got
            if kind == "numeric":
                spec = NumericSpec(bins=self.n_bins, learn_from=self.learn_from)
                spec.freeze_at(edges)
                self.specs[name] = spec
            else:
                self.specs[name] = self.vocab.get(name) or CategoricalSpec(max_labels=self.max_labels)
        self.sample.clear()

    def release(self, kept: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]) -> list[Any]:
        """``wait``'s columns as ``bins_of`` takes them, now that the kinds are known."""
        cols: list[Any] = []
        for name, (floats, codes) in zip(self.names, kept, strict=True):
            spec = self.specs[name]
            if isinstance(spec, CategoricalSpec):
                table = np.array([*spec.labels, *[_OTHER] * (spec.max_labels + 1 - len(spec.labels)), None], dtype=object)
                cols.append(table[np.where(codes < 0, len(table) - 1, codes)].tolist())
            else:
                cols.append(floats)
        return cols

    def _correlate(self, cols: dict[int, npt.NDArray[np.float64]], n: int) -> None:
        """Pairwise sums for ``correlation``, of the features whose edges are learned: on their values
        as window sums take them (``NumericSpec.clip``), so that one extreme value cannot overflow them
        or outweigh every other event."""
        cols = {j: spec.clip(c) for j, c in cols.items()
                if isinstance(spec := self.specs[self.names[j]], NumericSpec) and spec.frozen}
        if len(cols) < 2 or n == 0:
            return
        idx = np.array(sorted(cols))
        x = np.stack([cols[i] for i in idx], axis=1)
        ok = np.isfinite(x)
        x = np.where(ok, x, 0.0)
        w = ok.astype(np.float64)
        self._cross[np.ix_(idx, idx)] += x.T @ x
        self._cnt[np.ix_(idx, idx)] += w.T @ w
        self._sumpair[np.ix_(idx, idx)] += x.T @ w
        self._sqpair[np.ix_(idx, idx)] += (x * x).T @ w

    def correlation(self) -> npt.NDArray[np.float64]:
        """Pairwise Pearson correlation of the numeric features so far (0 where unknown)."""
        n = np.maximum(self._cnt, 1.0)
        mean_i = self._sumpair / n          # mean of i over rows where j present
        mean_j = self._sumpair.T / n
        cov = self._cross / n - mean_i * mean_j
        var_i = self._sqpair / n - mean_i**2
        var_j = self._sqpair.T / n - mean_j**2
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(var_i * var_j)
        r = np.where(np.isfinite(r) & (self._cnt > 10), r, 0.0)
        np.fill_diagonal(r, 1.0)
        return r


def correlated_groups(names: Sequence[str], index: dict[str, int], corr: npt.NDArray[np.float64],
                      threshold: float = 0.7) -> list[list[str]]:
    """Connected components of ``names`` under |correlation| >= threshold.

    >>> c = np.array([[1, .9, 0], [.9, 1, 0], [0, 0, 1.]])
    >>> correlated_groups(["x", "y", "z"], {"x": 0, "y": 1, "z": 2}, c)
    [['x', 'y'], ['z']]
    """
    parent = {n: n for n in names}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if abs(corr[index[a], index[b]]) >= threshold:
                parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(find(n), []).append(n)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g))
