"""The external contract: prediction events in, alerts and commands out (DESIGN.md).

The JSON Schemas in ``schemas/`` are generated from these models (``driftline schema --write``);
a test fails when the two drift apart.

>>> e = PredictionEvent.model_validate_json(
...     b'{"event_id": "e-1", "model": "fraud", "ts": "2026-11-26T18:00:00.123Z", "prediction": 0.87}')
>>> e.ts, e.segment
(1795716000123, {})
>>> PredictionEvent.model_validate({"event_id": "e", "model": "m", "ts": 1795716000123, "prediction": "spam"}).ts
1795716000123
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

SCHEMA_VERSION = 1


MAX_TS = 10**15  # epoch milliseconds: about the year 33658, and far inside int64


def _to_epoch_ms(value: Any) -> int:
    """RFC 3339 with an explicit offset, or integer epoch milliseconds."""
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds, not a boolean")
    if isinstance(value, int):
        if not -MAX_TS <= value <= MAX_TS:
            raise ValueError(f"ts {value} is out of range (epoch milliseconds within +-{MAX_TS})")
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value!r} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value!r} has no UTC offset (add Z or +hh:mm)")
        return int(round(parsed.timestamp() * 1000))
    raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")


def _segment_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise ValueError("segment values must be strings, integers or booleans")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinity are not allowed")
    if isinstance(value, int) and not isinstance(value, bool) and not -1.7976931348623157e308 <= value <= 1.7976931348623157e308:
        raise ValueError("number too large for a float")
    return value


def ms_to_rfc3339(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC string.

    >>> ms_to_rfc3339(1795716000123)
    '2026-11-26T18:00:00.123Z'
    """
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


EpochMs = Annotated[
    int,
    BeforeValidator(_to_epoch_ms),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
                {"type": "integer", "description": "epoch milliseconds"},
            ]
        }
    ),
]
SegmentValue = Annotated[str, BeforeValidator(_segment_value), WithJsonSchema({"type": ["string", "integer", "boolean"]})]
Number = Annotated[StrictFloat | StrictInt, BeforeValidator(_finite)]
FeatureValue = Number | StrictStr | StrictBool | None
Timestamp = Annotated[
    int,
    BeforeValidator(_to_epoch_ms),
    PlainSerializer(ms_to_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class PredictionEvent(BaseModel):
    """One prediction, as a model server publishes it to the ``predictions`` topic."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: StrictStr = Field(min_length=1, max_length=256)
    model: StrictStr = Field(min_length=1, max_length=128)
    model_version: StrictStr | None = None
    ts: EpochMs
    segment: dict[StrictStr, SegmentValue] = Field(default_factory=dict)
    prediction: Number | StrictStr | dict[StrictStr, Number]
    features: dict[StrictStr, FeatureValue] = Field(default_factory=dict)
    label: Number | StrictStr | StrictBool | None = None


Status = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]
Signal = Literal["prediction", "feature", "volume", "shadow"]
Action = Literal["circuit_break", "restore", "rollback", "retrain", "promote", "reject"]
#: Actions that are a shadow verdict on a challenger version, not a breaker command.
VERDICTS = ("promote", "reject")


class Histogram(BaseModel):
    """Bin edges (numeric; ``edges[i]..edges[i+1]``, open at both ends) or category labels, with counts."""

    edges: list[float] | None = None
    labels: list[str] | None = None
    counts: list[float]


class Summary(BaseModel):
    """What a window (``current``) or its baseline looked like."""

    count: float
    windows: int = 1
    mean: float | None = None
    quantiles: dict[str, float] | None = None
    histogram: Histogram | None = None


class ScorePoint(BaseModel):
    window_start: Timestamp
    score: float | None
    threshold: float | None
    count: float


class History(BaseModel):
    """The zoom-out: the last 24 h of this series, and the same calendar slot in past weeks."""

    recent: list[ScorePoint]
    same_slot: list[ScorePoint]


class BaselineInfo(BaseModel):
    slot: str
    kind: Literal["hour_of_week", "holiday", "day_type_hour", "recent"]
    windows: int
    confidence: Literal["high", "low"]


class Alert(BaseModel):
    """An alert transition published to ``drift.alerts`` (key = fingerprint)."""

    schema_version: int = SCHEMA_VERSION
    alert_id: str
    fingerprint: str
    status: Status
    severity: Severity
    model: str
    model_version: str | None = None
    segment: dict[str, str]
    segments: list[dict[str, str]] | None = None
    signal: Signal
    features: list[str] = Field(default_factory=list)
    feature_groups: list[list[str]] = Field(default_factory=list)
    test: str = "js_divergence"
    context: str
    window_start: Timestamp
    window_end: Timestamp
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    score: float
    threshold: float
    baseline: Summary
    current: Summary
    baseline_info: BaselineInfo
    history: History
    notify_reason: Literal["new", "repeat", "resolved"]
    summary: str


class CommandReason(BaseModel):
    alert_id: str
    fingerprint: str
    signal: Signal
    summary: str


class Command(BaseModel):
    """A command published to ``model.control`` (compacted, key = model)."""

    schema_version: int = SCHEMA_VERSION
    command_id: str
    model: str
    action: Action
    reason: CommandReason
    issued_at: Timestamp
    expires_at: Timestamp | None
    signature: str | None = None
    model_version: str | None = None  # the challenger a verdict is about (promote / reject)

    def record_key(self) -> str:
        """Its key on the compacted control topic: the model for breaker commands, ``model@version``
        for verdicts, so that a verdict never compacts a breaker command away."""
        return f"{self.model}@{self.model_version}" if self.action in VERDICTS else self.model


class DeadLetter(BaseModel):
    """Headers and body of a dead-letter record (the value is the original bytes, untouched)."""

    reason: str
    detail: str
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas, by file name."""
    return {
        "prediction_event.schema.json": PredictionEvent.model_json_schema(mode="validation"),
        "alert.schema.json": Alert.model_json_schema(mode="serialization"),
        "command.schema.json": Command.model_json_schema(mode="serialization"),
    }
