"""A model server's view of the control topic (pure part): duplicates, expiry, forgery."""

from __future__ import annotations

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
