"""The published contract: schemas in schemas/ match the models; events validate as documented."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from stream.act import _alert
from stream.contract import Alert, Command, PredictionEvent, json_schemas

from .conftest import ROOT


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_schema_files_match_the_models(name: str) -> None:
    path = ROOT / "schemas" / name
    assert path.exists(), f"{path} missing: run `make schemas`"
    assert json.loads(path.read_text()) == json_schemas()[name], f"{name} is stale: run `make schemas`"


def test_event_accepts_rfc3339_with_offset_and_epoch_ms() -> None:
    a = PredictionEvent.model_validate({"event_id": "e", "model": "m", "ts": "2026-11-26T19:00:00+01:00", "prediction": 1})
    b = PredictionEvent.model_validate({"event_id": "e", "model": "m", "ts": 1795716000000, "prediction": 1})
    assert a.ts == b.ts == 1795716000000


@pytest.mark.parametrize(
    "event, field",
    [
        ({"event_id": "e", "model": "m", "ts": "2026-11-26T18:00:00", "prediction": 1}, "ts"),
        ({"event_id": "e", "model": "m", "ts": 1795716000000, "prediction": [1, 2]}, "prediction"),
        ({"event_id": "", "model": "m", "ts": 1795716000000, "prediction": 1}, "event_id"),
        ({"event_id": "e", "ts": 1795716000000, "prediction": 1}, "model"),
        ({"event_id": "e", "model": "m", "ts": 1795716000000, "prediction": 1, "segment": {"c": [1]}}, "segment"),
    ],
)
def test_event_rejects_with_the_field_named(event: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        PredictionEvent.model_validate(event)
    assert err.value.errors()[0]["loc"][0] == field


def test_alert_and_command_round_trip_through_json() -> None:
    alert = _alert("a-1", "fraud", "firing", "new")
    again = Alert.model_validate_json(alert.model_dump_json())
    assert again == alert
    assert json.loads(alert.model_dump_json())["window_end"] == "1970-01-01T01:00:00.000Z"
    cmd = Command.model_validate(
        {"command_id": "c", "model": "m", "action": "restore", "issued_at": 0, "expires_at": None,
         "reason": {"alert_id": "a", "fingerprint": "f", "signal": "volume", "summary": ""}}
    )
    assert Command.model_validate_json(cmd.model_dump_json()) == cmd
