"""Alert assembly: an emission of the grouping (one series, or a group of segments) as an ``Alert``.

Pure: everything comes from the notes' evidence, summarised by the series stage. A group alert is
led by its strongest member (the largest score-to-threshold ratio), names every member segment, and
groups the features its members name by their correlation.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..contract import Alert
from ..decide import severity
from ..features import correlated_groups
from ..group import Emission
from ..series.tables import fingerprint
from ..verdict import Evidence


class Severities:
    """An alert keeps the severity it fired with through its repeats and its resolution: receivers
    such as Alertmanager tell alerts apart by their labels, severity among them."""

    def __init__(self) -> None:
        self.fired: dict[str, str] = {}  # fingerprint -> severity of its firing alert

    def of(self, fp: str, status: str, reason: str, now: str) -> str:
        if status == "firing" and reason == "new":
            self.fired[fp] = now
            return now
        fired = self.fired.get(fp, now)
        if status == "resolved":
            self.fired.pop(fp, None)
        return fired


def feature_groups(names: list[str], correlation: dict[tuple[str, str], float]) -> list[list[str]]:
    """``names`` grouped by |correlation| (pairs not in ``correlation`` count as uncorrelated)."""
    index = {n: i for i, n in enumerate(names)}
    corr = np.eye(len(names))
    for a in names:
        for b in names:
            corr[index[a], index[b]] = correlation.get((a, b), corr[index[a], index[b]])
    return correlated_groups(names, index, corr)


def alert_of(model: str, e: Emission, end: int, segments_of: dict[str, dict[str, str]],
             correlation: dict[tuple[str, str], float], severities: Severities,
             feature_severity: str) -> Alert:
    """The alert of one emission. ``segments_of``: segment key -> segment, for group members."""
    # The evidence shown is this window's: a group's repeat also carries the last note of members that
    # had nothing to say in it, and an older note's window is not the one the alert is sent for.
    latest = max(n.payload.window_start for n in e.notes)
    lead = max((n for n in e.notes if n.payload.window_start == latest), key=lambda n: n.payload.ratio)
    ev: Evidence = lead.payload
    verdict, signal = ev.verdict, e.signal
    features = sorted({f for n in e.notes for f in n.payload.features})
    groups = feature_groups(features, correlation) if features else []
    what = {"prediction": "prediction distribution", "volume": "event volume",
            "feature": "features " + "; ".join(", ".join(g) for g in groups)}.get(signal, signal)
    verb = "drifted" if e.status == "firing" else "was accepted as the new normal" if e.reason == "accepted" \
        else "is back to normal"
    segment: dict[str, str]
    segments: list[dict[str, str]] | None
    if e.kind == "group":
        fp = fingerprint(model, "*", signal)
        keys = e.members or [n.sid for n in e.notes]
        segments = [segments_of[k] for k in keys if k in segments_of]
        where = f"{len(segments)} segments" if e.status == "firing" else "all segments"
        segment = {}
    else:
        fp = ev.fingerprint
        segments = None
        where = ev.segment_key or "all traffic"
        segment = ev.segment
    info = ev.baseline_info
    evidence = f"; features drifting with it: {', '.join(features)}" if features and signal == "prediction" else ""
    summary = (
        f"{model} [{where}]: {what} {verb} ({verdict.test} {verdict.score:.4f}, threshold "
        f"{verdict.threshold:.4f}) against {info.windows} past {info.slot} windows{evidence}"
    )
    return Alert(
        alert_id="a-" + hashlib.sha256(f"{fp}|{e.starts}".encode()).hexdigest()[:16],
        fingerprint=fp,
        status=e.status,  # type: ignore[arg-type]
        severity=severities.of(fp, e.status, e.reason,  # type: ignore[arg-type]
                               severity(signal, verdict.score, verdict.threshold, feature_severity, verdict.test)),  # type: ignore[arg-type]
        model=model,
        segment=segment,
        segments=segments,
        signal=signal,  # type: ignore[arg-type]
        features=features,
        feature_groups=groups,
        test=verdict.test,
        context=ev.context,
        window_start=ev.window_start,
        window_end=end,
        starts_at=e.starts,
        ends_at=end if e.status == "resolved" else None,
        score=verdict.score,
        threshold=verdict.threshold,
        baseline=ev.baseline,
        current=ev.current,
        baseline_info=info,
        history=ev.history,
        notify_reason=e.reason,  # type: ignore[arg-type]
        summary=summary,
    )
