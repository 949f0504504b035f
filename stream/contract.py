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


#: The event times accepted at all, in epoch milliseconds: from 2000-01-01 up to (not including)
#: 2100-01-01 UTC. Anything outside is a producer's bug (seconds or microseconds sent as
#: milliseconds, an uninitialised clock), and far outside it would overflow int64 or the calendar's
#: dates; a clock narrows the upper end further (``defaults.max_future``).
MIN_TS = 946_684_800_000
MAX_TS = 4_102_444_800_000
TS_RANGE = "2000-01-01T00:00:00Z up to 2100-01-01T00:00:00Z"


def ts_range_error(ts: Any, span: str = TS_RANGE) -> str:
    """Why a time is outside the accepted range, in words (a dead letter's detail).

    >>> ts_range_error(1.7951864781e20)
    'ts 1.7951864781e+20 is outside the accepted range 2000-01-01T00:00:00Z up to 2100-01-01T00:00:00Z (epoch milliseconds: seconds or microseconds sent as milliseconds?)'
    """
    return f"ts {ts!r} is outside the accepted range {span} (epoch milliseconds: seconds or microseconds sent as milliseconds?)"


def _to_epoch_ms(value: Any) -> int:
    """An event's time: RFC 3339 with an explicit offset, or integer epoch milliseconds, within
    ``MIN_TS..MAX_TS``."""
    return _epoch_ms(value, MIN_TS, MAX_TS, TS_RANGE)


def _to_output_ms(value: Any) -> int:
    """A time in an alert or command (read back by subscribers and tests): any that prints as RFC 3339."""
    return _epoch_ms(value, 0, 253_402_300_800_000, "1970 up to 9999")


def _epoch_ms(value: Any, lo: int, hi: int, span: str) -> int:
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds, not a boolean")
    if isinstance(value, float) and value.is_integer():  # 1.7e12 is an integer too; 1e20 is out of range
        if not lo <= value < hi:
            raise ValueError(ts_range_error(value, span))
        value = int(value)
    if isinstance(value, int):
        if not lo <= value < hi:
            raise ValueError(ts_range_error(value, span))
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value!r} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value!r} has no UTC offset (add Z or +hh:mm)")
        try:
            ms = int(round(parsed.timestamp() * 1000))
        except (OverflowError, ValueError):  # year 1 with a positive offset is before year 1 in UTC
            ms = lo - 1
        if not lo <= ms < hi:
            raise ValueError(f"ts {value!r} is outside the accepted range {span}")
        return ms
    raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")


#: Bounds on what an event's text and maps may hold: everything here ends up in state, in alert
#: payloads and in Kafka records with a size limit. A segment value, a class label, a version and a
#: monitored text feature's value have at most ``MAX_TEXT`` characters; a segment at most
#: ``MAX_SEGMENT_KEYS`` keys; a probability map at most ``MAX_CLASSES`` classes.
MAX_TEXT = 256
MAX_SEGMENT_KEYS = 32
MAX_CLASSES = 1024


def _segment_value(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("segment values must be strings, integers or booleans")
    if len(value) > MAX_TEXT:
        raise ValueError(f"segment value longer than {MAX_TEXT} characters")
    return value


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
Text = Annotated[StrictStr, Field(max_length=MAX_TEXT)]
FeatureValue = Number | StrictStr | StrictBool | None
Timestamp = Annotated[
    int,
    BeforeValidator(_to_output_ms),
    PlainSerializer(ms_to_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class PredictionEvent(BaseModel):
    """One prediction, as a model server publishes it to the ``predictions`` topic."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: StrictStr = Field(min_length=1, max_length=256)
    model: StrictStr = Field(min_length=1, max_length=128)
    model_version: Text | None = None
    ts: EpochMs
    segment: Annotated[dict[Text, SegmentValue], Field(max_length=MAX_SEGMENT_KEYS)] = Field(default_factory=dict)
    prediction: Number | Text | Annotated[dict[Text, Number], Field(max_length=MAX_CLASSES)]
    features: dict[StrictStr, FeatureValue] = Field(default_factory=dict)
    label: Number | StrictStr | StrictBool | None = None
    # False: computed but not served (scoring in the dark while the model's breaker is open, or a
    # shadow): watched like any prediction, so that clean evidence can restore the model.
    served: StrictBool = True


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

    schema_version: int = Field(default=SCHEMA_VERSION, ge=0, lt=2**31)
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
    # "accepted": an operator accepted the drift as the new normal (``driftline accept``)
    notify_reason: Literal["new", "repeat", "resolved", "accepted"]
    summary: str
    # While an operator's silence holds (``driftline silence``): until when. A silenced alert is
    # published as any other, and acts on nothing.
    silenced_until: Timestamp | None = None


class CommandReason(BaseModel):
    alert_id: str  # (an operator's command id, for a restore that follows ``driftline accept``)
    fingerprint: str
    signal: Signal | Literal["operator"]
    summary: str


class Release(BaseModel):
    """A rollback's evidence: the release the drift started with, and when."""

    version: str  # the release rolled back
    # its share of the model's traffic in the latest closed window (None: it has served in the
    # open window only, where the fast lane saw the drift)
    share: float | None = Field(default=None, ge=0.0, le=1.0)
    first_traffic: Timestamp  # start of the first window it served in
    drift_started: Timestamp  # start of the window the drift was first seen in


class TrainingWindow(BaseModel):
    """What a retrain request suggests training on: the traffic since the drift started."""

    start: Timestamp
    end: Timestamp
    segments: list[dict[str, str]] = Field(default_factory=list)  # the drifted segments ([] for all)
    features: list[str] = Field(default_factory=list)  # the features that drifted with it


class Command(BaseModel):
    """A command published to ``model.control`` (compacted, key = model)."""

    schema_version: int = Field(default=SCHEMA_VERSION, ge=0, lt=2**31)
    command_id: str
    model: str
    action: Action
    reason: CommandReason
    issued_at: Timestamp
    expires_at: Timestamp | None
    signature: str | None = None
    model_version: str | None = None  # the challenger a verdict is about (promote / reject)
    # Per model, only grows (across restarts, rebalances and even a lost state: ``act.next_sequence``);
    # a subscriber never applies one at or below what it has applied. Absent from older producers.
    sequence: int | None = Field(default=None, ge=0, lt=2**53)
    target_version: str | None = None  # rollback: the version to serve (the last that served clean windows)
    release: Release | None = None  # rollback: its evidence
    training_window: TrainingWindow | None = None  # retrain: what to train on

    def record_key(self) -> str:
        """Its key on the compacted control topic: the model for breaker commands, ``model@version``
        for verdicts, ``model#rollback`` and ``model#retrain`` for those, so that none of them
        compacts another kind away (a restarted server still learns which version to serve)."""
        if self.action in VERDICTS:
            return f"{self.model}@{self.model_version}"
        if self.action in ("rollback", "retrain"):
            return f"{self.model}#{self.action}"
        return self.model


class Operation(BaseModel):
    """An operator's command to driftline itself, on the operator topic (key = model), signed like
    the commands driftline publishes. ``accept``: the drift now alerting is the new normal (the
    series alerting are rebased on it, their alerts resolve as ``accepted``, the breaker is
    restored); ``silence``: for ``duration_ms`` its alerts are marked silenced and act on nothing
    (0 ends a silence)."""

    schema_version: int = Field(default=SCHEMA_VERSION, ge=0, lt=2**31)
    command_id: str
    model: str
    action: Literal["accept", "silence"]
    segments: list[dict[str, str]] = Field(default_factory=list)  # accept: only these ([]: every segment)
    duration_ms: int = Field(default=0, ge=0, lt=2**53)  # silence: how long
    issued_at: Timestamp
    by: str = ""  # who (shown on /alerts and in the restore's reason)
    note: str = ""  # why
    signature: str | None = None


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
        "operation.schema.json": Operation.model_json_schema(mode="serialization"),
    }
