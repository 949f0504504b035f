"""Notification dedup: a pure function that says whether (and why) an alert is sent again.

Times are event times (window ends), so a replay of the same input sends the same notifications.

>>> log = None
>>> notify_reason(log, "firing", now=1, repeat_interval=4)
'new'
>>> log = Sent("firing", 1)
>>> notify_reason(log, "firing", now=3, repeat_interval=4) is None, notify_reason(log, "firing", now=5, repeat_interval=4)
(True, 'repeat')
>>> notify_reason(log, "resolved", now=6, repeat_interval=4), notify_reason(Sent("resolved", 6), "resolved", 7, 4)
('resolved', None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Reason = Literal["new", "repeat", "resolved"]


@dataclass(frozen=True, slots=True)
class Sent:
    """The last notification sent for a fingerprint."""

    status: Literal["firing", "resolved"]
    at: int


def notify_reason(last: Sent | None, status: str, now: int, repeat_interval: int) -> Reason | None:
    """Why to notify about ``status`` at ``now`` given what was sent last, or None to stay quiet."""
    if status == "resolved":
        return "resolved" if last is not None and last.status == "firing" else None
    if last is None or last.status == "resolved":
        return "new"
    if now - last.at >= repeat_interval:
        return "repeat"
    return None
