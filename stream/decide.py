"""Alert lifecycle of one series and signal: inactive -> pending -> firing -> resolved.

A pure state machine over per-window verdicts. ``pending_windows`` consecutive breaches make an
alert fire (like Alertmanager's ``for``), or a single strong breach (a score at least twice its
threshold: no need to wait for confirmation); ``resolve_windows`` consecutive clean windows
resolve it. A window without a verdict
(too few events, no baseline yet) changes nothing.

>>> s = AlertState()
>>> s, t = step(s, True, 100, pending_windows=2, resolve_windows=1); s.status, t
('pending', None)
>>> s, t = step(s, True, 200, pending_windows=2, resolve_windows=1); s.status, t, s.starts_at
('firing', 'firing', 100)
>>> s, t = step(s, False, 300, pending_windows=2, resolve_windows=1); s.status, t
('inactive', 'resolved')
>>> step(AlertState(), True, 400, pending_windows=2, resolve_windows=1, strong=True)[1]
'firing'

"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Transition = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertState:
    status: Literal["inactive", "pending", "firing"] = "inactive"
    breaches: int = 0
    clean: int = 0
    starts_at: int | None = None


def step(
    state: AlertState,
    breach: bool | None,
    window_start: int,
    *,
    pending_windows: int,
    resolve_windows: int,
    strong: bool = False,
) -> tuple[AlertState, Transition | None]:
    """Advance the lifecycle by one window; return the new state and the transition, if any."""
    if breach is None:
        return state, None
    if breach:
        starts = state.starts_at if state.status != "inactive" else window_start
        breaches = state.breaches + 1
        if state.status == "firing":
            return replace(state, breaches=breaches, clean=0), None
        if breaches >= pending_windows or strong:
            return AlertState("firing", breaches, 0, starts), "firing"
        return AlertState("pending", breaches, 0, starts), None
    if state.status == "firing":
        clean = state.clean + 1
        if clean >= resolve_windows:
            return AlertState(), "resolved"
        return replace(state, clean=clean), None
    return AlertState(), None


def severity(
    signal: str, score: float, threshold: float, feature_severity: Literal["info", "warning"] = "info",
    test: str = "",
) -> Literal["info", "warning", "critical"]:
    """Feature drift alone is information (configurable); prediction and volume warn, critical past
    2x; the fast lane's breaks (invalid predictions, or the open window already far off its slot's
    ceiling) are critical: that lane exists for them."""
    if signal == "feature":
        return feature_severity
    if test in ("sequential", "invalid"):
        return "critical"
    return "critical" if threshold > 0 and score >= 2.0 * threshold else "warning"
