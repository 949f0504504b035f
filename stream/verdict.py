"""What the series stage tells the model stage: one report per closed window of a model.

The seam between the two stages of DESIGN.md's data flow. The series stage (``stream/series/``)
owns a partition's series: their windows, sketches, baselines, per-series tests and each series'
alert lifecycle (a function of that series' own windows only). For every series with a
notification due it attaches the evidence an alert needs, already summarised, so the model stage
(``stream/model/``) never reads a sketch: it groups segments, keeps severities, runs the breaker and
its cap, issues command ids and publishes. Everything here is plain data, so that a report can
travel on an internal topic keyed by model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from .contract import Alert, BaselineInfo, History, Summary
from .detect import Verdict
from .group import Note


@dataclass(slots=True)
class Evidence:
    """One series' verdict on one window, summarised for its alert."""

    verdict: Verdict
    fingerprint: str  # of the series and signal
    segment: dict[str, str]
    segment_key: str
    window_start: int
    context: str  # the calendar slot, readable
    current: Summary
    baseline: Summary
    baseline_info: BaselineInfo
    history: History
    features: list[str] = field(default_factory=list)  # drifting with it (evidence, by name)

    @property
    def ratio(self) -> float:
        return self.verdict.ratio


#: A version with less than this share of a window's traffic does not count as serving it (the
#: model stage's releases, the series stage's incumbent for canary comparisons).
MIN_SHARE = 0.05


@dataclass
class WindowReport:
    """A model's closed window as one series task saw it."""

    model: str
    start: int
    end: int
    notes: list[Note] = field(default_factory=list)  # payload: Evidence
    shadow_alerts: list[Alert] = field(default_factory=list)  # per series, never grouped
    shadow_compared: dict[str, bool] = field(default_factory=dict)  # challenger version -> breached anywhere
    # |correlation| between the features the notes name (row and column order: ``features``), so
    # that the model stage can group correlated features of several notes into one alert
    features: list[str] = field(default_factory=list)
    correlation: list[list[float]] = field(default_factory=list)
    # A fast-lane report: one series' note from inside its open window (``end`` is the event time of
    # the crossing), decided once every partition has read as far as this (the latest event time of
    # its partition at the crossing: ``model.frontier.key_of``), not when every partition passed ``end``.
    early: int | None = None
    versions: dict[str, int] = field(default_factory=dict)  # events per model_version (so far, if early)

    def merge(self, other: WindowReport) -> None:
        """Another partition's report of the same model window into this one."""
        for version, n in other.versions.items():
            self.versions[version] = self.versions.get(version, 0) + n
        self.notes += other.notes
        self.notes.sort(key=note_order)
        self.shadow_alerts = sorted(self.shadow_alerts + other.shadow_alerts, key=lambda a: a.fingerprint)
        for version, breached in other.shadow_compared.items():
            self.shadow_compared[version] = self.shadow_compared.get(version, False) or breached
        if other.features:
            corr = {(a, b): self.correlation[i][j] for i, a in enumerate(self.features) for j, b in enumerate(self.features)}
            corr.update({(a, b): other.correlation[i][j] for i, a in enumerate(other.features)
                         for j, b in enumerate(other.features)})
            self.features = sorted(set(self.features) | set(other.features))
            self.correlation = [[corr.get((a, b), 0.0) for b in self.features] for a in self.features]


_SIGNAL_RANK = {"prediction": 0, "volume": 1, "feature": 2}


def note_order(n: Note) -> tuple[int, str]:
    """Notes of a window in one order whatever partitions they came from: by signal, then segment key
    (the grouping, the alerts and the breaker's first alert follow it)."""
    return _SIGNAL_RANK.get(n.signal, 3), str(n.sid)


# ----------------------------------------------------------------- on the internal topic
def _num(x: float | None) -> float | str | None:
    """JSON has no infinities or NaN: those travel as text."""
    if x is None or math.isfinite(x):
        return x
    return repr(x)


def _float(x: float | str | None) -> float | None:
    return None if x is None else float(x)


def _evidence_out(e: Evidence) -> dict[str, Any]:
    v = e.verdict
    return {"verdict": [_num(v.score), _num(v.threshold), v.breach, v.detail, v.test, _num(v.z)],
            "fingerprint": e.fingerprint, "segment": e.segment, "segment_key": e.segment_key,
            "window_start": e.window_start, "context": e.context, "current": e.current.model_dump(mode="json"),
            "baseline": e.baseline.model_dump(mode="json"), "baseline_info": e.baseline_info.model_dump(mode="json"),
            "history": e.history.model_dump(mode="json"), "features": e.features}


def _evidence_in(d: dict[str, Any]) -> Evidence:
    score, threshold, breach, detail, test, z = d["verdict"]
    verdict = Verdict(float(score), float(threshold), bool(breach), str(detail), str(test), _float(z))
    return Evidence(verdict, d["fingerprint"], dict(d["segment"]), d["segment_key"], int(d["window_start"]),
                    d["context"], Summary.model_validate(d["current"]), Summary.model_validate(d["baseline"]),
                    BaselineInfo.model_validate(d["baseline_info"]), History.model_validate(d["history"]),
                    list(d["features"]))


def report_out(r: WindowReport) -> dict[str, Any]:
    return {"model": r.model, "start": r.start, "end": r.end,
            "notes": [[n.sid, n.signal, n.status, n.reason, n.starts, _evidence_out(n.payload)] for n in r.notes],
            "shadow_alerts": [a.model_dump(mode="json") for a in r.shadow_alerts],
            "shadow_compared": r.shadow_compared, "features": r.features, "correlation": r.correlation,
            **({"early": r.early} if r.early is not None else {}),
            **({"versions": r.versions} if r.versions else {})}


def report_in(d: dict[str, Any]) -> WindowReport:
    return WindowReport(
        str(d["model"]), int(d["start"]), int(d["end"]),
        [Note(str(sid), str(sig), str(st), str(reason), int(starts), _evidence_in(ev))
         for sid, sig, st, reason, starts, ev in d["notes"]],
        [Alert.model_validate(a) for a in d["shadow_alerts"]],
        {str(k): bool(v) for k, v in d["shadow_compared"].items()},
        [str(f) for f in d["features"]], [[float(x) for x in row] for row in d["correlation"]],
        None if d.get("early") is None else int(d["early"]),
        {str(v): int(n) for v, n in d.get("versions", {}).items()},
    )


def encode(partition: int, item: WindowReport | Mark | Proposal) -> bytes:
    """One message of the internal topic: a window report, a progress mark or a proposal of bin
    edges, of an input partition."""
    if isinstance(item, Mark):
        return orjson.dumps({"partition": partition, "mark": item.watermark, "empty": item.empty, "held": item.held})
    if isinstance(item, Proposal):
        return orjson.dumps({"partition": partition, "proposal": proposal_out(item)})
    return orjson.dumps({"partition": partition, "report": report_out(item)})


def decode(raw: bytes) -> tuple[int, WindowReport | Mark | Proposal]:
    d = orjson.loads(raw)
    if "report" in d:
        return int(d["partition"]), report_in(d["report"])
    if "proposal" in d:
        return int(d["partition"]), proposal_in(d["proposal"])
    held = d.get("held")
    return int(d["partition"]), Mark(d["mark"], bool(d.get("empty", False)), None if held is None else int(held))


def proposal_out(p: Proposal) -> list[Any]:
    return [p.model, p.learn_until, p.values, {n: [k, v] for n, (k, v) in p.features.items()}]


def proposal_in(d: list[Any]) -> Proposal:
    model, until, values, *rest = d
    feats = rest[0] if rest else {}
    return Proposal(str(model), int(until), [float(v) for v in values],
                    {str(n): (None if k is None else str(k), [float(v) for v in vs]) for n, (k, vs) in feats.items()})


@dataclass(frozen=True, slots=True)
class Mark:
    """A series task's progress: its partition's watermark, and whether every window of it that
    ends by then is reported. ``held``: the end of the first window that is due but held back
    (its model waits for its shared bin edges), so only windows ending before it are all reported.
    ``empty``: the partition has had no valid event and nothing is left to read in it (no window of
    it is open: nothing to wait for)."""

    watermark: int | None
    empty: bool = False
    held: int | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    """A series task's sample for a model's shared parameters, from its events before
    ``learn_until`` (the end of its first window plus the allowed lateness): the numeric
    prediction's first values (at most the spec's ``learn_from``; none for class labels), and per
    feature the kind of its first value (None: no value yet) and its first numeric values. The
    model stage decides from the proposals of the earliest ``learn_until`` and broadcasts the
    outcome (``Params``), so every partition bins alike."""

    model: str
    learn_until: int
    values: list[float]
    features: dict[str, tuple[str | None, list[float]]] = field(default_factory=dict)


_KINDS = ("numeric", "categorical")


def _increasing(edges: list[float], what: str) -> list[float]:
    if not edges or not all(math.isfinite(x) for x in edges) or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"{what} must be finite and increasing")
    return edges


@dataclass(frozen=True, slots=True)
class Params:
    """What every series task of a model must share, decided once by the model stage: the numeric
    prediction's bin edges (None: its predictions are class labels), and each feature's kind with,
    for a numeric one, its bin edges (a feature missing here had no value in any partition's sample:
    each partition learns it alone). Broadcast on a compacted topic keyed by model."""

    model: str
    edges: list[float] | None
    features: dict[str, tuple[str, list[float]]] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @staticmethod
    def decode(raw: bytes) -> Params:
        return Params.from_dict(orjson.loads(raw))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Params:
        edges = d.get("edges")
        feats: dict[str, tuple[str, list[float]]] = {}
        for name, (kind, fedges) in (d.get("features") or {}).items():
            if kind not in _KINDS:
                raise ValueError(f"feature {name!r}: kind must be one of {', '.join(_KINDS)}")
            values = [float(x) for x in fedges]
            feats[str(name)] = (kind, _increasing(values, f"feature {name!r}'s bin edges") if kind == "numeric" else [])
        return Params(str(d["model"]), None if edges is None else _increasing([float(x) for x in edges], "shared bin edges"),
                      feats)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "edges": self.edges, "features": {n: [k, e] for n, (k, e) in self.features.items()}}
