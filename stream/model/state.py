"""The model task's state as explicit data (never pickle): its decisions so far, and its frontier.

What a model task must carry across a restart or a move to another process: each alert's fired
severity, the open segment groups (members by segment key, with their segments), the breakers and
their cap's count, each model's last command sequence, the challengers' verdict book, the features' correlation; and, for the model
stage of the service, the frontier with the reports it holds until every partition has passed them.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..act import Breaker
from ..group import Note, _Group
from ..verdict import report_in, report_out
from .frontier import Frontier, key_of
from .task import ModelTask

VERSION = 1


def task_out(task: ModelTask) -> dict[str, Any]:
    return {
        "fired_severity": task.severities.fired,
        "groups": [[model, sig, [[k, task.segments.get(model, {}).get(k, {})] for k in sorted(g.members)],
                    g.starts, g.last_sent, sorted(g.singles)] for (model, sig), g in task.grouper.groups.items()],
        # series alerting alone: what a group opened later counts (their evidence is not kept: a
        # group they open shows the others')
        "singles": [[model, sig, [[k, task.segments.get(model, {}).get(k, {}), alone[k].starts] for k in sorted(alone)]]
                    for (model, sig), alone in task.grouper.singles.items() if alone],
        "breakers": [[model, sorted(b.alerts), b.expires_at] for model, b in task.breakers.open.items()],
        "rate_limited": task.breakers.rate_limited,
        "sequence": sorted(task.breakers.sequence.items()),
        "releases": task.releases.snapshot(),
        "retrained": sorted(task.retrained.items()),
        "shadow_book": task.shadow.snapshot(),
        "edges": task.edges.snapshot(),
        "correlation": [[model, a, b, c] for model, pairs in task.correlation.items() for (a, b), c in pairs.items()],
        "operators": task.operators.snapshot(),
    }


def task_in(task: ModelTask, d: dict[str, Any]) -> None:
    """``d`` as ``task_out`` wrote it (group members as [key, segment] pairs)."""
    task.severities.fired = dict(d.get("fired_severity", {}))
    for model, sig, members, starts, last_sent, *rest in d["groups"]:
        keys = set()
        for key, seg in members:
            keys.add(str(key))
            task.segments.setdefault(model, {})[str(key)] = dict(seg)
        task.grouper.groups[(model, sig)] = _Group(keys, starts, last_sent, {}, {str(k) for k in rest[0]} if rest else set())
    for model, sig, members in d.get("singles", []):
        for key, seg, _starts in members:
            task.segments.setdefault(model, {})[str(key)] = dict(seg)
        task.grouper.singles[(model, sig)] = {str(k): Note(str(k), sig, "firing", "restored", int(st)) for k, _s, st in members}
    for model, alerts, expires in d["breakers"]:
        task.breakers.open[model] = Breaker(set(alerts), expires)
    task.breakers.rate_limited = d["rate_limited"]
    task.breakers.sequence = {str(m): int(n) for m, n in d.get("sequence", [])}
    task.releases.restore(d.get("releases", {}))
    task.retrained = {str(m): str(a) for m, a in d.get("retrained", [])}
    if "shadow_book" in d:
        task.shadow.restore(d["shadow_book"])
    task.edges.restore(d.get("edges", {}))
    for model, a, b, c in d.get("correlation", []):
        task.correlation.setdefault(model, {})[(a, b)] = float(c)
    task.operators.restore(d.get("operators", {}))


def dumps(task: ModelTask, frontier: Frontier) -> bytes:
    """The model stage's whole state: the task, the frontier, the reports it holds."""
    return orjson.dumps({
        "version": VERSION, "task": task_out(task), "frontier": frontier.snapshot(),
        "pending": [report_out(r) for r in frontier.pending.values()],
    })


def loads(task: ModelTask, frontier: Frontier, raw: bytes, now: float) -> None:
    """Into a fresh task and frontier: what ``dumps`` wrote."""
    d = orjson.loads(raw)
    if not isinstance(d, dict) or d.get("version") != VERSION:
        raise ValueError(f"unsupported model state version {d.get('version') if isinstance(d, dict) else d!r}")
    task_in(task, d["task"])
    frontier.restore(d["frontier"], now)
    for r in map(report_in, d["pending"]):
        frontier.pending[key_of(r, frontier.lateness)] = r
