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
from ..contract import Alert, Command, Operation, Release
from ..group import SegmentGrouper
from ..metrics import Metrics
from ..series.tables import Output
from ..verdict import WindowReport
from .alert import Severities, alert_of
from .edges import EdgeBook
from .operator import OperatorBook
from .release import Behind, ReleaseBook
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
        self.releases = ReleaseBook()  # which versions serve each model, since when (model/release.py)
        self.retrained: dict[str, str] = {}  # model -> the alert a retrain was asked for
        self.shadow = ShadowBook()
        self.edges = EdgeBook(self.d.allowed_lateness)  # the numeric bin edges every partition of a model shares
        # Per model: segment key -> segment of each member of an open group (group alerts list
        # them), and the latest |correlation| between features that notes named.
        self.segments: dict[str, dict[str, dict[str, str]]] = {}
        self.correlation: dict[str, dict[tuple[str, str], float]] = {}
        self._resolved: dict[str, ResolvedModel] = {}
        self.operators = OperatorBook()  # operators' accepts and silences (model/operator.py)

    def act(self, reports: list[WindowReport], out: Output) -> None:
        """Each report in turn, into ``out``'s alerts and commands."""
        for r in reports:
            self._report(r, out)

    def _report(self, r: WindowReport, out: Output) -> None:
        model, end = r.model, r.end
        cfg = self._model(model)
        feature_severity = self._feature_severity(cfg)
        self.breakers.expire(end)
        self.releases.window(model, r.start, end, r.versions, clean=False, early=r.early is not None)
        for alert in r.shadow_alerts:
            self._publish(alert, out)
            for cmd in self._canary(alert, cfg) if cfg.shadow is None else []:  # a release's canary
                out.commands.append(cmd)
                self.metrics.commands.labels(model, cmd.action).inc()
        if r.shadow_compared:
            self._verdicts(r, out)
        segments = self.segments.setdefault(model, {})
        notes = [n for n in r.notes if not self.operators.accepted(model, n.sid, n.starts)]
        for n in notes:
            segments[n.sid] = n.payload.segment
        if r.features:
            corr = self.correlation.setdefault(model, {})
            for i, a in enumerate(r.features):
                for j, b in enumerate(r.features):
                    corr[(a, b)] = r.correlation[i][j]
        emissions = self.grouper.early(model, notes, end) if r.early else self.grouper.apply(model, notes, end)
        silenced = self.operators.silenced_until(model, end)
        for emission in emissions:
            alert = alert_of(model, emission, end, segments, self.correlation.get(model, {}), self.severities,
                             feature_severity)
            if silenced is not None:  # an operator's silence: published as any other, acting on nothing
                alert = alert.model_copy(update={"silenced_until": silenced})
            self._publish(alert, out)
            if silenced is not None:
                continue
            limited = self.breakers.rate_limited
            for cmd in self._respond(alert, cfg):
                out.commands.append(cmd)
                self.metrics.commands.labels(model, cmd.action).inc()
            self.metrics.breakers_rate_limited.inc(self.breakers.rate_limited - limited)
        if r.early is None and not self.grouper.firing(model, "prediction"):
            self.releases.window(model, r.start, end, r.versions, clean=True)
        members = set().union(*(g.members for (m, _s), g in self.grouper.groups.items() if m == model),
                              *(alone for (m, _s), alone in self.grouper.singles.items() if m == model))
        for key in [k for k in segments if k not in members]:
            del segments[key]
        self.metrics.breakers_open.set(len(self.breakers.open))

    def operate(self, op: Operation, out: Output) -> str | None:
        """An operator's command (``driftline accept`` / ``silence``); why it was refused, if it was.
        An accept resolves the covered series' alerts as ``accepted``, restores the breaker, and goes
        to every series task (``out.accepts``), which rebases those series on what they see now."""
        refused = self.operators.admit(op, self.breakers.signing_key)
        if refused is not None:
            log.warning("operator %s %s for %s refused: %s", op.action, op.command_id, op.model, refused)
            return refused
        log.warning("operator %s for %s%s by %s", op.action, op.model,
                    f" ({len(op.segments)} segments)" if op.segments else "", op.by or "?")
        if op.action == "accept":
            model, now = op.model, op.issued_at
            segments = self.segments.get(model, {})
            feature_severity = self._feature_severity(self._model(model))
            resolved = set()
            for e in self.grouper.accept(model, lambda sid: self.operators.covers(model, sid)):
                alert = alert_of(model, e, now, segments, self.correlation.get(model, {}), self.severities,
                                 feature_severity)
                self._publish(alert, out)
                resolved.add(alert.alert_id)
            out.commands += self.breakers.accepted(op, now, resolved)
            self.retrained.pop(model, None)
            out.accepts.append(op)
        return None

    def _canary(self, alert: Alert, cfg: ResolvedModel) -> list[Command]:
        """A release that predicts differently from the version before it on the same traffic, as it
        takes its first windows: rolled back (once), if the model's policy lets its predictions
        roll back. Its share may be too small yet to move the series' own tests."""
        model, version = alert.model, alert.model_version
        if cfg.action != "circuit_break" or "rollback" not in cfg.response.steps("prediction") \
                or alert.status != "firing" or alert.notify_reason != "new" or version is None \
                or (model, version) in self.releases.rolled_back \
                or self.operators.silenced_until(model, alert.window_end) is not None:
            return []
        behind = self.releases.behind(model, alert.starts_at, cfg.window)
        if behind is None or behind.version != version:
            return []
        return [self._rollback(alert, behind)]

    def _rollback(self, alert: Alert, behind: Behind) -> Command:
        """Back to the version before the release ``behind`` the alert (once per release: noted)."""
        self.releases.rolled_back[(alert.model, behind.version)] = alert.window_end
        return self.breakers.rollback(alert, behind.version, behind.target, Release(
            version=behind.version, share=None if behind.share is None else round(behind.share, 4),
            first_traffic=behind.first, drift_started=behind.drift_started))

    def _feature_severity(self, cfg: ResolvedModel) -> str:
        """A model whose feature alerts may act raises them as warnings (info never acts)."""
        return "warning" if cfg.response.feature else self.d.feature_severity

    def _respond(self, alert: Alert, cfg: ResolvedModel) -> list[Command]:
        """The response follows the cause, in the steps the model's policy lists for the alert's
        signal (``config.ResponseConfig``, in the order they escalate). A drift that starts as a new
        version takes traffic: ``rollback`` to the version before it, once per release, then two
        windows' grace for it to take effect. Otherwise, or once the drift outlived the rollback, the
        breaker policy; and a drift that lasted ``retrain_after`` asks for a retrain, once per alert."""
        model, window = alert.model, cfg.window
        steps = cfg.response.steps(alert.signal)
        if alert.status != "firing" and self.retrained.get(model) == alert.alert_id:
            del self.retrained[model]
        if cfg.action != "circuit_break" or alert.severity == "info" or not steps:
            return []
        if alert.status == "firing":
            if self.releases.grace(model, alert.window_end, window):
                return []  # a rollback is taking effect: whether it cured the drift shows next window
            behind = self.releases.behind(model, alert.starts_at, window) \
                if "rollback" in steps and alert.notify_reason == "new" else None
            if behind is not None and (model, behind.version) not in self.releases.rolled_back:
                # (rolled back already and its grace over: the drift outlived it, the next step decides)
                return [self._rollback(alert, behind)]
        commands = self.breakers.on_alert(alert, cfg.action, acts_on=frozenset({alert.signal})) \
            if "circuit_break" in steps else []
        if alert.status == "firing" and "retrain" in steps and alert.window_end - alert.starts_at >= self.d.retrain_after \
                and self.retrained.get(model) != alert.alert_id:
            self.retrained[model] = alert.alert_id
            commands.append(self.breakers.retrain(alert))
        return commands

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
