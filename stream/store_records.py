"""A series store as state records and back: the meta record, slot columns and score-history columns.

Arrays travel as dtype, shape and little-endian bytes (appended to a binary snapshot's parts, or
inline as base64 in a JSON one); a record names one of a fixed set of array types or is refused.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import residual
from .baseline import F32, POINT, SAME_SLOT, Window
from .store import SeriesStore


def array_out(a: npt.NDArray[Any], parts: list[bytes] | None) -> dict[str, Any]:
    """An array as dtype, shape and its little-endian bytes: appended to ``parts`` (a binary
    snapshot) or inline as base64 (a JSON one)."""
    d: dict[str, Any] = {"dtype": a.dtype.str if a.dtype.names is None else "point", "shape": list(a.shape)}
    raw = np.ascontiguousarray(a).tobytes()
    if parts is None:
        d["data"] = base64.b64encode(raw).decode("ascii")
    else:
        d["part"] = len(parts)
        parts.append(raw)
    return d


# The array types ``array_out`` writes (little-endian numbers and booleans): a record names one of
# these or is refused. numpy parses any other text as a type description, and some of it raises
# what no caller expects (a SyntaxError from "\u0669\u0669,,", found by the state fuzz target).
_TYPES = frozenset(np.dtype(t).str for t in ("<f8", "<f4", "<i8", "<i4", "<i2", "i1", "<u8", "<u4", "<u2", "u1", "?"))


def array_in(d: dict[str, Any], parts: list[memoryview] | None) -> npt.NDArray[Any]:
    name = d["dtype"]
    if name != "point" and name not in _TYPES:
        raise ValueError(f"unsupported array type {name!r}")
    dtype = POINT if name == "point" else np.dtype(name)
    raw = base64.b64decode(d["data"]) if "data" in d else (parts or [])[int(d["part"])]
    shape = tuple(int(x) for x in d["shape"])
    if len(raw) != dtype.itemsize * math.prod(shape):
        raise ValueError(f"array of shape {shape} has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def meta(st: SeriesStore, parts: list[bytes] | None) -> dict[str, Any]:
    """Everything but the per-slot columns: key tables, row map, recent history, detectors, held windows."""
    n = st.n_rows
    return {
        "gen": st.gen, "k": st.k, "bins": st.bins, "features": st.features, "fsize": st.fsize,
        "shape": [st.hist.shape[2], st.fhist.shape[2], st.fhist.shape[3]],
        "keys": [list(k) for k in st.keys], "point_keys": [list(k) for k in st.point_keys],
        "rows": [[sid, r] for sid, r in st.rows.items()], "free": st.free, "n_rows": n,
        "recent": array_out(st.recent[:n], parts), "recent_n": st.recent_n[:n].tolist(),
        "ph": array_out(st.ph[:n], parts),
        "held": [[sid, [[[list(k) for k in keys], _window_out(w), usable] for keys, w, usable in held]]
                 for sid, held in st.held.items()],
    }


def column(st: SeriesStore, c: int, parts: list[bytes] | None) -> dict[str, Any]:
    """One slot key's statistics for every row."""
    n = st.n_rows
    return {"col": c, "scal": array_out(st.scal[:n, c], parts), "hist": array_out(st.hist[:n, c], parts),
            "fhist": array_out(st.fhist[:n, c], parts), "fdisp": array_out(st.fdisp[:n, c], parts)}


def points(st: SeriesStore, c: int, parts: list[bytes] | None) -> dict[str, Any]:
    """One preferred slot key's score history for every row."""
    return {"pcol": c, "same": array_out(st.same[: st.n_rows, c], parts)}


def from_meta(d: dict[str, Any], parts: list[memoryview] | None = None) -> SeriesStore:
    """A store with the meta data in and every column zero, for ``set_column``/``set_points`` to fill."""
    st = SeriesStore(int(d["k"]), gen=str(d["gen"]))
    st.bins = int(d["bins"])
    st.features = list(d["features"])
    st.fsize = [int(x) for x in d["fsize"]]
    st.keys = {tuple(k): i for i, k in enumerate(d["keys"])}
    st.point_keys = {tuple(k): i for i, k in enumerate(d["point_keys"])}
    st.rows = {int(sid): int(r) for sid, r in d["rows"]}
    st._by_sid = np.full(max(st.rows, default=-1) + 1, -1, np.int64)
    for sid, r in st.rows.items():
        st._by_sid[sid] = r
    st.free = [int(r) for r in d["free"]]
    n, (b, nf, fb) = int(d["n_rows"]), (int(x) for x in d["shape"])
    if n != len(st.rows) + len(st.free) or any(not 0 <= r < n for r in st.rows.values()):
        raise ValueError("series store rows do not add up")
    # The feature axes are the features' (a store whose shape names more features than it lists
    # restored, then failed at its first fold: found by the state fuzz target).
    if nf != len(st.features) or len(st.fsize) != nf or min(b, fb) < 0 or any(not 0 <= x <= fb for x in st.fsize):
        raise ValueError("series store feature shapes do not add up")
    nk, npk = len(st.keys), len(st.point_keys)
    st.scal = np.zeros((n, nk, SeriesStore.SCALARS), F32)
    st.hist = np.zeros((n, nk, b), F32)
    st.fhist = np.zeros((n, nk, nf, fb), F32)
    st.fdisp = np.zeros((n, nk, nf, 2), F32)
    st.same = np.zeros((n, npk, SAME_SLOT), POINT)
    st.recent, st.ph = array_in(d["recent"], parts), residual.restored(array_in(d["ph"], parts))
    st.recent_n = np.asarray(d["recent_n"], dtype=np.int64)
    if len(st.recent) != n or len(st.ph) != n or len(st.recent_n) != n:
        raise ValueError("series store arrays disagree on the number of series")
    st.held = {int(sid): [(tuple(tuple(k) for k in keys), _window_in(w), bool(u)) for keys, w, u in held]
               for sid, held in d["held"]}
    return st


def set_column(st: SeriesStore, d: dict[str, Any], parts: list[memoryview] | None = None) -> None:
    c = int(d["col"])
    for name in ("scal", "hist", "fhist", "fdisp"):
        a, target = array_in(d[name], parts), getattr(st, name)
        if name == "scal" and a.ndim == 2 and a.shape[1] < target.shape[2]:  # written before later scalars: zero
            a = np.pad(a, ((0, 0), (0, target.shape[2] - a.shape[1])))
        if not 0 <= c < target.shape[1] or len(a) > len(target) or a.shape[1:] != target.shape[2:]:
            raise ValueError(f"slot column {c} ({name}) does not fit the store")
        target[: len(a), c] = a


def set_points(st: SeriesStore, d: dict[str, Any], parts: list[memoryview] | None = None) -> None:
    c, a = int(d["pcol"]), array_in(d["same"], parts)
    if not 0 <= c < st.same.shape[1] or len(a) > len(st.same) or a.shape[1:] != st.same.shape[2:]:
        raise ValueError(f"score history column {c} does not fit the store")
    st.same[: len(a), c] = a


def _window_out(w: Window) -> list[Any]:
    return [w.start, w.count, None if w.hist is None else w.hist.tolist(), w.total, w.total_sq,
            None if w.features is None else {k: v.tolist() for k, v in w.features.items()}, w.invalid]


def _window_in(x: list[Any]) -> Window:
    start, count, hist, total, total_sq, feats, *rest = x
    return Window(int(start), int(count), None if hist is None else np.asarray(hist, dtype=np.int64),
                  float(total), float(total_sq),
                  None if feats is None else {k: np.asarray(v, dtype=np.int64) for k, v in feats.items()},
                  int(rest[0]) if rest else 0)
