"""Lifecycle, dedupe and breaker policy read as timelines (times are window ends in hours)."""

from __future__ import annotations

from stream.act import BreakerPolicy, _alert, sign, verify
from stream.decide import AlertState, step
from stream.dedupe import Sent, notify_reason


def run(breaches: list[bool | None], pending: int = 2, resolve: int = 2) -> list[tuple[int, str]]:
    state, out = AlertState(), []
    for t, b in enumerate(breaches):
        state, tr = step(state, b, t, pending_windows=pending, resolve_windows=resolve)
        if tr:
            out.append((t, tr))
    return out


def test_one_breach_stays_pending_two_fire() -> None:
    assert run([False, True, False, False]) == []
    assert run([False, True, True, True]) == [(2, "firing")]


def test_missing_verdicts_do_not_resolve_or_reset() -> None:
    assert run([True, None, True, None, None, False, None, False]) == [(2, "firing"), (7, "resolved")]


def test_flapping_needs_consecutive_clean_windows() -> None:
    assert run([True, True, False, True, False, False]) == [(1, "firing"), (5, "resolved")]


def test_repeat_interval_timeline() -> None:
    sent = None
    reasons = []
    for now, status in [(1, "firing"), (2, "firing"), (5, "firing"), (6, "firing"), (9, "firing"), (10, "resolved"), (11, "resolved")]:
        r = notify_reason(sent, status, now, repeat_interval=4)
        if r:
            sent = Sent(status, now)  # type: ignore[arg-type]
            reasons.append((now, r))
    assert reasons == [(1, "new"), (5, "repeat"), (9, "repeat"), (10, "resolved")]


def test_breaker_opens_renews_and_restores_with_stable_ids() -> None:
    def timeline() -> list[tuple[str, str]]:
        p = BreakerPolicy(ttl=10, max_open=5)
        cmds = p.on_alert(_alert("a1", "fraud", "firing", "new"), "circuit_break")
        cmds += p.on_alert(_alert("a1", "fraud", "firing", "repeat").model_copy(update={"window_end": 7_200_000}), "circuit_break")
        cmds += p.on_alert(_alert("a1", "fraud", "resolved", "resolved").model_copy(update={"window_end": 10_800_000}), "circuit_break")
        return [(c.action, c.command_id) for c in cmds]

    first, second = timeline(), timeline()
    assert [a for a, _ in first] == ["circuit_break", "circuit_break", "restore"]
    assert len({i for _, i in first}) == 3  # a renewal is a new command
    assert first == second  # a replay yields the same ids


def test_alert_only_models_and_info_alerts_issue_no_command() -> None:
    p = BreakerPolicy(ttl=10, max_open=5)
    assert p.on_alert(_alert("a1", "fraud", "firing", "new"), "alert") == []
    info = _alert("a2", "fraud", "firing", "new").model_copy(update={"severity": "info"})
    assert p.on_alert(info, "circuit_break") == []


def test_signature_detects_tampering() -> None:
    p = BreakerPolicy(ttl=10, max_open=5, signing_key=b"k")
    cmd = p.on_alert(_alert("a1", "fraud", "firing", "new"), "circuit_break")[0]
    assert verify(cmd, b"k")
    assert not verify(cmd, b"other")
    assert not verify(cmd.model_copy(update={"model": "spam"}), b"k")
    assert verify(sign(cmd.model_copy(update={"signature": None}), b"k"), b"k")
