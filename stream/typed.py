"""Typed decoding: each model's events decoded straight into its own shape, or into columns.

``Schema`` is one model's event as a msgspec struct (its segment keys and monitored features as
fields), and ``TypedDecoder`` holds one decoder for the union of every model's schema, plus the
compiled batch reader (``compiled.py``) for the models it can read, which turns a whole batch into
``Columns`` with no Python object per event. ``decode.decode_batch`` is the path for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import msgspec
import numpy as np
import numpy.typing as npt

from .compiled import _native
from .decode import _VALUE, Event, Record, _Finite, _Id, _Prediction, _Segment, _Text, _Ts, _Value
from .lines import LineBlock

# A monitored feature's declared type follows what its sketch learned it to be: a value of the other
# kind fails the typed decode, and the generic path then counts it as wrong-typed (the null bin).
_FEATURE_TYPE: dict[str | None, Any] = {"numeric": _Finite | None, "categorical": _Text | bool | None,
                                        None: _Finite | _Text | bool | None}


class Schema:
    """The typed shape of one model's events: its segment keys and monitored features as struct fields.

    Decoding straight into it validates exactly what ``Event`` does, but the segment becomes a frozen
    (hashable) struct that routes by itself and the features become attributes, with no dict built
    per event. Keys outside ``segment_by`` and ``features`` are refused, so that such events take the
    generic path and are validated in full, as the contract says.

    >>> s = Schema("fraud", ["country"], ["amount"], ["numeric"])
    >>> e = msgspec.json.decode(b'{"model":"fraud","event_id":"a","ts":1795716000000,"prediction":0.5,'
    ...                         b'"segment":{"country":"NL"},"features":{"amount":2}}', type=s.event)
    >>> e.segment == s.segment("NL"), e.features.f0
    (True, 2.0)
    """

    def __init__(self, model: str, segment_by: Sequence[str] | None, features: Sequence[str],
                 kinds: Sequence[str | None]):
        self.model = model
        self.segment: Any
        self.feature_struct: Any
        self.segment_by = tuple(segment_by) if segment_by is not None else None
        self.features = tuple(features)
        self.kinds = tuple(kinds)
        #: every feature is numeric: the features of a batch convert to one float matrix as they are
        self.all_numeric = bool(self.features) and all(k == "numeric" for k in self.kinds)
        fields: list[tuple[Any, ...]] = [("event_id", _Id), ("ts", _Ts)]
        if self.segment_by is not None:
            self.segment = msgspec.defstruct(
                "Segment", [(f"s{i}", _Text, "(none)") for i in range(len(self.segment_by))],
                rename={f"s{i}": k for i, k in enumerate(self.segment_by)},
                frozen=True, gc=False, forbid_unknown_fields=True)
            fields.append(("segment", self.segment, msgspec.field(default_factory=self.segment)))
        else:
            self.segment = None
            fields.append(("segment", _Segment, msgspec.field(default_factory=dict)))
        fields.append(("prediction", _Prediction))
        if self.features:
            self.feature_struct = msgspec.defstruct(
                "Features", [(f"f{j}", _FEATURE_TYPE[k], None) for j, k in enumerate(self.kinds)],
                rename={f"f{j}": n for j, n in enumerate(self.features)},
                frozen=True, gc=False, forbid_unknown_fields=True)
            fields.append(("features", self.feature_struct, msgspec.field(default_factory=self.feature_struct)))
        else:
            self.feature_struct = None
            fields.append(("features", dict[str, _Value], msgspec.field(default_factory=dict)))
        fields += [("model_version", _Text | None, None), ("label", _Value, None)]
        self.event = msgspec.defstruct("TypedEvent", fields, tag_field="model", tag=model, frozen=True, gc=False,
                                       kw_only=True)

    def convert(self, e: Event) -> Any:
        """A generically decoded event of this model in the typed shape (wrong-typed features as None)."""
        seg: Any = e.segment
        if self.segment is not None:
            seg = self.segment(*(e.segment.get(k, "(none)") for k in self.segment_by or ()))
        feats: Any = e.features
        if self.feature_struct is not None:
            vals = []
            for name, kind in zip(self.features, self.kinds, strict=True):
                v = e.features.get(name)
                t = type(v)
                if (kind == "numeric" and t not in (int, float)) or (kind == "categorical" and t not in (str, bool)):
                    v = None
                vals.append(v)
            feats = self.feature_struct(*vals)
        return self.event(event_id=e.event_id, ts=e.ts, segment=seg, prediction=e.prediction, features=feats,
                          model_version=e.model_version, label=e.label)


def native_status(enabled: bool = True) -> str:
    """Which batch decoder a process runs, in words, for its start-up log."""
    if _native is None:
        return "python (stream._native is not built: install with a Rust toolchain for the compiled one)"
    return "native (compiled)" if enabled else "python (defaults.native_decoder = false)"


class TypedDecoder:
    """One msgspec decoder for the tagged union of every model's ``Schema`` (tag: the ``model`` field),
    and the native batch decoder for the models it can read (see ``columns``)."""

    def __init__(self, native: bool = True) -> None:
        self.schemas: dict[str, Schema] = {}
        self.model_of: dict[type, str] = {}
        self._decode: Any = None
        self.native: dict[str, Any] = {}  # model -> its _native.Model (segment table included)
        self._native_kinds: dict[str, tuple[str | None, ...]] = {}  # the feature kinds it was made for
        self._use_native = native and _native is not None

    def set(self, schema: Schema) -> None:
        old = self.schemas.get(schema.model)
        if old is not None:
            self.model_of.pop(old.event, None)
        self.schemas[schema.model] = schema
        self.model_of[schema.event] = schema.model
        self._decode = None
        # The native decoder reads features whose kind is learned (numbers, or text and bools).
        readable = all(k in ("numeric", "categorical") for k in schema.kinds)
        if not (self._use_native and readable):
            self.native.pop(schema.model, None)
        elif self._native_kinds.get(schema.model) != schema.kinds or schema.model not in self.native:
            assert _native is not None
            by = list(schema.segment_by) if schema.segment_by is not None else None
            text = [k == "categorical" for k in schema.kinds]
            self.native[schema.model] = _native.Model(schema.model, by, list(schema.features), text)
            self._native_kinds[schema.model] = schema.kinds

    def decoder(self) -> Any:
        if self._decode is None and self.schemas:
            # Always a union: msgspec checks the tag of a lone tagged struct only when present, so a
            # single model's decoder would accept events without a "model" field.
            types = (*(s.event for s in self.schemas.values()), _NoModel)
            self._decode = msgspec.json.Decoder(Union[types]).decode  # noqa: UP007
        return self._decode

    def columns(self, records: Sequence[Record], max_bytes: int) -> list[Columns] | None:
        """The batch straight into columns, one ``Columns`` per model, when every record is a plain,
        well-formed event of a model the native decoder reads (the common case, and the fast one:
        no Python object per event but its id); else None, and the batch takes ``decode_batch``.

        >>> t = TypedDecoder()
        >>> t.set(Schema("fraud", ["country"], ["amount"], ["numeric"]))
        >>> [c] = t.columns([Record(b'{"model":"fraud","event_id":"a","ts":1795716000000,"prediction":0.5,'
        ...                         b'"segment":{"country":"NL"},"features":{"amount":2}}')], 1000)
        >>> c.model, c.ids, c.ts.tolist(), c.features.tolist(), t.native["fraud"].segment(int(c.segment[0]))
        ('fraud', ['a'], [1795716000000], [[2.0]], [('country', 'NL')])
        >>> t.columns([Record(b'{"model":"fraud","ts":1795716000000}')], 1000) is None  # not one it vouches for
        True
        """
        if not self.native or not records:
            return None
        assert _native is not None  # models are registered only when it is there
        models = list(self.native.values())
        if isinstance(records, LineBlock):
            got = _native.decode_lines(records.block, models, max_bytes)
        else:
            values = getattr(records, "values", None)
            if values is None:
                values = list(map(_VALUE, records))
            got = _native.decode(values, models, max_bytes)
        if got is None:
            return None
        out = []
        for model, where, ts, pred, feats, seg, ids, versions, labels in got:
            n = len(ids)
            preds: Any = np.frombuffer(pred, np.int64 if labels else np.float64)
            out.append(Columns(model, np.frombuffer(where, np.int64), np.frombuffer(ts, np.int64), preds, labels,
                               np.frombuffer(feats, np.float64).reshape(n, len(self.schemas[model].features)),
                               np.frombuffer(seg, np.int64), ids, versions))
        return out


@dataclass(slots=True)
class Columns:
    """One model's events of a batch as columns (the compiled decoder's arrays are read-only), the
    shape in which both decoders hand events to the router."""

    model: str
    where: npt.NDArray[np.int64]  # each event's position in the batch
    ts: npt.NDArray[np.int64]
    # the predictions: numbers, or (labels) text predictions: the compiled decoder gives their
    # numbers in the model's native table (a probability map counts as its top class), the Python
    # one the texts
    prediction: npt.NDArray[np.float64] | npt.NDArray[np.int64] | list[str]
    labels: bool
    # compiled: one row per event, one column per monitored feature (NaN: null), a text feature's
    # column holding the numbers of its values in the model's native table (``feature_labels()``);
    # Python: each event's feature struct (or dict)
    features: npt.NDArray[np.float64] | list[Any]
    segment: npt.NDArray[np.int64]  # numbers in the model's native segment table, or of this batch's segments
    ids: list[str]
    versions: list[str | None] | None  # None: no event sent a model_version


class _NoModel(msgspec.Struct, tag_field="model", tag="\x00driftline: no such model"):
    """A union member no event matches (its tag is not a usable model name)."""


