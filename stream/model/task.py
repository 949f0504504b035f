"""A model task: window reports in; alerts and commands out.

The model stage of DESIGN.md's data flow: everything decided per model rather than per series.
For each report, in order: breakers past their expiry close; the challengers' shadow alerts pass
through and their verdicts become commands; the series' notes are grouped across segments
(``group.py``); each emission becomes an alert (``alert.py``) keeping the severity it fired with;
the breaker policy (``act.py``, with its cap on models broken at once) turns alerts into commands.
No sketches, no Kafka, no clock: the report carries all the evidence and its time.
"""

from __future__ import annotations

import logging

from ..act import BreakerPolicy
from ..config import Config, ResolvedModel
from ..contract import Alert
from ..group import SegmentGrouper
from ..metrics import Metrics
from ..series.tables import Output
from ..verdict import WindowReport
from .alert import Severities, alert_of
from .edges import EdgeBook
from .shadow import ShadowBook

log = logging.getLogger("driftline.model")


class ModelTask:
    def __init__(self, config: Config, metrics: Metrics | None = None):
        self.config = config
        self.d = config.defaults
        self.metrics = metrics or Metrics()
        self.grouper = SegmentGrouper(self.d.group_min_segments, self.d.repeat_interval)
        self.breakers = BreakerPolicy(
            ttl=self.d.break_ttl, max_open=self.d.max_open_breakers, signing_key=config.commands.key()
        )
        self.severities = Severities()
        self.shadow = ShadowBook()
        self.edges = EdgeBook(self.d.allowed_lateness)  # the numeric bin edges every partition of a model shares
        # Per model: segment key -> segment of each member of an open group (group alerts list
        # them), and the latest |correlation| between features that notes named.
        self.segments: dict[str, dict[str, dict[str, str]]] = {}
        self.correlation: dict[str, dict[tuple[str, str], float]] = {}
        self._resolved: dict[str, ResolvedModel] = {}

    def act(self, reports: list[WindowReport], out: Output) -> None:
        """Each report in turn, into ``out``'s alerts and commands."""
        for r in reports:
            self._report(r, out)

    def _report(self, r: WindowReport, out: Output) -> None:
        model, end = r.model, r.end
        action = self._model(model).action
        self.breakers.expire(end)
        for alert in r.shadow_alerts:
            self._publish(alert, out)
        if r.shadow_compared:
            self._verdicts(r, out)
        segments = self.segments.setdefault(model, {})
        for n in r.notes:
            segments[n.sid] = n.payload.segment
        if r.features:
            corr = self.correlation.setdefault(model, {})
            for i, a in enumerate(r.features):
                for j, b in enumerate(r.features):
                    corr[(a, b)] = r.correlation[i][j]
        emissions = self.grouper.early(model, r.notes, end) if r.early else self.grouper.apply(model, r.notes, end)
        for emission in emissions:
            alert = alert_of(model, emission, end, segments, self.correlation.get(model, {}), self.severities,
                             self.d.feature_severity)
            self._publish(alert, out)
            limited = self.breakers.rate_limited
            for cmd in self.breakers.on_alert(alert, action):
                out.commands.append(cmd)
                self.metrics.commands.labels(model, cmd.action).inc()
            self.metrics.breakers_rate_limited.inc(self.breakers.rate_limited - limited)
        members = set().union(*(g.members for (m, _s), g in self.grouper.groups.items() if m == model),
                              *(alone for (m, _s), alone in self.grouper.singles.items() if m == model))
        for key in [k for k in segments if k not in members]:
            del segments[key]
        self.metrics.breakers_open.set(len(self.breakers.open))

    def _verdicts(self, r: WindowReport, out: Output) -> None:
        sc = self._model(r.model).shadow
        if sc is None:
            return
        for version, verdict, compared, breached in self.shadow.window(r.model, r.shadow_compared, r.shadow_alerts,
                                                                        sc.verdict_after):
            log.info("shadow verdict for %s %s: %s", r.model, version, verdict)
            if sc.publish_verdict:
                cmd = self.breakers.verdict(r.model, version, verdict, r.end, compared, breached)
                out.commands.append(cmd)
                self.metrics.commands.labels(r.model, cmd.action).inc()

    def _model(self, name: str) -> ResolvedModel:
        cfg = self._resolved.get(name)
        if cfg is None:
            cfg = self._resolved[name] = self.config.resolved(name)
        return cfg

    def _publish(self, alert: Alert, out: Output) -> None:
        out.alerts.append(alert)
        self.metrics.alerts.labels(alert.model, alert.severity, alert.status).inc()
