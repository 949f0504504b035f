"""What a model server does with the control topic: keep its breaker state, call back on changes.

``BreakerBook`` is the pure part (apply commands in order, ignore duplicates, expired or badly
signed ones); ``ControlSubscriber`` feeds it from Kafka with a read_committed consumer that starts
from the beginning of the compacted topic, so a restarted server learns the current state.

>>> book = BreakerBook(clock=lambda: 1000.0)
>>> cmd = Command.model_validate({"command_id": "c-1", "model": "fraud", "action": "circuit_break",
...     "reason": {"alert_id": "a-1", "fingerprint": "f", "signal": "prediction", "summary": "s"},
...     "issued_at": "2026-11-26T00:00:00Z", "expires_at": "2100-01-01T00:00:00Z"})
>>> book.apply(cmd), book.is_open("fraud"), book.apply(cmd)
('applied', True, 'duplicate')
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError
from pydantic import ValidationError

from .act import verify
from .contract import VERDICTS, Command

log = logging.getLogger("driftline.subscriber")


@dataclass
class BreakerBook:
    """Breaker state per model, from the commands seen so far."""

    clock: Callable[[], float] = time.time
    signing_key: bytes | None = None
    last: dict[str, Command] = field(default_factory=dict)
    verdicts: dict[tuple[str, str], str] = field(default_factory=dict)  # (model, version) -> promote | reject
    seen: set[str] = field(default_factory=set)
    error: str = ""  # why the last record ``receive`` refused was not a command

    def apply(self, cmd: Command) -> str:
        """Apply one command; return what happened: applied, duplicate, expired or rejected."""
        if self.signing_key is not None and not verify(cmd, self.signing_key):
            return "rejected"
        if cmd.command_id in self.seen:
            return "duplicate"
        self.seen.add(cmd.command_id)
        if cmd.expires_at is not None and cmd.expires_at <= self.clock() * 1000:
            return "expired"
        if cmd.action in VERDICTS:  # about a challenger version: leaves the breaker as it is
            self.verdicts[(cmd.model, cmd.model_version or "")] = cmd.action
            return "applied"
        self.last[cmd.model] = cmd
        return "applied"

    def receive(self, value: bytes | None, models: set[str] | None = None) -> tuple[str, Command | None]:
        """A control-topic record as it came, whatever its bytes: ("invalid", None) when it is not a
        command (why: ``error``), ("other model", command) when not one of ``models``, else what
        ``apply`` made of it, with the command."""
        try:
            cmd = Command.model_validate_json(value or b"")
        except ValidationError as exc:
            self.error = str(exc).splitlines()[0]
            return "invalid", None
        if models is not None and cmd.model not in models:
            return "other model", cmd
        return self.apply(cmd), cmd

    def is_open(self, model: str) -> bool:
        """True while the model's last command is an unexpired circuit break."""
        cmd = self.last.get(model)
        if cmd is None or cmd.action != "circuit_break":
            return False
        return cmd.expires_at is None or cmd.expires_at > self.clock() * 1000


class ControlSubscriber:
    """Follows the control topic for some models (or all) and calls ``on_command`` for each applied one."""

    def __init__(
        self,
        bootstrap: str,
        models: set[str] | None = None,
        on_command: Callable[[Command, BreakerBook], None] | None = None,
        topic: str = "model.control",
        signing_key: bytes | None = None,
        client: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.models = models
        self.on_command = on_command
        self.book = BreakerBook(clock=clock, signing_key=signing_key)
        self.ignored: list[tuple[str, str]] = []
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"driftline-subscriber-{uuid.uuid4().hex[:12]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                **(client or {}),
            },
            logger=log,
        )
        self.consumer.subscribe([topic])

    def poll(self, timeout: float = 1.0) -> list[Command]:
        applied = []
        for msg in self.consumer.consume(num_messages=500, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("control topic: %s", err.str())
                continue
            cmd = self.handle(msg.value())
            if cmd is not None:
                applied.append(cmd)
                if self.on_command is not None:
                    self.on_command(cmd, self.book)
        return applied

    def handle(self, value: bytes | None) -> Command | None:
        """One record of the control topic, whatever its bytes: the command if it was applied; else
        None, and why it was not in ``ignored`` (invalid, rejected, duplicate, expired), or not one
        of our models."""
        outcome, cmd = self.book.receive(value, self.models)
        if outcome == "applied":
            return cmd
        if outcome != "other model":
            self.ignored.append((outcome, cmd.command_id if cmd is not None else str(self.book.error)))
        return None

    def close(self) -> None:
        self.consumer.close()
