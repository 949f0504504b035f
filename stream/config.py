"""Configuration: a TOML file validated by pydantic; ``DRIFTLINE_*`` environment variables override it.

Nested keys use a double underscore: ``DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``.
Unknown keys are errors, so a typo fails at start naming the key.

>>> parse_duration("1h"), parse_duration("10m"), parse_duration("90s"), parse_duration("2d")
(3600000, 600000, 90000, 172800000)
"""

from __future__ import annotations

import math
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the reason."""


def parse_duration(value: Any) -> int:
    """A duration like ``"1h"``, ``"10m"``, ``"1h30m"`` or a number of seconds, in milliseconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '1h' or '10m'")
    if isinstance(value, int | float):
        return int(value * 1000)
    if not isinstance(value, str):
        raise ValueError("expected a duration like '1h' or '10m'")
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", value.strip())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", "", value).strip():
        raise ValueError(f"{value!r} is not a duration (use e.g. '1h', '10m', '30s', '1h30m')")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


Duration = Annotated[int, BeforeValidator(parse_duration)]


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name like 'Europe/Berlin')") from None
    return value


def _check_country(value: str | None) -> str | None:
    if value in (None, "", "none"):
        return value
    import holidays

    try:
        holidays.country_holidays(value)
    except NotImplementedError:
        raise ValueError(f"unknown holiday country {value!r} (use an ISO code like 'US' or 'DE')") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaConfig(_Strict):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "driftline"
    input_topic: str = "predictions"
    alerts_topic: str = "drift.alerts"
    control_topic: str = "model.control"
    dead_letter_topic: str = "predictions.dlq"
    state_topic: str = "driftline.state"
    # operators' commands to driftline itself (``driftline accept`` / ``silence``), read by the model
    # stage; default ``{group_id}.operator``: one deployment's operators never reach another's
    operator_topic: str | None = None
    # Internal: window reports from the series stage to the model stage (default GROUP_ID.verdicts).
    verdicts_topic: str | None = None
    # Internal: per-model parameters every series task shares, decided by the model stage
    # (compacted, keyed by model; default GROUP_ID.params).
    params_topic: str | None = None
    # Static group membership: a restarted process with the same id gets its partitions back at
    # once instead of after the session timeout (set one per process, e.g. the pod name).
    instance_id: str | None = None
    session_timeout: Duration = parse_duration("45s")
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    # A transaction (outputs, changed state, offsets) this often: alerts reach the topics this late
    # at most, and a crash redoes at most this much work. Stretched when state is slow to write.
    commit_interval: Duration = parse_duration("2s")
    poll_timeout: float = Field(default=0.5, gt=0)
    # librdkafka settings passed through as they are (security.protocol, sasl.*, ssl.*, ...).
    client: dict[str, str | int | bool] = Field(default_factory=dict)

    def verdicts(self) -> str:
        """The internal topic from the series stage to the model stage."""
        return self.verdicts_topic or f"{self.group_id}.verdicts"

    def operator(self) -> str:
        """The topic of operators' commands to this deployment (``driftline accept`` / ``silence``)."""
        return self.operator_topic or f"{self.group_id}.operator"

    def params(self) -> str:
        """The internal topic from the model stage to every series task (broadcast)."""
        return self.params_topic or f"{self.group_id}.params"


def _check_dates(value: dict[str, str]) -> dict[str, str]:
    for day in value:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"holiday_dates key {day!r} is not a date (use 'YYYY-MM-DD')") from None
    return value


Step = Literal["rollback", "circuit_break", "retrain"]
#: The response's steps in the order they escalate (``ResponseConfig``).
LADDER: tuple[Step, ...] = ("rollback", "circuit_break", "retrain")


class ResponseConfig(_Strict):
    """What a firing alert of each signal may do, for a model whose ``action`` is ``circuit_break``:
    its steps, in the order they escalate. ``rollback`` when a new version's release is behind the
    drift (once per release); ``circuit_break`` when there is none, or the drift outlived the
    rollback, restored when the alert resolves; ``retrain`` once the drift has lasted
    ``retrain_after``. A signal with no steps never acts (docs/choosing.md)."""

    prediction: list[Step] = Field(default_factory=lambda: list(LADDER))
    # a traffic drop or surge is news about the traffic, not a wrong model; one that starts as a
    # release takes traffic (a version that crashes) is the release's
    volume: list[Step] = Field(default_factory=lambda: list(LADDER[:1]))  # rollback
    # the inputs moved and the predictions did not follow: the model copes (listing steps here makes
    # feature alerts warnings, so they can act)
    feature: list[Step] = Field(default_factory=list)

    @field_validator("prediction", "volume", "feature")
    @classmethod
    def _in_order(cls, v: list[Step]) -> list[Step]:
        if len(set(v)) < len(v) or v != sorted(v, key=LADDER.index):
            raise ValueError(f"steps escalate in the order {', '.join(LADDER)}: list some of them, each once, "
                             f"in that order (got {v})")
        return v

    def steps(self, signal: str) -> list[Step]:
        return list(getattr(self, signal, []))


class Defaults(_Strict):
    window: Duration = parse_duration("1h")
    timezone: str = "UTC"
    holidays: str = "US"
    allowed_lateness: Duration = parse_duration("10m")
    # "weekly": compare with the same local weekday and hour (holidays apart); "none": with the last
    # ``baseline_windows`` windows whatever their time (what calendar-blind tools do; for comparison).
    calendar: Literal["weekly", "none"] = "weekly"
    holiday_dates: dict[str, str] = Field(default_factory=dict)
    # Working days that join a holiday to a weekend (at most this many in a row), and every day
    # between two holidays at most a week apart (Christmas to New Year), are bridge days, a class
    # of their own (stream.calendar).
    bridge_days: int = Field(default=1, ge=0, le=3)
    shadow: ShadowConfig | None = None
    min_holiday_windows: int = Field(default=2, ge=1)
    action: Literal["alert", "circuit_break"] = "alert"
    baseline_windows: int = Field(default=8, ge=2, le=2000)
    min_baseline_windows: int = Field(default=3, ge=2)
    min_window_events: int = Field(default=30, ge=1)
    false_alarms_per_4_weeks: float = Field(default=1.0, gt=0)
    pending_windows: int = Field(default=2, ge=1)
    resolve_windows: int = Field(default=3, ge=1)
    adapt_after: Duration = parse_duration("14d")
    repeat_interval: Duration = parse_duration("4h")
    break_ttl: Duration = parse_duration("24h")
    # A prediction drift still firing this long after it started, with no release behind it, asks
    # for a retrain (a changed world: docs/choosing.md)
    retrain_after: Duration = parse_duration("2d")
    response: ResponseConfig = Field(default_factory=ResponseConfig)
    max_open_breakers: int = Field(default=3, ge=0)
    unknown_models: Literal["reject", "register"] = "reject"
    feature_severity: Literal["info", "warning"] = "info"
    group_min_segments: int = Field(default=3, ge=2)
    max_series_per_model: int = Field(default=10_000, ge=1)
    series_ttl: Duration = parse_duration("35d")  # a series silent this long is forgotten
    max_future: Duration = parse_duration("1h")
    # Without a clock (replay): an event more than this after the rest of its batch is a stray
    # (``future``), when only a few of the batch's events lie that far (stream.window.stray_limit).
    replay_gap: Duration = parse_duration("7d")
    max_event_bytes: int = Field(default=65536, ge=256)
    # Decode batches with the compiled decoder when it is built (the same output; false: Python only)
    native_decoder: bool = True
    # The fast lane (stream/series/lane.py): every series' open window tested event by event, so a
    # broken model (invalid, stuck, far off its baseline) breaks in seconds, not at window close.
    fast_lane: bool = True

    _tz = field_validator("timezone")(_check_timezone)
    _country = field_validator("holidays")(_check_country)
    _dates = field_validator("holiday_dates")(_check_dates)

    @field_validator("window")
    @classmethod
    def _window_divides_a_day(cls, v: int) -> int:
        if v <= 0 or 86_400_000 % v:
            raise ValueError("window must divide a day evenly (e.g. '15m', '1h', '6h', '1d')")
        return v


class ShadowConfig(_Strict):
    """Shadow mode for one model: events whose ``model_version`` is not ``champion`` are a challenger's
    predictions, compared with the champion's per segment and window (stream.shadow)."""

    champion: str  # the version in service; events without a model_version count as it
    min_events: int = Field(default=100, ge=10)  # per version, segment and window, to compare at all
    min_divergence: float = Field(default=0.02, ge=0.0)  # JS divergence (bits) that matters at any volume
    verdict_after: int = Field(default=24, ge=1)  # windows compared before a verdict
    publish_verdict: bool = False  # publish "promote" / "reject" on the control topic


class ModelConfig(_Strict):
    timezone: str | None = None
    holidays: str | None = None
    segment_by: list[str] | None = None
    features: list[str] = Field(default_factory=list)
    action: Literal["alert", "circuit_break"] | None = None
    holiday_dates: dict[str, str] = Field(default_factory=dict)
    shadow: ShadowConfig | None = None
    # [low, high]: a numeric prediction outside it is invalid (dead-lettered, and counted as such)
    prediction_range: tuple[float, float] | None = None
    response: ResponseConfig | None = None  # (the defaults' when absent)

    _tz = field_validator("timezone")(_check_timezone)
    _country = field_validator("holidays")(_check_country)
    _dates = field_validator("holiday_dates")(_check_dates)

    @field_validator("prediction_range")
    @classmethod
    def _range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1]):
            raise ValueError("prediction_range must be two finite numbers [low, high] with low < high")
        return v


class CommandsConfig(_Strict):
    """Commands on the control topic. With a signing key (shared with the model servers), every
    command carries an HMAC-SHA256 signature and subscribers reject unsigned or forged ones."""

    signing_key: SecretStr | None = None

    def key(self) -> bytes | None:
        return self.signing_key.get_secret_value().encode() if self.signing_key else None


class MetricsConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class AlertmanagerConfig(_Strict):
    """An optional sink: alert transitions also go to Alertmanager's API v2 (empty ``url``: off)."""

    url: str = ""  # e.g. "http://alertmanager:9093"
    resend_interval: Duration = 60_000  # firing alerts are re-sent this often (Alertmanager expires silent ones)
    labels: dict[str, str] = Field(default_factory=dict)  # added to every alert, e.g. team = "ml"
    page_url: str = ""  # public base of this service's /alerts pages, for each alert's link

    @field_validator("url", "page_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")


class Config(BaseSettings):
    """The whole service configuration."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides what the TOML file (passed as init values) says.
        return (env_settings, init_settings)

    def resolved(self, model: str) -> ResolvedModel:
        m = self.models.get(model, ModelConfig())
        d = self.defaults
        return ResolvedModel(
            name=model,
            timezone=m.timezone or d.timezone,
            holidays=m.holidays if m.holidays is not None else d.holidays,
            segment_by=m.segment_by,
            features=m.features,
            action=m.action or d.action,
            window=d.window,
            calendar=d.calendar,
            holiday_dates={**d.holiday_dates, **m.holiday_dates},
            bridge_days=d.bridge_days,
            shadow=m.shadow,
            prediction_range=m.prediction_range,
            response=m.response or d.response,
        )


class ResolvedModel(BaseModel):
    """A model's settings with the defaults filled in."""

    model_config = ConfigDict(frozen=True)

    name: str
    timezone: str
    holidays: str
    segment_by: list[str] | None
    features: list[str]
    action: Literal["alert", "circuit_break"]
    window: int
    calendar: Literal["weekly", "none"] = "weekly"
    holiday_dates: dict[str, str] = Field(default_factory=dict)
    bridge_days: int = 1
    shadow: ShadowConfig | None = None
    prediction_range: tuple[float, float] | None = None
    response: ResponseConfig = Field(default_factory=ResponseConfig)


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{key}: {msg.removeprefix('Value error, ')}")
    return "; ".join(lines)


def load_config(path: str | Path | None = None) -> Config:
    """Read ``path`` (TOML), apply environment overrides and validate; raise ConfigError naming the key."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return Config(**data)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid config: {_describe(exc)}") from None
