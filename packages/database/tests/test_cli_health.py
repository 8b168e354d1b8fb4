"""``structum-db health``: exit codes and IETF health+json, against real databases."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import DictConfigProvider, get_config_provider, set_config_provider
from structum_lab.plugins.database import HealthThresholds
from structum_lab.plugins.database.cli import main

UNREACHABLE = "postgresql://u:s3cretpw@127.0.0.1:1/x"
# A healthy grade needs the probe under the latency threshold, and a fresh CLI run's probe includes
# connecting (its time varies with machine load). Above the check's own --timeout (10 s), no probe
# that answers can cross it: the "healthy" tests then depend on the database only.
NEVER_SLOW = ["--degraded-latency-ms", "60000"]


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("STRUCTUM_DATABASE__") or name in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF"):
            monkeypatch.delenv(name)
    previous = get_config_provider()
    set_config_provider(None)
    yield
    set_config_provider(previous)


def _health_json(out: str) -> dict[str, object]:
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def _assert_ietf_shape(doc: dict[str, object], status: str, component: str) -> dict[str, object]:
    assert doc["status"] == status
    checks = doc["checks"]
    assert isinstance(checks, dict)
    assert list(checks) == [f"{component}:responseTime"]
    (check,) = checks[f"{component}:responseTime"]
    assert check["status"] == status
    assert check["observedUnit"] == "ms"
    assert isinstance(check["observedValue"], (int, float))
    assert check["observedValue"] >= 0
    assert check["componentType"] == "datastore"
    return check  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_healthy_postgres_exits_0(
    backend: str, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    assert main(["health", "--url", url, "--backend", backend, *NEVER_SLOW]) == 0
    out = capsys.readouterr().out
    assert out.startswith("database: healthy in ")
    assert "Database connection OK" in out


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_healthy_postgres_json(
    backend: str, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    assert main(["health", "--json", "--url", url, "--backend", backend, *NEVER_SLOW]) == 0
    check = _assert_ietf_shape(_health_json(capsys.readouterr().out), "pass", "database")
    assert check["output"] == "Database connection OK"
    pool = check["pool"]
    assert isinstance(pool, dict)
    assert pool["checked_out"] == 0


def test_healthy_from_config_files_named_after_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "replica_db.toml").write_text(
        f'[default]\nurl = "{url}"\npool_size = 2\n'
        "health_thresholds = { degraded_latency_ms = 60000.0 }\n"
    )
    argv = ["health", "--json", "--root", str(tmp_path), "--namespace", "replica_db"]
    assert main(argv) == 0
    _assert_ietf_shape(_health_json(capsys.readouterr().out), "pass", "replica_db")


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_unreachable_exits_2_masked(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--url", UNREACHABLE, "--backend", backend]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("database: unhealthy ")
    assert "u:***@127.0.0.1:1" in captured.out
    assert "s3cretpw" not in captured.out + captured.err


def test_unreachable_json_is_fail_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--json", "--url", UNREACHABLE, "--backend", "sqlalchemy"]) == 2
    captured = capsys.readouterr()
    check = _assert_ietf_shape(_health_json(captured.out), "fail", "database")
    assert "unreachable" in str(check["output"])
    assert "s3cretpw" not in captured.out + captured.err


def test_wrong_password_is_unhealthy_and_masked(
    capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    scheme, rest = url.split("://", 1)
    host = rest.split("@", 1)[-1]
    # A role that does not exist: refused whatever the server's authentication method.
    bad = f"{scheme}://no_such_role_cli:s3cretpw@{host}"
    assert main(["health", "--url", bad, "--backend", "sqlalchemy"]) == 2
    captured = capsys.readouterr()
    assert "unhealthy" in captured.out
    assert "s3cretpw" not in captured.out + captured.err


def test_no_answer_within_timeout_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    # A socket that listens but never accepts: the connect hangs, as behind a firewall.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        url = f"postgresql://u:s3cretpw@127.0.0.1:{port}/x"
        argv = ["health", "--json", "--timeout", "0.5", "--url", url, "--backend", "sqlalchemy"]
        assert main(argv) == 2
    captured = capsys.readouterr()
    check = _assert_ietf_shape(_health_json(captured.out), "fail", "database")
    assert "no answer within 0.5s" in str(check["output"])
    assert "s3cretpw" not in captured.out + captured.err


def test_degraded_by_latency_flag_exits_1(capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    url = pg_url
    argv = ["health", "--url", url, "--backend", "sqlalchemy", "--degraded-latency-ms", "0"]
    assert main(argv) == 1
    assert capsys.readouterr().out.startswith("database: degraded in ")
    assert main([*argv, "--json"]) == 1
    check = _assert_ietf_shape(_health_json(capsys.readouterr().out), "warn", "database")
    assert "latency" in str(check["output"])


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_degraded_by_configured_threshold(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(
        f'[default]\nurl = "{url}"\nhealth_thresholds = {{ degraded_latency_ms = 0.0 }}\n'
    )
    assert main(["health", "--json", "--root", str(tmp_path), "--backend", backend]) == 1
    _assert_ietf_shape(_health_json(capsys.readouterr().out), "warn", "database")


def test_degraded_with_a_registered_provider(
    capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    provider = DictConfigProvider(
        {"database": {"url": url, "health_thresholds": HealthThresholds(degraded_latency_ms=0.0)}}
    )
    set_config_provider(provider)
    assert main(["health", "--backend", "sqlalchemy"]) == 1
    assert "degraded" in capsys.readouterr().out
    assert get_config_provider() is provider


def test_sqlite_healthy_without_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    assert main(["health", "--url", url, *NEVER_SLOW]) == 0
    assert "healthy" in capsys.readouterr().out


def test_configuration_error_is_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["health", "--root", str(tmp_path)]) == 2
    assert "has no 'url'" in capsys.readouterr().err
    assert main(["health", "--json", "--root", str(tmp_path)]) == 2
    doc = _health_json(capsys.readouterr().out)
    assert doc["status"] == "fail"
    assert "has no 'url'" in str(doc["description"])
