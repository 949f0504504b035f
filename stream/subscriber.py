"""What a model server does with the control topic: keep its breaker state, call back on changes.

``BreakerBook`` is the pure part (apply commands in order, ignore duplicates, stale, expired or
badly signed ones); ``ControlSubscriber`` feeds it from Kafka with a read_committed consumer that
starts from the beginning of the compacted topic, so a restarted server learns the current state.

Why sequences: a signature says who wrote a command, not when. A signed ``restore`` copied back
onto the control topic becomes the model's latest record there (the topic is compacted by model)
and a restarted server would apply it. Each command carries its model's ``sequence``, which only
grows; the book applies none at or below the highest it applied for that model (verdicts too), so
its memory is one number (and the breaker command in force) per model, and ``position``/``resume``
carry them across a restart.

>>> book = BreakerBook(clock=lambda: 1000.0)
>>> def cmd(action, seq):
...     return Command.model_validate({"command_id": f"c-{seq}", "model": "fraud", "action": action,
...         "reason": {"alert_id": "a-1", "fingerprint": "f", "signal": "prediction", "summary": "s"},
...         "issued_at": "2026-11-26T00:00:00Z", "expires_at": None, "sequence": seq})
>>> book.apply(cmd("circuit_break", 7)), book.is_open("fraud"), book.apply(cmd("circuit_break", 7))
('applied', True, 'duplicate')
>>> book.apply(cmd("restore", 5)), book.is_open("fraud")  # an older restore, copied back
('stale', True)
>>> book.apply(cmd("restore", 9)), book.is_open("fraud")
('applied', False)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError
from pydantic import ValidationError

from .act import verify
from .contract import VERDICTS, Command

log = logging.getLogger("driftline.subscriber")

#: Commands without a sequence whose ids the book remembers (against duplicates), at most.
UNSEQUENCED = 4096


@dataclass
class BreakerBook:
    """Breaker state per model, from the commands seen so far."""

    clock: Callable[[], float] = time.time
    signing_key: bytes | None = None
    last: dict[str, Command] = field(default_factory=dict)
    verdicts: dict[tuple[str, str], str] = field(default_factory=dict)  # (model, version) -> promote | reject
    rollbacks: dict[str, Command] = field(default_factory=dict)  # model -> the latest rollback (the version to serve)
    retrains: dict[str, Command] = field(default_factory=dict)  # model -> the latest retrain request
    applied: dict[str, tuple[int, str]] = field(default_factory=dict)  # model -> highest sequence, its command id
    # ids of commands without a sequence (older producers), the most recent ``UNSEQUENCED`` of them
    unsequenced: OrderedDict[str, None] = field(default_factory=OrderedDict)
    error: str = ""  # why the last record ``receive`` refused was not a command

    def apply(self, cmd: Command) -> str:
        """Apply one command; return what happened: applied, duplicate, stale (at or below the
        model's highest sequence applied), expired or rejected."""
        if self.signing_key is not None and not verify(cmd, self.signing_key):
            return "rejected"
        if cmd.sequence is None:
            if cmd.command_id in self.unsequenced:
                return "duplicate"
            self.unsequenced[cmd.command_id] = None
            if len(self.unsequenced) > UNSEQUENCED:
                self.unsequenced.popitem(last=False)
        else:
            high = self.applied.get(cmd.model)
            if high is not None and cmd.sequence <= high[0]:
                return "duplicate" if cmd.command_id == high[1] else "stale"
            self.applied[cmd.model] = (cmd.sequence, cmd.command_id)  # an expired one still moves it on
        if cmd.expires_at is not None and cmd.expires_at <= self.clock() * 1000:
            return "expired"
        if cmd.action in VERDICTS:  # about a challenger version: leaves the breaker as it is
            self.verdicts[(cmd.model, cmd.model_version or "")] = cmd.action
            return "applied"
        if cmd.action == "rollback":  # which version to serve: the breaker stays as it is
            self.rollbacks[cmd.model] = cmd
            return "applied"
        if cmd.action == "retrain":  # for a training pipeline: nothing changes in serving
            self.retrains[cmd.model] = cmd
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

    def position(self) -> dict[str, Any]:
        """What a restarted server needs so that no older command fools it (JSON): per model, the
        highest sequence applied with its command id, and the breaker command in force. The
        breaker too: once the topic is compacted, an older command copied back may be all it holds
        for the model, and the break it superseded is gone from it."""
        return {"applied": {model: [seq, cid] for model, (seq, cid) in sorted(self.applied.items())},
                "last": {model: cmd.model_dump(mode="json") for model, cmd in sorted(self.last.items())},
                "rollbacks": {model: cmd.model_dump(mode="json") for model, cmd in sorted(self.rollbacks.items())}}

    def resume(self, position: dict[str, Any]) -> None:
        """Continue from ``position`` (as ``position`` wrote it): older commands are stale."""
        for model, (seq, cid) in position.get("applied", {}).items():
            have = self.applied.get(model)
            if have is None or int(seq) > have[0]:
                self.applied[str(model)] = (int(seq), str(cid))
        for kept, into in (("last", self.last), ("rollbacks", self.rollbacks)):
            for model, body in position.get(kept, {}).items():
                if str(model) not in into:
                    into[str(model)] = Command.model_validate(body)

    def serving(self, model: str) -> str | None:
        """The version to serve after a rollback (None: whatever the server would serve)."""
        cmd = self.rollbacks.get(model)
        return cmd.target_version if cmd is not None else None

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
        position_file: str | Path | None = None,
    ):
        self.models = models
        self.on_command = on_command
        self.book = BreakerBook(clock=clock, signing_key=signing_key)
        # Where the book's position is kept across restarts (written after each applied command).
        self.position_file = Path(position_file) if position_file is not None else None
        if self.position_file is not None and self.position_file.exists():
            self.book.resume(orjson.loads(self.position_file.read_bytes()))
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
        if applied and self.position_file is not None:
            self._keep_position(self.position_file)
        return applied

    def _keep_position(self, path: Path) -> None:
        """Written whole and renamed into place: a crash leaves the old position or the new one."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self.book.position()))
        tmp.replace(path)

    def handle(self, value: bytes | None) -> Command | None:
        """One record of the control topic, whatever its bytes: the command if it was applied; else
        None, and why it was not in ``ignored`` (invalid, rejected, duplicate, stale, expired), or not
        one of our models."""
        outcome, cmd = self.book.receive(value, self.models)
        if outcome == "applied":
            return cmd
        if outcome != "other model":
            self.ignored.append((outcome, cmd.command_id if cmd is not None else str(self.book.error)))
        return None

    def close(self) -> None:
        self.consumer.close()
