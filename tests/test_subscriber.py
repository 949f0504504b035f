"""A model server's view of the control topic (pure part): duplicates, expiry, forgery."""

from __future__ import annotations

import orjson

from stream.act import BreakerPolicy, _alert
from stream.subscriber import BreakerBook


def commands(key: bytes | None = None):  # type: ignore[no-untyped-def]
    p = BreakerPolicy(ttl=3_600_000, max_open=5, signing_key=key)
    brk = p.on_alert(_alert("a1", "fraud", "firing", "new"), "circuit_break")[0]
    rst = p.on_alert(_alert("a1", "fraud", "resolved", "resolved").model_copy(update={"window_end": 7_200_000}), "circuit_break")[0]
    return brk, rst


def test_break_then_restore() -> None:
    brk, rst = commands()
    book = BreakerBook(clock=lambda: 4000.0)  # seconds: after the break was issued, before it expires
    assert book.apply(brk) == "applied" and book.is_open("fraud")
    assert book.apply(brk) == "duplicate"
    assert book.apply(rst) == "applied" and not book.is_open("fraud")


def test_expired_break_is_ignored_and_breaker_closes_at_expiry() -> None:
    brk, _ = commands()
    late = BreakerBook(clock=lambda: 10_000.0)
    assert late.apply(brk) == "expired" and not late.is_open("fraud")
    now = [4000.0]
    book = BreakerBook(clock=lambda: now[0])
    book.apply(brk)
    assert book.is_open("fraud")
    now[0] = 7201.0  # past expires_at (issued at 3600 s + 1 h)
    assert not book.is_open("fraud")


def test_forged_and_unsigned_commands_are_rejected_when_a_key_is_set() -> None:
    brk, _ = commands(key=b"secret")
    book = BreakerBook(clock=lambda: 4000.0, signing_key=b"secret")
    forged = brk.model_copy(update={"model": "spam"})
    unsigned = brk.model_copy(update={"signature": None})
    assert book.apply(forged) == "rejected" and book.apply(unsigned) == "rejected"
    assert book.apply(brk) == "applied" and book.is_open("fraud")


def test_a_copied_back_restore_is_stale_and_memory_is_one_number_per_model() -> None:
    """A signature says who, the sequence says when: an older signed command re-published onto the
    control topic (after the newer break it was superseded by) is refused, by a book that resumed
    from its position as much as by the one that saw it all."""
    p = BreakerPolicy(ttl=3_600_000, max_open=5, signing_key=b"secret")
    brk1 = p.on_alert(_alert("a1", "fraud", "firing", "new"), "circuit_break")[0]
    rst1 = p.on_alert(_alert("a1", "fraud", "resolved", "resolved").model_copy(update={"window_end": 7_200_000}), "circuit_break")[0]
    brk2 = p.on_alert(_alert("a2", "fraud", "firing", "new").model_copy(update={"window_end": 10_800_000}), "circuit_break")[0]
    assert brk1.sequence is not None and rst1.sequence is not None and brk2.sequence is not None
    assert brk1.sequence < rst1.sequence < brk2.sequence
    book = BreakerBook(clock=lambda: 11_000.0, signing_key=b"secret")
    assert [book.apply(c) for c in (brk1, rst1, brk2)] == ["expired", "applied", "applied"]
    assert book.apply(rst1) == "stale" and book.is_open("fraud")
    restarted = BreakerBook(clock=lambda: 11_000.0, signing_key=b"secret")
    restarted.resume(orjson.loads(orjson.dumps(book.position())))
    # what a compacted topic holds for the model after the copy: the old restore alone
    assert restarted.is_open("fraud") and restarted.apply(rst1) == "stale" and restarted.is_open("fraud")
    assert restarted.apply(brk2) == "duplicate"
    assert len(book.position()["applied"]) == 1 and not book.unsequenced


def test_sequences_outlive_a_lost_state_and_a_replay_issues_the_same() -> None:
    """A driftline that lost its state counts from its commands' time again, above every older
    sequence; the same alerts always give the same sequences (a replay decides the same)."""
    def run() -> list[int]:
        p = BreakerPolicy(ttl=3_600_000, max_open=5)
        out = p.on_alert(_alert("a1", "fraud", "firing", "new"), "circuit_break")
        out += p.on_alert(_alert("a1", "fraud", "firing", "repeat"), "circuit_break")  # same window: one more
        return [c.sequence for c in out if c.sequence is not None]

    first = run()
    assert first == run() and first[0] < first[1]
    fresh = BreakerPolicy(ttl=3_600_000, max_open=5)  # no memory of the above
    later = fresh.on_alert(_alert("a9", "fraud", "firing", "new").model_copy(update={"window_end": 3_600_001}), "circuit_break")
    assert later[0].sequence is not None and later[0].sequence > max(first)


def test_commands_without_a_sequence_are_remembered_within_a_bound() -> None:
    from stream.subscriber import UNSEQUENCED

    brk, _ = commands()
    book = BreakerBook(clock=lambda: 4000.0)
    old = brk.model_copy(update={"sequence": None})
    assert book.apply(old) == "applied" and book.apply(old) == "duplicate"
    for i in range(UNSEQUENCED + 10):
        book.apply(old.model_copy(update={"command_id": f"c-{i}"}))
    assert len(book.unsequenced) == UNSEQUENCED


def test_a_feature_alert_never_breaks_whatever_its_severity_nor_a_volume_alert() -> None:
    p = BreakerPolicy(ttl=3_600_000, max_open=5)
    feature = _alert("f1", "fraud", "firing", "new").model_copy(update={"signal": "feature", "severity": "warning"})
    volume = _alert("v1", "fraud", "firing", "new").model_copy(update={"signal": "volume", "severity": "critical"})
    assert p.on_alert(feature, "circuit_break") == [] and p.on_alert(volume, "circuit_break") == []
    assert [c.action for c in p.on_alert(feature, "circuit_break", frozenset({"prediction", "feature"}))] == ["circuit_break"]


def test_a_rollback_names_the_version_to_serve_and_a_retrain_changes_nothing_in_serving() -> None:
    from stream.contract import Release

    p = BreakerPolicy(ttl=3_600_000, max_open=5)
    alert = _alert("a1", "fraud", "firing", "new")
    brk = p.on_alert(alert, "circuit_break")[0]
    rb = p.rollback(alert, "3.2.0", "3.1.0", Release(version="3.2.0", share=0.4, first_traffic=0, drift_started=0))
    rt = p.retrain(alert)
    book = BreakerBook(clock=lambda: 4000.0)
    assert [book.apply(c) for c in (brk, rb, rt)] == ["applied"] * 3
    assert book.is_open("fraud") and book.serving("fraud") == "3.1.0"  # a retrain request leaves both
    assert rt.training_window is not None and rt.training_window.start == alert.starts_at
    restarted = BreakerBook(clock=lambda: 4000.0)
    restarted.resume(orjson.loads(orjson.dumps(book.position())))
    assert restarted.serving("fraud") == "3.1.0" and restarted.is_open("fraud")
    assert {c.record_key() for c in (brk, rb, rt)} == {"fraud", "fraud#rollback", "fraud#retrain"}
