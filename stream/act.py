"""From alert notifications to commands: the circuit-breaker policy per model.

A non-info firing alert on a model's predictions, of a model whose action is ``circuit_break``,
opens its breaker; a feature alert alone does not (the inputs moved, the predictions did not
follow), nor does a volume alert: a surge of traffic or a silent
server is news for a person, but no reason to stop serving predictions that are still right. A
repeat notification renews the breaker (repeats come only while the evidence stays bad; a break
expires unless the monitor keeps confirming it, so a dead monitor fails open); when the last alert
holding the breaker resolves (on clean windows, scored in the dark while it is open), ``restore``
follows. Command ids are
derived from the alert and the transition, so a replay or a retry yields the same ids. At most
``max_open`` models are broken at once.

>>> p = BreakerPolicy(ttl=100, max_open=1)
>>> [c.action for c in p.on_alert(_alert("a1", "fraud", "firing", "new"), "circuit_break")]
['circuit_break']
>>> p.on_alert(_alert("b1", "spam", "firing", "new"), "circuit_break"), p.rate_limited
([], 1)
>>> [c.action for c in p.on_alert(_alert("a1", "fraud", "resolved", "resolved"), "circuit_break")]
['restore']
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from .contract import Alert, Command, CommandReason, Operation, Release, TrainingWindow, ms_to_rfc3339


def command_id(model: str, action: str, alert_id: str, nonce: int | str = "") -> str:
    digest = hashlib.sha256(f"{model}|{action}|{alert_id}|{nonce}".encode()).hexdigest()
    return f"c-{digest[:20]}"


#: Fields added to the command after signatures existed: left out of the signed bytes when empty.
LATER = ("model_version", "sequence", "target_version", "release", "training_window")


Signed = TypeVar("Signed", Command, Operation)


def canonical(command: Command | Operation) -> bytes:
    """The bytes a signature covers: the command without its signature, keys sorted."""
    # model_version and sequence came later: left out when empty, so older signatures still verify.
    later = {name for name in LATER if name in type(command).model_fields and getattr(command, name) is None}
    body = command.model_dump(mode="json", exclude={"signature"} | later)
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign(command: Signed, key: bytes) -> Signed:
    sig = hmac.new(key, canonical(command), hashlib.sha256).hexdigest()
    return command.model_copy(update={"signature": sig})


def verify(command: Command | Operation, key: bytes) -> bool:
    if not command.signature:
        return False
    try:
        body = canonical(command)
    except TypeError:  # a forged command can hold what no signer writes (an integer beyond 64 bits)
        return False
    want = hmac.new(key, body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest raises on str with non-ASCII characters (a forged signature may hold any).
    return hmac.compare_digest(want.encode(), command.signature.encode("utf-8", "surrogatepass"))


#: Sequences per millisecond of ``issued_at`` (see ``next_sequence``).
PER_MS = 1024


def next_sequence(last: int | None, issued_at: int) -> int:
    """The next command sequence of a model: one more than its last, and at least ``issued_at``
    (epoch ms) times ``PER_MS``. Why tied to time: a driftline whose state was lost (a new state
    topic) starts counting again, and subscribers that remember a high sequence would ignore it for
    good; tied to the event time, its commands still outrank every older one (up to 1,024 commands
    per millisecond; a replay of old history issues old sequences, which a subscriber rightly
    ignores). Below 2**53: exact as a JSON number anywhere."""
    return max((last or 0) + 1, issued_at * PER_MS)


@dataclass
class Breaker:
    alerts: set[str] = field(default_factory=set)
    expires_at: int = 0


@dataclass
class BreakerPolicy:
    ttl: int
    max_open: int
    signing_key: bytes | None = None
    open: dict[str, Breaker] = field(default_factory=dict)
    rate_limited: int = 0
    sequence: dict[str, int] = field(default_factory=dict)  # model -> last command sequence issued

    def on_alert(self, alert: Alert, action: str, acts_on: frozenset[str] = frozenset({"prediction"})) -> list[Command]:
        """The commands an alert calls for. Only alerts of the signals in ``acts_on`` act: the
        prediction's by default. A feature alone drifting is a warning about the model's inputs
        that the prediction has not followed (docs/choosing.md), whatever severity it was given;
        a volume alert (surge, drop, silence) is about the traffic, not the model."""
        if action != "circuit_break" or alert.severity == "info" or alert.signal not in acts_on:
            return []
        model = alert.model
        now = alert.window_end
        breaker = self.open.get(model)
        out: list[Command] = []
        if alert.status == "firing":
            if breaker is None:
                if len(self.open) >= self.max_open:
                    self.rate_limited += 1
                    return []
                breaker = self.open[model] = Breaker()
                out.append(self._command(model, "circuit_break", alert, now))
            elif alert.notify_reason == "repeat" or alert.alert_id not in breaker.alerts:
                out.append(self._command(model, "circuit_break", alert, now))
            breaker.alerts.add(alert.alert_id)
            breaker.expires_at = now + self.ttl
        elif breaker is not None and alert.alert_id in breaker.alerts:
            breaker.alerts.discard(alert.alert_id)
            if not breaker.alerts:
                del self.open[model]
                out.append(self._command(model, "restore", alert, now))
        return out

    def expire(self, now: int) -> None:
        """Forget breakers whose commands have expired without renewal."""
        for model in [m for m, b in self.open.items() if b.expires_at <= now]:
            del self.open[model]

    def verdict(self, model: str, version: str, action: str, now: int, compared: int, breached: int) -> Command:
        """A shadow verdict on a challenger version (promote or reject), signed like any command."""
        what = "agreed with the champion in every one of" if action == "promote" else "still differs after"
        reason_id = f"shadow-{model}-{version}"
        cmd = Command(
            command_id=command_id(model, action, reason_id, now),
            model=model,
            model_version=version,
            action=action,  # type: ignore[arg-type]
            reason=CommandReason(
                alert_id=reason_id, fingerprint=reason_id, signal="shadow",
                summary=f"challenger {version} of {model} {what} {compared} compared windows "
                        f"({breached} with a difference somewhere)",
            ),
            issued_at=now,
            expires_at=None,
            sequence=self._next(model, now),
        )
        return self._signed(cmd)

    def _signed(self, cmd: Command) -> Command:
        return sign(cmd, self.signing_key) if self.signing_key else cmd

    def _next(self, model: str, now: int) -> int:
        seq = self.sequence[model] = next_sequence(self.sequence.get(model), now)
        return seq

    def rollback(self, alert: Alert, version: str, target: str, release: Release) -> Command:
        """Serve ``target`` again: the drift came with release ``version`` (its evidence attached).
        It opens no breaker: if the drift outlives the rollback, the alert's repeat breaks."""
        now = alert.window_end
        cmd = Command(
            command_id=command_id(alert.model, "rollback", alert.alert_id, now),
            model=alert.model, action="rollback", model_version=version, target_version=target, release=release,
            reason=CommandReason(alert_id=alert.alert_id, fingerprint=alert.fingerprint, signal=alert.signal,
                                 summary=f"{alert.summary}; it started as {version} took traffic: back to {target}"),
            issued_at=now, expires_at=None, sequence=self._next(alert.model, now),
        )
        return self._signed(cmd)

    def retrain(self, alert: Alert) -> Command:
        """Ask for a model trained on the world since the drift started: it has lasted, and no
        release is behind it."""
        now = alert.window_end
        window = TrainingWindow(start=alert.starts_at, end=now, segments=alert.segments or [alert.segment],
                                features=list(alert.features))
        cmd = Command(
            command_id=command_id(alert.model, "retrain", alert.alert_id, now),
            model=alert.model, action="retrain", training_window=window,
            reason=CommandReason(alert_id=alert.alert_id, fingerprint=alert.fingerprint, signal=alert.signal,
                                 summary=f"{alert.summary}; drifting since {ms_to_rfc3339(alert.starts_at)}"),
            issued_at=now, expires_at=None, sequence=self._next(alert.model, now),
        )
        return self._signed(cmd)

    def accepted(self, op: Operation, now: int, resolved: set[str]) -> list[Command]:
        """An operator accepted drift of the model as the new normal, which ``resolved`` these of its
        alerts: its breaker, if open, is restored once no alert holds it (at once when the accept
        covers every segment)."""
        breaker = self.open.get(op.model)
        if breaker is None:
            return []
        breaker.alerts -= resolved
        if breaker.alerts and op.segments:
            return []
        del self.open[op.model]
        who = f" by {op.by}" if op.by else ""
        cmd = Command(
            command_id=command_id(op.model, "restore", op.command_id, now),
            model=op.model, action="restore",
            reason=CommandReason(alert_id=op.command_id, fingerprint=f"operator|{op.model}", signal="operator",
                                 summary=f"{op.model}: the drift was accepted as the new normal{who}"
                                         + (f" ({op.note})" if op.note else "")),
            issued_at=now, expires_at=None, sequence=self._next(op.model, now),
        )
        return [self._signed(cmd)]

    def _command(self, model: str, action: str, alert: Alert, now: int) -> Command:
        # The window end is part of the id: a renewal is a new command, a replay is the same one.
        cmd = Command(
            command_id=command_id(model, action, alert.alert_id, now),
            model=model,
            action=action,  # type: ignore[arg-type]
            reason=CommandReason(
                alert_id=alert.alert_id, fingerprint=alert.fingerprint, signal=alert.signal, summary=alert.summary
            ),
            issued_at=now,
            expires_at=now + self.ttl if action == "circuit_break" else None,
            sequence=self._next(model, now),
        )
        return self._signed(cmd)


def _alert(alert_id: str, model: str, status: str, reason: str) -> Alert:
    """A minimal alert for examples and tests."""
    from .contract import BaselineInfo, History, Summary

    return Alert(
        alert_id=alert_id, fingerprint=f"fp-{alert_id}", status=status, severity="critical",  # type: ignore[arg-type]
        model=model, segment={}, signal="prediction", context="", window_start=0, window_end=3_600_000,
        starts_at=0, score=1.0, threshold=0.1, baseline=Summary(count=1), current=Summary(count=1),
        baseline_info=BaselineInfo(slot="", kind="hour_of_week", windows=8, confidence="high"),
        history=History(recent=[], same_slot=[]), notify_reason=reason, summary="",  # type: ignore[arg-type]
    )
