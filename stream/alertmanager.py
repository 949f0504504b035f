"""The Alertmanager bridge: alert transitions to Alertmanager's API v2, so that existing routes
(Slack, PagerDuty, e-mail) carry them.

Alertmanager identifies an alert by its labels and forgets a firing alert that nobody re-sends
before its ``endsAt``. So each alert is sent with labels that stay the same over its life (the
fingerprint among them), a firing one is re-sent every ``resend_interval`` with ``endsAt`` a few
intervals ahead, and a resolved one is sent once more with ``endsAt`` set to when it resolved.
Our whole payload rides along as annotations. Sending happens on a thread of its own: a slow or
absent Alertmanager never holds the stream back; failed posts are retried on the next round.

>>> from stream.contract import Alert
>>> body = to_alertmanager(_example(), now_ms=1795716000000, resend_ms=60_000, extra={"team": "ml"})
>>> body["labels"]["alertname"], body["labels"]["model"], body["labels"]["severity"], body["labels"]["team"]
('DriftlineDrift', 'fraud', 'critical', 'ml')
>>> body["endsAt"]
'2026-11-26T18:04:00.000Z'
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson

from .config import AlertmanagerConfig
from .contract import Alert, ms_to_rfc3339

log = logging.getLogger("driftline.alertmanager")

ALERTNAME = {"prediction": "DriftlineDrift", "volume": "DriftlineVolume", "feature": "DriftlineFeatureDrift",
             "shadow": "DriftlineShadow"}


def to_alertmanager(a: Alert, now_ms: int, resend_ms: int, extra: dict[str, str] | None = None,
                    page_url: str = "", repeat_ms: int = 0) -> dict[str, Any]:
    """One alert in Alertmanager's v2 shape: labels to route on, our payload as annotations."""
    labels = {**(extra or {}), "alertname": ALERTNAME.get(a.signal, "DriftlineDrift"), "model": a.model,
              "severity": a.severity, "signal": a.signal, "segment": ",".join(f"{k}={v}" for k, v in sorted(a.segment.items())) or "(all)",
              "fingerprint": a.fingerprint}
    annotations = {
        "summary": a.summary,
        "description": f"{a.test} score {a.score:.4f} against threshold {a.threshold:.4f} in {a.context}; "
                       f"baseline {a.baseline_info.windows} windows of {a.baseline_info.slot}",
        "alert_id": a.alert_id,
        "payload": orjson.dumps(a.model_dump(mode="json")).decode(),
    }
    if a.silenced_until is not None:  # (an annotation: a label would make it another alert to Alertmanager)
        annotations["silenced_until"] = ms_to_rfc3339(a.silenced_until)
    body: dict[str, Any] = {"labels": labels, "annotations": annotations, "startsAt": ms_to_rfc3339(a.starts_at)}
    if a.status == "resolved":
        body["endsAt"] = ms_to_rfc3339(a.ends_at or now_ms)
    else:
        # Lives through three missed rounds, and until driftline's own repeat of a firing alert: if
        # this process goes away, the one that takes its partitions over repeats it by then.
        body["endsAt"] = ms_to_rfc3339(now_ms + max(4 * resend_ms, repeat_ms + 2 * resend_ms))
    if page_url:
        body["generatorURL"] = f"{page_url}/alerts/{a.alert_id}"
    return body


class AlertmanagerSink:
    """Keeps the firing alerts and posts them (and resolutions) to Alertmanager from its own thread."""

    def __init__(self, cfg: AlertmanagerConfig, clock: Callable[[], float] = time.time,
                 on_result: Callable[[bool], None] | None = None, repeat_interval: int = 0):
        self.cfg = cfg
        self.repeat_interval = repeat_interval
        self.clock = clock
        self.on_result = on_result
        self.firing: dict[str, Alert] = {}  # fingerprint -> latest firing transition
        self.resolved: list[Alert] = []  # to send (again, until it goes through)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="driftline-alertmanager", daemon=True)
        self._thread.start()

    def submit(self, alerts: list[Alert]) -> None:
        """Alerts just published to Kafka."""
        if not alerts:
            return
        with self._lock:
            for a in alerts:
                if a.status == "resolved":
                    self.firing.pop(a.fingerprint, None)
                    self.resolved.append(a)
                else:
                    self.firing[a.fingerprint] = a
        self._wake.set()

    def forget_all(self) -> None:
        """Stop re-sending every alert: the model stage moved to another process, which owns them now."""
        with self._lock:
            self.firing.clear()

    def forget(self, fingerprints: list[str]) -> None:
        """Stop re-sending these alerts: their partitions moved to another process, which owns them now."""
        with self._lock:
            for fp in fingerprints:
                self.firing.pop(fp, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.cfg.resend_interval / 1000)
            self._wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Post every firing alert and every pending resolution now; True if Alertmanager took them."""
        with self._lock:
            firing, resolved = list(self.firing.values()), list(self.resolved)
        if not firing and not resolved:
            return True
        now = int(self.clock() * 1000)
        body = [to_alertmanager(a, now, self.cfg.resend_interval, self.cfg.labels, self.cfg.page_url, self.repeat_interval)
                for a in [*firing, *resolved]]
        req = urllib.request.Request(f"{self.cfg.url}/api/v2/alerts", data=orjson.dumps(body), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                ok = 200 <= resp.status < 300
        except (urllib.error.URLError, OSError) as exc:
            log.warning("alertmanager at %s did not take %d alerts (retried in %.0fs): %s", self.cfg.url, len(body),
                        self.cfg.resend_interval / 1000, exc)
            ok = False
        if ok:
            with self._lock:
                self.resolved = [a for a in self.resolved if a not in resolved]
        if self.on_result is not None:
            self.on_result(ok)
        return ok

    def close(self) -> None:
        """Send what is pending one last time and stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=15)
        self.flush()


def _example() -> Alert:
    from .contract import BaselineInfo, History, Summary

    return Alert(alert_id="a1", fingerprint="f1", status="firing", severity="critical", model="fraud",
                 segment={"country": "NL"}, signal="prediction", context="Saturday 14:00-15:00 UTC",
                 window_start=1795712400000, window_end=1795716000000, starts_at=1795716000000, score=0.2,
                 threshold=0.05, baseline=Summary(count=100), current=Summary(count=90),
                 baseline_info=BaselineInfo(kind="hour_of_week", slot="Saturday 14:00 UTC", windows=8,
                                            confidence="high"),
                 history=History(recent=[], same_slot=[]), notify_reason="new", summary="fraud drifted")
