"""Config: TOML validated at start, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "driftline.toml"
    p.write_text(text)
    return p


def test_defaults_and_model_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[defaults]\nwindow = "30m"\n[models.fraud]\ntimezone = "Europe/Berlin"\naction = "circuit_break"\n'))
    fraud = cfg.resolved("fraud")
    assert (fraud.window, fraud.timezone, fraud.action, fraud.holidays) == (1_800_000, "Europe/Berlin", "circuit_break", "US")
    assert cfg.kafka.input_topic == "predictions" and cfg.kafka.control_topic == "model.control"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[kafka]\nbootstrap_servers = "a:1"\ngroup_id = "g"\n')
    monkeypatch.setenv("DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS", "b:2")
    cfg = load_config(path)
    assert cfg.kafka.bootstrap_servers == "b:2"
    assert cfg.kafka.group_id == "g"


@pytest.mark.parametrize(
    "text, key",
    [
        ('[models.fraud]\ntimezone = "Mars/Olympus"\n', "models.fraud.timezone"),
        ('[defaults]\nwindow = "7m"\n', "defaults.window"),
        ('[defaults]\nallowed_lateness = "soon"\n', "defaults.allowed_lateness"),
        ('[models.fraud]\nacton = "circuit_break"\n', "models.fraud.acton"),
        ('[models.fraud]\naction = "page_someone"\n', "models.fraud.action"),
        ('[defaults]\nholidays = "XX"\n', "defaults.holidays"),
        ('[kafka]\nbatch_size = 0\n', "kafka.batch_size"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[kafka\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_shipped_example_config_is_valid() -> None:
    from .conftest import ROOT

    cfg = load_config(ROOT / "deploy" / "driftline.example.toml")
    assert cfg.resolved("fraud").action == "circuit_break"


def test_signing_key_from_the_environment_is_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_COMMANDS__SIGNING_KEY", "s3cret")
    cfg = load_config(write(tmp_path, "[models.fraud]\n"))
    assert cfg.commands.key() == b"s3cret"
    assert "s3cret" not in repr(cfg)
