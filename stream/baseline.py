"""Per-series baselines by calendar slot: the statistics a store keeps, and what a window is.

A closed window is folded into each of its slot's store keys (``Slot.store``): the mean histogram
of the prediction and of each feature, the dispersion of windows around that mean (each window is
scored against the slot *before* it is folded in, so it is never compared with itself), the mean
and spread of window means, and the mean and spread of log counts. Each statistic is a running
mean over the last ``k`` windows' worth of history (exponential forgetting with weight ``1/k``
once ``k`` windows were seen), so a slot costs the same bytes after one week as after a year. The
arrays that hold them are ``store.SeriesStore``'s; this module has the pure parts: a ``Window``,
a ``Baseline`` read from the store, a ``Batch`` of windows, and the dispersion ratio.

>>> float(dispersion_ratios([[50, 50]], [[50, 50]], [4])[0])  # the slot's own shape: no divergence
0.0
>>> bool(dispersion_ratios([[90, 10]], [[50, 50]], [4])[0] > 10)  # far beyond sampling noise
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .calendar import SlotKey
from .detect import js_rows

F32 = np.float32
# One point of a series' score history (for the alert's pictures): signals are prediction, volume,
# feature. Half floats for scores: the picture needs three digits, and a point is kept per slot.
POINT = np.dtype([("start", "<i8"), ("count", "<f4"), ("score", "<f2", (3,)), ("threshold", "<f2", (3,))])
SIGNAL_INDEX = {"prediction": 0, "volume": 1, "feature": 2}
RECENT = 24  # windows of recent history per series
SAME_SLOT = 4  # past windows of the same slot per series (the "same hour in past weeks" picture)
_LN2 = math.log(2.0)


@dataclass(slots=True)
class Window:
    """A closed window's sums, as it is folded into (or held aside from) the baseline."""

    start: int
    count: int
    hist: npt.NDArray[np.int64] | None
    total: float = 0.0
    total_sq: float = 0.0
    features: dict[str, npt.NDArray[np.int64]] | None = None
    invalid: int = 0  # events refused for their prediction


@dataclass(frozen=True, slots=True)
class Baseline:
    """The statistics of the slot key a window is compared with (copies: later folds do not move them)."""

    key: SlotKey
    windows: int
    preferred: bool
    hist: npt.NDArray[np.float32]  # mean counts per bin of one window
    dispersion: float  # mean ratio of a window's divergence to pure sampling noise
    ratios: int  # windows that ratio is learned from
    center: float  # mean of the window means (numeric predictions)
    spread: float  # variance of the window means
    sampling: float  # mean over windows of within-window variance / count
    within: float  # mean within-window variance
    log_center: float  # mean of log1p(count)
    log_spread: float  # variance of log1p(count)
    inv_count: float  # mean of 1 / count
    # per feature: mean hist, dispersion, ratios, windows
    features: dict[str, tuple[npt.NDArray[np.float32], float, int, int]] | None = None


def dispersion_ratios(current: npt.ArrayLike, mean: npt.ArrayLike, windows: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Divergence of each histogram in ``current`` (last axis: bins) from the matching one in ``mean``
    (the per-window mean of ``windows`` windows), in units of its sampling noise per degree of
    freedom: about 1 when the window differs from the slot by sampling noise only. NaN where either
    side is empty."""
    cur = np.asarray(current, dtype=np.float64)
    pooled = np.asarray(mean, dtype=np.float64) * np.asarray(windows, dtype=np.float64)[..., None]
    n, m = cur.sum(axis=-1), pooled.sum(axis=-1)
    df = np.maximum(((cur + pooled) > 0).sum(axis=-1) - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        jsd = js_rows(cur / n[..., None], pooled / m[..., None])
        out = jsd / ((1.0 / n + 1.0 / m) / (8.0 * _LN2)) / df
    return np.where((n > 0) & (m > 0), out, np.nan)


def ew(mean: npt.NDArray[Any], var: npt.NDArray[Any], x: npt.NDArray[Any], w: npt.NDArray[Any]) -> None:
    """Exponentially weighted mean and (population) variance, in place, one more value with weight ``w``."""
    d = x - mean
    mean += w * d
    var[:] = (1.0 - w) * (var + w * d * d)


@dataclass(slots=True)
class Batch:
    """Closed windows of many series of one model (rows), as arrays, ready to fold."""

    count: npt.NDArray[np.float64]
    hist: npt.NDArray[np.float64]  # (n, bins)
    total: npt.NDArray[np.float64]
    total_sq: npt.NDArray[np.float64]
    usable: npt.NDArray[np.bool_]  # enough events for the distribution tests
    feat: npt.NDArray[np.float64] | None = None  # (n, features, bins), zero-padded
    feat_ok: npt.NDArray[np.bool_] | None = None  # (n, features): this window has that feature on its learned bins
    invalid: npt.NDArray[np.float64] | None = None  # events refused for their prediction

    @property
    def events(self) -> npt.NDArray[np.float64]:
        """Every event of each window, its invalid predictions too: what its volume is."""
        return self.count if self.invalid is None else self.count + self.invalid

    def take(self, mask: npt.NDArray[np.bool_]) -> Batch:
        if mask.all():
            return self
        return Batch(self.count[mask], self.hist[mask], self.total[mask], self.total_sq[mask], self.usable[mask],
                     None if self.feat is None else self.feat[mask],
                     None if self.feat_ok is None else self.feat_ok[mask],
                     None if self.invalid is None else self.invalid[mask])
