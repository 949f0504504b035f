"""Ingest: one model's routed events into their open windows' sums and sketches.

Late events are dead-lettered here; a challenger's events go to the shadow histograms only; numeric
predictions wait (``pending``) until the model's bin edges are learned, and in a task of several a
model's events wait for the parameters every partition shares (the prediction's edges, each
feature's kind and edges: ``Params``), then every window's sums are a few bincounts, with no
per-event Python.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from ..decode import DeadLetter
from ..shadow import ShadowTracker
from ..sketch import CategoricalSpec, NumericSpec
from ..verdict import Params, Proposal
from .route import Routed
from .tables import ModelState, Output, SeriesCore, take


class IngestStep(SeriesCore):
    """Routed events into windows and sketches."""

    @staticmethod
    def _count_versions(m: ModelState, ws: npt.NDArray[np.int64], versions: list[str | None]) -> set[str | None]:
        """Events per model_version in each open window: which versions serve, and their shares, go
        with the window's report to the model stage (a drift that starts as a release takes traffic
        is that release's). Returns the batch's versions."""
        distinct = set(versions)
        if ws.min() == ws.max() and len(distinct) == 1:  # the usual batch: one version, one window
            if versions[0] is not None:
                per = m.versions.setdefault(int(ws[0]), {})
                per[versions[0]] = per.get(versions[0], 0) + len(versions)
            return distinct
        for (w, version), n in Counter(zip(ws.tolist(), versions, strict=True)).items():
            if version is not None:
                per = m.versions.setdefault(w, {})
                per[version] = per.get(version, 0) + n
        return distinct

    def _ingest(self, m: ModelState, cols: Routed, out: Output) -> dict[int, int]:
        """Window, late-check and sketch one model's events of this batch; return max ts per partition."""
        sids = np.asarray(cols.sids, dtype=np.int64)
        ts = np.asarray(cols.ts, dtype=np.int64)
        ws = m.grid.starts(ts)
        late = cols.late
        if late.any():
            for i in np.flatnonzero(late):
                self._dead(out, DeadLetter(self._batch[int(cols.where[i])], "late", "event time is behind the watermark: its window has closed"))
            self.metrics.late.labels(m.cfg.name).inc(int(late.sum()))
            keep = ~late
            sids, ts, ws, where = sids[keep], ts[keep], ws[keep], cols.where[keep]
            values, feats = take(cols.values, keep), take(cols.features, keep)
            versions = None if cols.versions is None else take(cols.versions, keep)
        else:
            values, where, feats, versions = cols.values, cols.where, cols.features, cols.versions
        if len(ts) == 0:
            return {}
        n = len(ts)
        last = int(ts.max())
        m.last_ts = last if m.last_ts is None else max(m.last_ts, last)
        self.stats.processed += n
        self.metrics.processed.labels(m.cfg.name).inc(n)
        part_max = self._partition_max(where, ts)
        spec = m.spec
        assert spec is not None
        if m.shadow is not None and versions is not None:
            v = np.array(versions, dtype=object)
            challenger = (v != None) & (v != m.shadow.champion)  # noqa: E711 - elementwise, not identity
            if challenger.any():
                # A challenger's predictions are not the traffic the model serves: counted for the
                # shadow comparison only, never in the model's own series or its learned bins.
                self._shadow_add(m, sids[challenger], ws[challenger], take(values, challenger),
                                 v[challenger].tolist())
                keep = ~challenger
                sids, ts, ws, where = sids[keep], ts[keep], ws[keep], where[keep]
                values, feats = take(values, keep), take(feats, keep)
                versions = v[keep].tolist()
                if len(ts) == 0:
                    return part_max
        if versions is not None:
            distinct = self._count_versions(m, ws, versions)
            if m.canary is not None and m.incumbent is not None and distinct - {m.incumbent, None}:
                v = np.array(versions, dtype=object)
                other = (v != None) & (v != m.incumbent)  # noqa: E711 - elementwise, not identity
                if other.any() and (not isinstance(spec, NumericSpec) or spec.frozen):
                    # served traffic: counted in the series as well, and apart for the canary comparison
                    self._shadow_add(m, sids[other], ws[other], take(values, other), v[other].tolist(), m.canary)
        if self.shared_edges and m.params is None and (isinstance(spec, NumericSpec) or m.features is not None):
            self._wait(m, sids, ts, ws, values, feats, where, out)
            return part_max
        fbins = m.features.bins_of(self._feature_columns(m, feats)) if m.features is not None else None
        if isinstance(spec, CategoricalSpec):
            self._accumulate(m, sids, ws, spec.codes(values), None, fbins, ts, where)
        else:
            arr = np.asarray(values, dtype=np.float64)
            if spec.frozen:
                self._accumulate(m, sids, ws, spec.bin(arr), spec.clip(arr), fbins, ts, where)
            else:
                m.pending.append((sids, ts, arr, None, self._reach_of(where, ts)))
                spec.observe(arr[:self._cut(m, ws, ts)])
                if not spec.frozen and (ts >= self._learn_until(m, ws)).any():
                    spec.learn()
                if spec.frozen:
                    self._flush_pending(m)
        return part_max

    def _learn_until(self, m: ModelState, ws: npt.NDArray[np.int64]) -> int:
        """The event time that ends the learning of the model's bin edges: the end of its first
        window plus the allowed lateness (when an event could first close that window)."""
        if m.learn_until is None:
            m.learn_until = m.grid.end(int(ws[0])) + self.d.allowed_lateness
        return m.learn_until

    def _cut(self, m: ModelState, ws: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> int:
        """How many of these events (in stream order) come before ``learn_until``: the edges come
        from them (or from the first ``learn_from``), the same whatever the batches."""
        after = ts >= self._learn_until(m, ws)
        return int(np.argmax(after)) if after.any() else len(ts)

    def _wait(self, m: ModelState, sids: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], ws: npt.NDArray[np.int64],
              values: npt.NDArray[np.float64] | list[Any], feats: list[Any] | npt.NDArray[np.float64],
              where: npt.NDArray[np.int64], out: Output) -> None:
        """A model of a task of several, before its shared parameters: its events wait (sampled),
        and once an event reaches ``learn_until`` the sample is proposed to the model stage."""
        spec = m.spec
        cut = self._cut(m, ws, ts)
        if isinstance(spec, NumericSpec):
            pred = np.asarray(values, dtype=np.float64)
            spec.observe(pred[:cut], freeze=False)
        else:
            assert spec is not None
            pred = spec.codes(list(values)).astype(np.float64)
        kept = m.features.wait(self._feature_columns(m, feats), cut) if m.features is not None else None
        m.pending.append((sids, ts, pred, kept, self._reach_of(where, ts)))
        if cut < len(ts):
            self._propose(m, out)

    def _propose(self, m: ModelState, out: Output) -> None:
        """The sample for the shared parameters is complete: propose it to the model stage, once,
        and wait for its ``Params``."""
        if m.proposed or m.learn_until is None:
            return
        spec = m.spec
        values = spec.sample.tolist() if isinstance(spec, NumericSpec) else []
        out.proposals.append(Proposal(m.cfg.name, m.learn_until, values,
                                      m.features.proposal() if m.features is not None else {}))
        m.proposed = True

    def apply(self, params: Params, drop_waiting: bool = False) -> bool:
        """The model stage's shared parameters: bin on them and count what waited for them; the
        windows held meanwhile close at the next ``_close_due``. False: known already (or no such
        model). ``drop_waiting``: what waited is dropped instead (counting it made the engine raise,
        and its records were committed long ago: there is no batch left to bisect)."""
        m = self.models.get(params.model)
        if m is None or m.params is not None:
            return False
        m.params = params
        if isinstance(m.spec, NumericSpec) and not m.spec.frozen and params.edges is not None:
            m.spec.freeze_at(params.edges)
        if m.features is not None:
            m.features.adopt(params.features)
        if drop_waiting:
            self.metrics.engine_errors.inc(sum(len(p[0]) for p in m.pending)
                                           + sum(len(s) for s, _w, _v, _x in m.shadow_pending))
            m.pending, m.shadow_pending = [], []
        self._flush_pending(m)
        return True

    def _reach_of(self, where: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The partition's latest event time at each of these events (the fast lane's order)."""
        if self._prefix is None:
            return np.maximum(ts, self._reach)
        return np.maximum(self._prefix[where], ts)

    def _partition_max(self, where: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> dict[int, int]:
        """The latest event time per input partition among these events (for the watermark)."""
        if isinstance(self._parts, int):
            return {self._parts: int(ts.max())}
        parts = self._parts[where]
        return {int(p): int(ts[parts == p].max()) for p in np.unique(parts)}

    def _shadow_add(self, m: ModelState, sids: npt.NDArray[np.int64], ws: npt.NDArray[np.int64],
                    values: npt.NDArray[np.float64] | list[Any], versions: list[str],
                    tracker: ShadowTracker | None = None) -> None:
        """Challenger events into the shadow histograms (or a canary's, into ``tracker``), on the
        model's bins (once they are learned)."""
        spec, shadow = m.spec, tracker or m.shadow
        assert spec is not None and shadow is not None
        if isinstance(spec, NumericSpec):
            if not spec.frozen and self.shared_edges and m.params is None:  # they wait with the champion's
                m.shadow_pending.append((sids, ws, np.asarray(values, dtype=np.float64), versions))
                return
            if not spec.frozen:
                self.metrics.shadow_skipped.labels(m.cfg.name).inc(len(sids))
                return
            bins = spec.bin(np.asarray(values, dtype=np.float64))
        else:
            bins = spec.codes(list(values))
        shadow.add(ws, sids, bins, versions, spec.size)

    def _feature_columns(self, m: ModelState, feats: list[Any] | npt.NDArray[np.float64]) -> list[Any]:
        """The events' monitored features, one column each: a float array when the decoder typed every
        feature as numeric (one conversion for the whole batch), else lists of the values as sent."""
        schema = self.typed.schemas[m.cfg.name]
        if isinstance(feats, np.ndarray):  # the native decoder's matrix: text values by number
            if schema.all_numeric:
                return list(feats.T)
            names = np.array([*self.typed.native[m.cfg.name].feature_labels(), None], dtype=object)
            return [names[np.where(np.isnan(col), len(names) - 1, col).astype(np.int64)].tolist()
                    if kind == "categorical" else col for col, kind in zip(feats.T, schema.kinds, strict=True)]
        if schema.all_numeric:
            x = np.array([msgspec.structs.astuple(f) for f in feats], dtype=np.float64).reshape(len(feats), -1)
            return list(x.T)
        return [list(map(attrgetter(f"f{j}"), feats)) for j in range(len(schema.features))]

    def _flush_pending(self, m: ModelState) -> None:
        """What waited for the bin edges (or the shared parameters) into its windows."""
        spec = m.spec
        if isinstance(spec, NumericSpec) and not spec.frozen:
            spec.learn()
        waiting, m.pending = m.pending, []
        for sids, ts, pred, kept, reach in waiting:
            ws = m.grid.starts(ts)
            fbins = m.features.bins_of(m.features.release(kept)) if kept is not None and m.features is not None else None
            if isinstance(spec, NumericSpec):
                self._accumulate(m, sids, ws, spec.bin(pred), spec.clip(pred), fbins, ts, reach=reach)
            else:
                self._accumulate(m, sids, ws, pred.astype(np.int64), None, fbins, ts, reach=reach)
        shadow, m.shadow_pending = m.shadow_pending, []
        for sids, ws, arr, versions in shadow:
            self._shadow_add(m, sids, ws, arr, versions)

    def _accumulate(
        self,
        m: ModelState,
        sids: npt.NDArray[np.int64],
        ws: npt.NDArray[np.int64],
        bins: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64] | None,
        feature_bins: dict[str, npt.NDArray[np.int64]] | None = None,
        ts: npt.NDArray[np.int64] | None = None,
        where: npt.NDArray[np.int64] | None = None,
        reach: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """The batch's events into their open windows' sums: a few bincounts per window, no per-event
        Python; first through the fast lane (which reads the counts before them)."""
        assert m.spec is not None
        st = m.store
        names = m.features.names if m.features is not None else []
        st.ensure(m.spec.size, {n: m.features.max_size for n in names} if m.features is not None else {})
        usids, inv = np.unique(sids, return_inverse=True)
        rows = st.rows_for(usids)[inv.reshape(-1)]
        feats = None
        if feature_bins:
            index = {n: j for j, n in enumerate(st.features)}
            feats = (np.array([index[n] for n in feature_bins], dtype=np.int64),
                     np.stack(list(feature_bins.values()), axis=1))
        shape = (len(st.scal), st.hist.shape[2], st.fhist.shape[2], st.fhist.shape[3])
        self._lane(m, rows, ws, bins, ts, self._early, where, reach)
        m.windows.add(ws, rows, bins, values, feats, shape)

