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

    def merge(self, other: WindowReport) -> None:
        """Another partition's report of the same model window into this one."""
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
            "shadow_compared": r.shadow_compared, "features": r.features, "correlation": r.correlation}


def report_in(d: dict[str, Any]) -> WindowReport:
    return WindowReport(
        str(d["model"]), int(d["start"]), int(d["end"]),
        [Note(str(sid), str(sig), str(st), str(reason), int(starts), _evidence_in(ev))
         for sid, sig, st, reason, starts, ev in d["notes"]],
        [Alert.model_validate(a) for a in d["shadow_alerts"]],
        {str(k): bool(v) for k, v in d["shadow_compared"].items()},
        [str(f) for f in d["features"]], [[float(x) for x in row] for row in d["correlation"]],
    )


def encode(partition: int, item: WindowReport | Mark | Proposal) -> bytes:
    """One message of the internal topic: a window report, a progress mark or a proposal of bin
    edges, of an input partition."""
    if isinstance(item, Mark):
        return orjson.dumps({"partition": partition, "mark": item.watermark, "empty": item.empty, "held": item.held})
    if isinstance(item, Proposal):
        return orjson.dumps({"partition": partition, "proposal": [item.model, item.learn_until, item.values]})
    return orjson.dumps({"partition": partition, "report": report_out(item)})


def decode(raw: bytes) -> tuple[int, WindowReport | Mark | Proposal]:
    d = orjson.loads(raw)
    if "report" in d:
        return int(d["partition"]), report_in(d["report"])
    if "proposal" in d:
        model, until, values = d["proposal"]
        return int(d["partition"]), Proposal(str(model), int(until), [float(v) for v in values])
    held = d.get("held")
    return int(d["partition"]), Mark(d["mark"], bool(d.get("empty", False)), None if held is None else int(held))


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
    """A series task's sample for a model's numeric bin edges: its first values (at most the
    spec's ``learn_from``) of events before ``learn_until``, the end of its first window plus the
    allowed lateness. The model stage decides the edges from the proposals of the earliest
    ``learn_until`` and broadcasts them (``Params``), so every partition bins alike."""

    model: str
    learn_until: int
    values: list[float]


@dataclass(frozen=True, slots=True)
class Params:
    """What every series task of a model must share, decided once by the model stage: the numeric
    prediction's bin edges. Broadcast on a compacted topic keyed by model."""

    model: str
    edges: list[float]

    def encode(self) -> bytes:
        return orjson.dumps({"model": self.model, "edges": self.edges})

    @staticmethod
    def decode(raw: bytes) -> Params:
        d = orjson.loads(raw)
        edges = [float(x) for x in d["edges"]]
        if not edges or not all(math.isfinite(x) for x in edges) or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError("shared bin edges must be finite and increasing")
        return Params(str(d["model"]), edges)
