"""Pure logic of ``structum-db`` (no database): options, parameters, tables, masking, errors."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typing_extensions

from structum_lab.config import DictConfigProvider, get_config_provider, set_config_provider
from structum_lab.plugins.database.cli import __version__, build_parser, main
from structum_lab.plugins.database.cli._app import _MaskingHandler, parse_params
from structum_lab.plugins.database.cli._output import (
    Printer,
    format_table,
    mask_settings,
    secrets_in,
    to_json,
)
from structum_lab.plugins.database.cli._resolve import CliError

SECRET_URL = "postgresql://u:s3cretpw@127.0.0.1:1/x"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_registered_provider() -> object:
    previous = get_config_provider()
    set_config_provider(None)
    yield
    set_config_provider(previous)


# -- help and usage ------------------------------------------------------------------------
def test_help_exits_zero_and_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("health", "info", "exec", "demo"):
        assert command in out
    assert "exit status" in out


@pytest.mark.parametrize("command", ["health", "info", "exec", "demo"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert f"structum-db {command}" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"structum-db {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_common_options_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--namespace", "replica_db", "--backend", "sqlalchemy", "info"])
    after = parser.parse_args(["info", "--namespace", "replica_db", "--backend", "sqlalchemy"])
    default = parser.parse_args(["info"])
    assert (before.namespace, before.backend) == ("replica_db", "sqlalchemy")
    assert (after.namespace, after.backend) == ("replica_db", "sqlalchemy")
    assert (default.namespace, default.backend, default.url, default.root) == (
        "database",
        "auto",
        None,
        None,
    )


def _bare_python_env(tmp_path: Path) -> dict[str, str]:
    """Only core (and observability), config, the CLI, typing_extensions: no backend, no driver."""
    libs = tmp_path / "libs"
    libs.mkdir()
    shutil.copy(typing_extensions.__file__, libs / "typing_extensions.py")
    src = [
        REPO / "packages/database/src",
        REPO / "packages/database-core/src",
        REPO / "packages/observability/src",
        REPO / "packages/config/src",
        libs,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRUCTUM_")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, src))
    return env


def test_help_and_missing_backend_without_any_backend_installed(tmp_path: Path) -> None:
    # -S: no site-packages at all, so no installed backend (editable or not) can be found.
    cmd = [sys.executable, "-S", "-m", "structum_lab.plugins.database.cli"]
    env = _bare_python_env(tmp_path)
    shown = subprocess.run(
        [*cmd, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "health" in shown.stdout

    for backend in ("auto", "sqlalchemy", "postgres"):
        run = subprocess.run(
            [*cmd, "health", "--url", SECRET_URL, "--backend", backend],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        extra = "postgres" if backend == "postgres" else "sqlalchemy"
        assert f'pip install "structum-database[{extra}]"' in run.stderr
        assert "s3cretpw" not in run.stdout + run.stderr


# -- configuration errors --------------------------------------------------------------------
def test_no_url_configured_names_namespace_and_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRUCTUM_REPLICA_DB__URL", raising=False)
    assert main(["info", "--root", str(tmp_path), "--namespace", "replica_db"]) == 2
    err = capsys.readouterr().err
    assert "'replica_db' has no 'url'" in err
    assert "replica_db.toml" in err
    assert "STRUCTUM_REPLICA_DB__URL" in err
    assert "--url" in err


def test_malformed_toml_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text('[default]\nurl = "sqlite://"\npool_size = = 3\n')
    assert main(["health", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "database.toml" in err
    assert "line 3" in err


def test_missing_root_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--root", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_registered_provider_is_used_and_left_in_place(
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider = DictConfigProvider({"other": {"url": "sqlite://"}})
    set_config_provider(provider)
    assert main(["info"]) == 2  # the registered provider has no 'database' namespace
    assert "DictConfigProvider" in capsys.readouterr().err
    assert get_config_provider() is provider


# -- --param -----------------------------------------------------------------------------------
def test_parse_params_strings_and_json() -> None:
    params = parse_params(["name=O'Brien", "code=007", "n:=42", "ok:=true", "none:=null", "e="])
    assert params == {"name": "O'Brien", "code": "007", "n": 42, "ok": True, "none": None, "e": ""}
    assert parse_params(["expr=a=b"]) == {"expr": "a=b"}


@pytest.mark.parametrize("item", ["novalue", "1x=3", "n:=not json", "=3"])
def test_parse_params_rejects_malformed(item: str) -> None:
    with pytest.raises(CliError):
        parse_params([item])


def test_bad_param_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", "SELECT 1", "--url", "sqlite://", "--param", "oops"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


# -- tables and JSON ---------------------------------------------------------------------------
def test_format_table_aligns_and_right_aligns_numbers() -> None:
    table = format_table(
        [
            {"id": 1, "username": "john_doe", "score": decimal.Decimal("1.50"), "note": None},
            {"id": 12, "username": "al", "score": decimal.Decimal("10.25"), "note": "a\nb"},
        ]
    )
    assert table.splitlines() == [
        "id | username | score | note",
        "---+----------+-------+-----",
        " 1 | john_doe |  1.50 | NULL",
        "12 | al       | 10.25 | a\\nb",
    ]


def test_format_table_explicit_columns_and_empty() -> None:
    assert format_table([], ["id", "name"]).splitlines() == ["id | name", "---+-----"]
    assert format_table([]) == ""


def test_to_json_handles_database_types() -> None:
    value = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "price": decimal.Decimal("9.99"),
        "raw": b"\x00\x01",
    }
    assert json.loads(to_json(value)) == {
        "when": "2024-01-02T03:04:05",
        "price": "9.99",
        "raw": "AAE=",
    }


# -- masking -----------------------------------------------------------------------------------
def test_mask_settings_masks_urls_and_secret_keys() -> None:
    masked = mask_settings(
        {
            "url": SECRET_URL,
            "pool_size": 5,
            "connect_args": {"password": "pw-in-args", "application_name": "x"},
            "api_token": "tok-123",
            "client_secret": "",
        }
    )
    assert masked == {
        "url": "postgresql://u:***@127.0.0.1:1/x",
        "pool_size": 5,
        "connect_args": {"password": "***", "application_name": "x"},
        "api_token": "***",
        "client_secret": "",
    }
    assert "s3cretpw" not in json.dumps(masked)


def test_printer_scrubs_known_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    printer = Printer()
    printer.add_secrets(secrets_in({"url": SECRET_URL, "options": {"token": "tok-123"}}))
    printer.out("driver said: password authentication failed (s3cretpw) tok-123")
    printer.err(f"could not parse {SECRET_URL}")
    captured = capsys.readouterr()
    assert "s3cretpw" not in captured.out + captured.err
    assert "tok-123" not in captured.out
    assert "***" in captured.out


# -- logging -----------------------------------------------------------------------------------
def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_log_handler_is_quiet_by_default_and_masks() -> None:
    printer = Printer()
    printer.add_secrets(secrets_in(SECRET_URL))
    quiet = _MaskingHandler(printer, 0)
    assert not quiet.filter(_record("psycopg.pool", logging.WARNING, "error connecting"))
    assert quiet.filter(_record("psycopg.pool", logging.ERROR, "pool failed"))
    assert quiet.filter(_record("structum_lab.plugins.database", logging.WARNING, "leak"))
    assert not quiet.filter(_record("structum_lab.plugins.database", logging.INFO, "ok"))
    verbose = _MaskingHandler(printer, 1)
    assert verbose.filter(_record("psycopg.pool", logging.INFO, "x"))
    assert not verbose.filter(_record("psycopg.pool", logging.DEBUG, "x"))
    assert _MaskingHandler(printer, 2).filter(_record("sqlalchemy", logging.DEBUG, "x"))
    text = quiet.format(_record("psycopg", logging.ERROR, f"cannot reach {SECRET_URL} (s3cretpw)"))
    assert "s3cretpw" not in text
    assert text.startswith("structum-db: psycopg: ERROR: cannot reach postgresql://u:***@")
