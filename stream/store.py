"""The series store: all series of one model, their slot statistics in a few numpy arrays.

Rows are series, columns are slot keys, so memory is a few numpy arrays (about 100 bytes per slot
and signal) and a snapshot is those arrays' bytes (``store_records.py`` writes and reads them).
Windows that breached (or closed while their series was firing) are held aside for
``adapt_after`` before they are folded in: a drift is not learned as normal at once, but after that
the new regime becomes the baseline and the alert can resolve. The baseline of a new window is the
first key of its slot's chain with enough windows (back-off).

>>> import numpy as np
>>> store = SeriesStore(k=8)
>>> row = store.row(0)
>>> key = ("how", 0, 9)
>>> for week in range(4):
...     w = Window(start=week, count=100, hist=np.array([50, 50]), total=50.0, total_sq=50.0)
...     store.fold(0, (key,), w, usable=True)
>>> b = store.baseline(0, (key,), usable=True, min_windows=3)
>>> b.windows, b.hist.tolist(), round(b.center, 2)
(4, [50.0, 50.0], 0.5)
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import numpy.typing as npt

from . import residual
from .baseline import F32, POINT, RECENT, SAME_SLOT, Baseline, Batch, Window, dispersion_ratios, ew
from .calendar import SlotKey


def _grow(a: npt.NDArray[Any], axis: int, size: int) -> npt.NDArray[Any]:
    """``a`` with axis ``axis`` zero-padded to ``size`` (fresh zeros: pages the OS maps only when written)."""
    if a.shape[axis] >= size:
        return a
    shape = list(a.shape)
    shape[axis] = size
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


class SeriesStore:
    """All series of one model: slot statistics, held-aside windows and score history, by series row."""

    # Per-(row, key) scalars: usable windows, all windows, dispersion mean, dispersion count,
    # mean of means, variance of means, sampling, within, log center, log spread, mean 1/count,
    # windows with features, mean share of invalid predictions.
    N_PRED, N_ALL, DISP, DISP_N, CENTER, SPREAD, SAMPLING, WITHIN, LOG_C, LOG_S, INV, N_FEAT, INVALID = range(13)
    SCALARS = 13

    def __init__(self, k: int, slots: int = 8, gen: str | None = None):
        """``k``: windows a slot remembers; ``slots``: room for slot keys to start with (each
        growth copies the store, so a weekly calendar's ~230 keys are best given at once)."""
        self.k = k
        self.slots = slots
        # Names this store's column records in the state topic: a new store (a new engine, or a
        # model removed and added back) never takes an older store's columns for its own.
        self.gen = gen or uuid.uuid4().hex[:12]
        self.keys: dict[SlotKey, int] = {}  # slot key -> column
        self.point_keys: dict[SlotKey, int] = {}  # preferred slot key -> column of the same-slot history
        self.rows: dict[int, int] = {}  # series id -> row
        self._by_sid = np.full(0, -1, np.int64)  # the same as an array (-1: no row), for whole batches
        self.free: list[int] = []
        self.features: list[str] = []
        self.fsize: list[int] = []  # bins of each feature (0: not seen yet)
        self.bins = 0
        self.scal = np.zeros((0, 0, self.SCALARS), F32)
        self.hist = np.zeros((0, 0, 0), F32)
        self.fhist = np.zeros((0, 0, 0, 0), F32)
        self.fdisp = np.zeros((0, 0, 0, 2), F32)
        self.recent = np.zeros((0, RECENT), POINT)
        self.recent_n = np.zeros(0, np.int64)
        self.same = np.zeros((0, 0, SAME_SLOT), POINT)
        self.ph = np.zeros((0, residual.WIDTH))  # Page-Hinkley state of the prediction's residuals (stream.residual)
        self.held: dict[int, list[tuple[tuple[SlotKey, ...], Window, bool]]] = {}
        # What changed since the last snapshot (stream.state writes only those slot columns).
        self.dirty_cols: set[int] = set()
        self.dirty_points: set[int] = set()
        self.all_dirty = False

    # ----------------------------------------------------------------- rows and columns
    def row(self, sid: int) -> int:
        r = self.rows.get(sid)
        if r is not None:
            return r
        if self.free:
            r = self.free.pop()
        else:
            r = len(self.rows)
            if r >= len(self.scal):
                self._resize(rows=max(16, len(self.scal) * 3 // 2))
        self.rows[sid] = r
        self._index_room(sid)
        self._by_sid[sid] = r
        return r

    def drop(self, sid: int) -> int | None:
        """Forget a series (its row is zeroed and reused); the row it had."""
        r = self.rows.pop(sid, None)
        if r is None:
            return None
        self._by_sid[sid] = -1
        for a in (self.scal, self.hist, self.fhist, self.fdisp, self.recent, self.same):
            a[r] = 0
        self.recent_n[r] = 0
        self.ph[r] = residual.START
        self.all_dirty = True  # the row is zero in every column now
        self.held.pop(sid, None)
        self.free.append(r)
        return r

    def rebase(self, sid: int) -> None:
        """An operator accepted this series' drift as the new normal: its slots forget the old normal
        and learn the windows held aside since the drift started (the score history stays, for the
        charts). Until its slots have ``min_baseline_windows`` again, its window tests wait."""
        r = self.rows.get(sid)
        if r is None:
            return
        for a in (self.scal, self.hist, self.fhist, self.fdisp):
            a[r] = 0
        self.ph[r] = residual.START
        self.all_dirty = True
        self.release(sid, np.iinfo(np.int64).max)

    def _col(self, key: SlotKey) -> int:
        c = self.keys.get(key)
        if c is None:
            c = self.keys[key] = len(self.keys)
            if c >= self.scal.shape[1]:
                self._resize(cols=max(self.slots, self.scal.shape[1] * 5 // 4))
        return c

    def _pcol(self, key: SlotKey) -> int:
        c = self.point_keys.get(key)
        if c is None:
            c = self.point_keys[key] = len(self.point_keys)
            if c >= self.same.shape[1]:
                self.same = _grow(self.same, 1, max(self.slots, 2 * self.same.shape[1]))
        return c

    def _resize(self, rows: int | None = None, cols: int | None = None) -> None:
        for axis, size in ((0, rows), (1, cols)):
            if size is None:
                continue
            self.scal = _grow(self.scal, axis, size)
            self.hist = _grow(self.hist, axis, size)
            self.fhist = _grow(self.fhist, axis, size)
            self.fdisp = _grow(self.fdisp, axis, size)
            if axis == 0:
                old = len(self.ph)
                self.ph = _grow(self.ph, 0, size)
                self.ph[old:] = residual.START
                self.recent = _grow(self.recent, 0, size)
                self.recent_n = _grow(self.recent_n, 0, size)
                self.same = _grow(self.same, 0, size)

    # ----------------------------------------------------------------- learning
    def hold(self, sid: int, keys: tuple[SlotKey, ...], w: Window, usable: bool) -> None:
        """Keep a flagged window aside; ``release`` folds it in once it is old enough."""
        self.held.setdefault(sid, []).append((keys, w, usable))

    def release(self, sid: int, upto: int) -> None:
        """Fold in the held windows that started at or before ``upto``."""
        held = self.held.get(sid)
        if not held:
            return
        keep = []
        for keys, w, usable in held:
            if w.start <= upto:
                self.fold(sid, keys, w, usable)
            else:
                keep.append((keys, w, usable))
        if keep:
            self.held[sid] = keep
        else:
            del self.held[sid]

    def fold(self, sid: int, keys: tuple[SlotKey, ...], w: Window, usable: bool) -> None:
        """Learn one closed window (a held one, or a doctest's) into each of the given slot keys."""
        feats = w.features or {}
        self.ensure(len(w.hist) if w.hist is not None else 0, {name: len(h) for name, h in feats.items()})
        nf = len(self.features)
        hist = np.zeros((1, self.hist.shape[2]))
        if w.hist is not None:
            hist[0, : len(w.hist)] = w.hist
        feat = np.zeros((1, nf, self.fhist.shape[3])) if nf else None
        ok = np.zeros((1, nf), bool) if nf else None
        for name, h in feats.items():
            j = self.features.index(name)
            if len(h) <= 1 or feat is None or ok is None:
                continue  # the feature's bins are not learned yet
            if self.fsize[j] == 0:
                self.fsize[j] = len(h)
            if len(h) == self.fsize[j]:
                feat[0, j, : len(h)] = h
                ok[0, j] = True
        b = Batch(np.array([float(w.count)]), hist, np.array([w.total]), np.array([w.total_sq]),
                  np.array([usable and w.hist is not None and w.count > 0]), feat, ok, np.array([float(w.invalid)]))
        self.fold_many(np.array([self.row(sid)]), keys, b)

    def fold_many(self, rows: npt.NDArray[np.int64], keys: tuple[SlotKey, ...], b: Batch) -> None:
        """Learn one closed window per row into each of the given slot keys (all at once)."""
        k = float(self.k)
        log_count = np.log1p(b.events)
        inv = 1.0 / np.maximum(b.count, 1.0)
        u = b.usable
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.where(u, b.total / b.count, 0.0)
            within = np.where(u, np.maximum(b.total_sq / b.count - mu * mu, 0.0), 0.0)
        for key in keys:
            c = self._col(key)
            self.dirty_cols.add(c)
            s = self.scal[rows, c].astype(np.float64)
            wt = 1.0 / np.minimum(s[:, self.N_ALL] + 1.0, k)
            lc, ls = s[:, self.LOG_C].copy(), s[:, self.LOG_S].copy()
            ew(lc, ls, log_count, wt)
            s[:, self.LOG_C], s[:, self.LOG_S] = lc, ls
            s[:, self.INV] += wt * (inv - s[:, self.INV])
            if b.invalid is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = np.where(b.invalid > 0, b.invalid / (b.count + b.invalid), 0.0)
                s[:, self.INVALID] += wt * (share - s[:, self.INVALID])
            s[:, self.N_ALL] += 1
            if u.any():
                ru, su = rows[u], s[u]
                n_pred = su[:, self.N_PRED]
                mean_hist = self.hist[ru, c].astype(np.float64)
                ratio = dispersion_ratios(b.hist[u], mean_hist, np.minimum(n_pred, k))
                has = (n_pred >= 1) & ~np.isnan(ratio)
                n_d = su[:, self.DISP_N]
                su[:, self.DISP] = np.where(has, su[:, self.DISP] + (np.nan_to_num(ratio) - su[:, self.DISP]) / np.minimum(n_d + 1.0, k), su[:, self.DISP])
                su[:, self.DISP_N] = n_d + has
                wt = 1.0 / np.minimum(n_pred + 1.0, k)
                self.hist[ru, c] = mean_hist + wt[:, None] * (b.hist[u] - mean_hist)
                center, spread = su[:, self.CENTER].copy(), su[:, self.SPREAD].copy()
                ew(center, spread, mu[u], wt)
                su[:, self.CENTER], su[:, self.SPREAD] = center, spread
                su[:, self.SAMPLING] += wt * (within[u] / b.count[u] - su[:, self.SAMPLING])
                su[:, self.WITHIN] += wt * (within[u] - su[:, self.WITHIN])
                su[:, self.N_PRED] = n_pred + 1
                if b.feat is not None and b.feat_ok is not None:
                    su[:, self.N_FEAT] += self._fold_features(ru, c, su[:, self.N_FEAT], b.feat[u], b.feat_ok[u])
                s[u] = su
            self.scal[rows, c] = s

    def _fold_features(self, rows: npt.NDArray[np.int64], c: int, n_feat: npt.NDArray[np.float64],
                       feat: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Fold the feature histograms; which rows had any (their window count goes up by one)."""
        some: npt.NDArray[np.bool_] = np.asarray(ok.any(axis=1))
        if not some.any():
            return some
        rows, feat, ok = rows[some], feat[some], ok[some]
        k = float(self.k)
        n_f = n_feat[some]
        means = self.fhist[rows, c].astype(np.float64)  # (n, F, bins)
        disp = self.fdisp[rows, c].astype(np.float64)  # (n, F, 2)
        ratios = dispersion_ratios(feat, means, np.broadcast_to(np.minimum(n_f, k)[:, None], ok.shape))
        has = ok & (n_f >= 1)[:, None] & ~np.isnan(ratios)
        step = (np.nan_to_num(ratios) - disp[..., 0]) / np.minimum(disp[..., 1] + 1.0, k)
        disp[..., 0] += np.where(has, step, 0.0)
        disp[..., 1] += has
        self.fdisp[rows, c] = disp
        wt = (1.0 / np.minimum(n_f + 1.0, k))[:, None, None]
        self.fhist[rows, c] = np.where(ok[..., None], means + wt * (feat - means), means)
        return some

    def ensure(self, bins: int, features: dict[str, int]) -> None:
        """Room for histograms of ``bins`` bins and these features (name -> bins)."""
        if bins > self.hist.shape[2]:
            self.hist = _grow(self.hist, 2, bins)
            self.all_dirty = True
        self.bins = max(self.bins, bins)
        for name in features:
            if name not in self.features:
                self.features.append(name)
                self.fsize.append(0)
        if len(self.features) > self.fhist.shape[2]:
            self.fhist = _grow(self.fhist, 2, len(self.features))
            self.fdisp = _grow(self.fdisp, 2, len(self.features))
            self.all_dirty = True
        fb = max(features.values(), default=0)
        if fb > self.fhist.shape[3]:
            self.fhist = _grow(self.fhist, 3, fb)
            self.all_dirty = True

    def _index_room(self, sid: int) -> None:
        """Room in the sid -> row index for series id ``sid`` (doubling, -1 for no row)."""
        if sid >= len(self._by_sid):
            grow = max(sid + 1, 2 * len(self._by_sid)) - len(self._by_sid)
            self._by_sid = np.concatenate([self._by_sid, np.full(grow, -1, np.int64)])

    def rows_for(self, sids: list[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The rows of these series, handing out rows to those without one (in the order given)."""
        ids = np.asarray(sids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros(0, np.int64)
        self._index_room(int(ids.max()))
        out = self._by_sid[ids]
        for i in np.flatnonzero(out < 0).tolist():
            out[i] = self.row(int(ids[i]))
        return out

    def pick(
        self, rows: npt.NDArray[np.int64], chain: tuple[SlotKey, ...], usable: bool, min_windows: int,
        min_named_holiday: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per row, the column of the first key in the chain with enough windows (usable ones, or
        all) and that key's place in the chain; -1 where none has.

        Enough is ``min_windows``, or ``min_named_holiday`` for one named holiday (a holiday comes
        once a year: two past Christmases are worth more than eight Sundays).
        """
        col = np.full(len(rows), -1, dtype=np.int64)
        pos = np.full(len(rows), -1, dtype=np.int64)
        which = self.N_PRED if usable else self.N_ALL
        for i, key in enumerate(chain):
            c = self.keys.get(key)
            if c is None:
                continue
            need = min_named_holiday if (min_named_holiday and key[0] in ("holiday", "bridge") and len(key) == 3) else min_windows
            take = (col < 0) & (self.scal[rows, c, which] >= need)
            col[take], pos[take] = c, i
        return col, pos

    def key_of(self, col: int) -> SlotKey:
        for key, c in self.keys.items():
            if c == col:
                return key
        raise KeyError(col)

    def baseline_at(self, sid: int, col: int, preferred: bool, usable: bool) -> Baseline:
        """The statistics of one series at one slot column (copies: later folds do not move them)."""
        r = self.rows[sid]
        s = self.scal[r, col]
        feats = None
        if usable and s[self.N_FEAT] >= 2:
            nf = min(int(s[self.N_FEAT]), self.k)
            feats = {name: (self.fhist[r, col, j, : self.fsize[j]].copy(), float(self.fdisp[r, col, j, 0]),
                            min(int(self.fdisp[r, col, j, 1]), self.k), nf)
                     for j, name in enumerate(self.features) if self.fsize[j]}
        n = int(s[self.N_PRED if usable else self.N_ALL])
        return Baseline(
            self.key_of(col), min(n, self.k), preferred, self.hist[r, col, : self.bins].copy(),
            float(s[self.DISP]), min(int(s[self.DISP_N]), self.k),
            float(s[self.CENTER]), float(s[self.SPREAD]), float(s[self.SAMPLING]), float(s[self.WITHIN]),
            float(s[self.LOG_C]), float(s[self.LOG_S]), float(s[self.INV]), feats,
        )

    # ----------------------------------------------------------------- baselines
    def baseline(
        self,
        sid: int,
        chain: tuple[SlotKey, ...],
        usable: bool,
        min_windows: int,
        min_named_holiday: int | None = None,
    ) -> Baseline | None:
        """The statistics of the first key in the chain with enough windows (see ``pick``)."""
        r = self.rows.get(sid)
        if r is None:
            return None
        col, pos = self.pick(np.array([r]), chain, usable, min_windows, min_named_holiday)
        if col[0] < 0:
            return None
        return self.baseline_at(sid, int(col[0]), pos[0] == 0, usable)

    # ----------------------------------------------------------------- score history
    def note_many(self, rows: npt.NDArray[np.int64], key: SlotKey, start: int, count: npt.NDArray[np.float64],
                  score: npt.NDArray[np.float64], threshold: npt.NDArray[np.float64]) -> None:
        """Remember closed windows' scores ((rows, 3): prediction, volume, feature; NaN for none) in
        the series' recent windows and their same-slot history."""
        p = np.zeros(len(rows), POINT)
        p["start"], p["count"], p["score"], p["threshold"] = start, count, score, threshold
        # Points are moved as three plain 8-byte words each: numpy copies structured records field
        # by field, about eight times slower.
        p8 = p.view(np.uint64).reshape(len(rows), 3)
        n = self.recent_n[rows]
        self.recent.view(np.uint64).reshape(len(self.recent), RECENT, 3)[rows, n % RECENT] = p8
        self.recent_n[rows] = n + 1
        c = self._pcol(key)  # may grow self.same: index after
        self.dirty_points.add(c)
        same8 = self.same.view(np.uint64).reshape(*self.same.shape, 3)
        block = same8[rows, c]
        block[:, :-1] = block[:, 1:]
        block[:, -1] = p8
        same8[rows, c] = block

    def history(self, sid: int, key: SlotKey) -> tuple[list[Any], list[Any]]:
        """(recent, same slot) points, oldest first, as (start, count, scores, thresholds) rows."""
        r = self.rows.get(sid)
        if r is None:
            return [], []
        n = int(self.recent_n[r])
        order = [(n + i) % RECENT for i in range(RECENT)] if n >= RECENT else list(range(n))
        recent = [self.recent[r, i] for i in order]
        c = self.point_keys.get(key)
        same = [] if c is None else [p for p in self.same[r, c] if p["start"] != 0]
        return recent, same

    # ----------------------------------------------------------------- snapshot
    def nbytes(self) -> int:
        """Bytes of the live series' rows over the slot keys in use (what a snapshot carries)."""
        nk, npk = len(self.keys), len(self.point_keys)
        per_row = sum(a[:1, :nk].nbytes for a in (self.scal, self.hist, self.fhist, self.fdisp))
        per_row += self.same[:1, :npk].nbytes + self.recent[:1].nbytes + self.ph[:1].nbytes + 8
        return per_row * len(self.rows)

    @property
    def n_rows(self) -> int:
        """Rows handed out so far (live and free)."""
        return len(self.rows) + len(self.free)

    def changes(self, everything: bool = False) -> tuple[list[int], list[int]]:
        """Slot columns and point columns changed since ``clean`` (all of them with ``everything``)."""
        if everything or self.all_dirty:
            return list(range(len(self.keys))), list(range(len(self.point_keys)))
        return sorted(self.dirty_cols), sorted(self.dirty_points)

    def clean(self) -> None:
        self.dirty_cols, self.dirty_points, self.all_dirty = set(), set(), False
