"""``structum-db info``: resolved settings with every secret masked (connects to nothing)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.database.cli import main

SECRETS = ("s3cretpw", "filepw99", "argpw123", "tok-abc-987")


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("STRUCTUM_DATABASE__", "STRUCTUM_REPLICA_DB__")) or name in (
            "STRUCTUM_ENV",
            "ENV_FOR_DYNACONF",
        ):
            monkeypatch.delenv(name)
    previous = get_config_provider()
    set_config_provider(None)
    yield
    set_config_provider(previous)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The seed's Quick Start files, with secrets in every place a secret can hide."""
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(
        "[default]\n"
        'url = "postgresql://app:filepw99@127.0.0.1:1/app"\n'
        "pool_size = 7\n"
        "pool_timeout = 30\n"
        "echo = false\n"
        "[default.options]\n"
        "pool_use_lifo = true\n"
        'connect_args = { password = "argpw123", application_name = "cli-test" }\n'
        "[production]\n"
        "pool_size = 20\n"
    )
    (tmp_path / "config" / ".secrets.toml").write_text(
        '[database]\nurl = "postgresql://app:s3cretpw@127.0.0.1:1/production_db"\n'
    )
    return tmp_path


def _info_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in captured.out + captured.err
    doc = json.loads(captured.out)
    assert isinstance(doc, dict)
    return doc


def test_info_json_masks_and_shows_resolved_settings(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _info_json(capsys, ["info", "--root", str(project), "--backend", "sqlalchemy"])
    # The secrets file wins over database.toml (seed §3), and its password is masked.
    assert doc["url"] == "postgresql://app:***@127.0.0.1:1/production_db"
    assert doc["namespace"] == "database"
    assert doc["environment"] == "development"
    assert doc["backend"].endswith("SQLAlchemyDatabase")
    settings = doc["settings"]
    assert "url" not in settings
    assert settings["pool_size"] == 7
    assert settings["pool_timeout"] == 30.0
    assert settings["pool_use_lifo"] is True
    assert settings["connect_args"] == {"password": "***", "application_name": "cli-test"}
    assert any(".secrets.toml [database]" in source for source in doc["sources"])
    assert {"checked_out", "available", "total", "overflow"} <= set(doc["pool"])
    assert doc["pool"]["checked_out"] == 0


def test_info_environment_and_env_overrides(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRUCTUM_ENV", "production")
    doc = _info_json(capsys, ["info", "--root", str(project), "--backend", "sqlalchemy"])
    assert doc["environment"] == "production"
    assert doc["settings"]["pool_size"] == 20

    monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "9")
    monkeypatch.setenv("STRUCTUM_DATABASE__OPTIONS__CONNECT_ARGS__SERVICE_TOKEN", "tok-abc-987")
    doc = _info_json(capsys, ["info", "--root", str(project), "--backend", "sqlalchemy"])
    assert doc["settings"]["pool_size"] == 9
    assert doc["settings"]["connect_args"]["service_token"] == "***"
    assert any("STRUCTUM_DATABASE__POOL_SIZE" in source for source in doc["sources"])


def test_info_text_output(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--root", str(project), "--backend", "sqlalchemy"]) == 0
    captured = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in captured.out + captured.err
    lines = captured.out.splitlines()
    assert "namespace    database" in lines
    assert "url          postgresql://app:***@127.0.0.1:1/production_db" in lines
    assert any(line.split() == ["pool_size", "7"] for line in lines)
    assert any(line.strip().startswith("connect_args") and '"***"' in line for line in lines)
    assert "pool" in lines


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_info_with_url_option(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://u:s3cretpw@127.0.0.1:1/x"
    doc = _info_json(capsys, ["info", "--url", url, "--backend", backend])
    assert doc["url"] == "postgresql://u:***@127.0.0.1:1/x"
    assert doc["settings"] == {}
    assert doc["sources"] == ["--url option (configuration not read)"]


def test_info_password_in_query_string_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://u@127.0.0.1:1/x?password=s3cretpw&sslmode=disable"
    doc = _info_json(capsys, ["info", "--url", url, "--backend", "sqlalchemy"])
    assert "password=***" in doc["url"]


def test_info_other_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "replica_db.toml").write_text(
        f'[default]\nurl = "sqlite:///{tmp_path / "replica.sqlite3"}"\npool_size = 3\n'
    )
    argv = ["info", "--root", str(tmp_path), "--namespace", "replica_db"]
    doc = _info_json(capsys, argv)
    assert doc["namespace"] == "replica_db"
    assert doc["settings"]["pool_size"] == 3
    assert doc["url"].endswith("replica.sqlite3")


def test_info_invalid_setting_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(
        '[default]\nurl = "postgresql://u:s3cretpw@127.0.0.1:1/x"\npool_size = "abc"\n'
    )
    assert main(["info", "--root", str(tmp_path), "--backend", "sqlalchemy"]) == 2
    captured = capsys.readouterr()
    assert "pool_size" in captured.err
    assert "s3cretpw" not in captured.out + captured.err
