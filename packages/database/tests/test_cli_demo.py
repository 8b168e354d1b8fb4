"""``structum-db demo``: the Quick Start end to end, on embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.database import HealthThresholds
from structum_lab.plugins.database.cli import main


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("STRUCTUM_DATABASE__") or name in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    previous = get_config_provider()
    set_config_provider(None)
    yield
    set_config_provider(previous)


STEPS = [
    "create the users table",
    "insert a user with RETURNING",
    "query: SELECT * FROM users WHERE id = :user_id",
    "ORM session",
    "health check",
    "pool info",
]


def _assert_graded_by_latency(out: str) -> None:
    # The demo keeps the default threshold, so its grade depends on the latency it measured
    # (HEALTHY unless the machine stalled the probe): it must print the grade that latency earns.
    match = re.search(r"Status: HealthStatus\.(\w+)  Message: .+  Latency: ([\d.]+)ms", out)
    assert match is not None, out
    status, latency = match.group(1), float(match.group(2))
    limit = HealthThresholds().degraded_latency_ms
    if abs(latency - limit) > 0.01:  # the printed latency is rounded to 0.01 ms
        assert status == ("HEALTHY" if latency < limit else "DEGRADED"), out


def _assert_all_steps(out: str) -> None:
    for number, title in enumerate(STEPS, start=1):
        assert f"[{number}] {title}" in out
    assert "Found user: john_doe" in out
    _assert_graded_by_latency(out)
    assert "checked_out=0" in out
    assert re.search(r"^done: 6 steps in \d+ ms", out, re.M)


def test_demo_on_embedded_sqlite_in_cwd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    _assert_all_steps(out)
    demo_file = tmp_path / "structum-demo.sqlite3"
    assert f"an embedded SQLite file, {demo_file}" in out
    assert "Created user with ID: 1 (RETURNING id)" in out
    assert "note #1; 1 note(s) in demo_notes" in out

    # Again on the same file: the tables exist already, new rows are added.
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Created user with ID: 2" in out
    assert "2 note(s) in demo_notes" in out

    # closing(): a sqlite3 connection's own "with" commits but does not close (Python 3.13 warns).
    with closing(sqlite3.connect(demo_file)) as conn:
        users = conn.execute("SELECT id, username, email FROM users ORDER BY id").fetchall()
        notes = conn.execute("SELECT user_id FROM demo_notes ORDER BY id").fetchall()
    assert users == [(1, "john_doe", "john@example.com"), (2, "john_doe", "john@example.com")]
    assert notes == [(1,), (2,)]


def test_demo_as_a_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRUCTUM_")}
    run = subprocess.run(
        [sys.executable, "-m", "structum_lab.plugins.database.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    _assert_all_steps(run.stdout)
    assert (tmp_path / "structum-demo.sqlite3").is_file()


def test_demo_uses_the_configured_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "project" / "config" / "app"
    app.mkdir(parents=True)
    db_file = tmp_path / "configured.sqlite3"
    (app / "database.toml").write_text(f'[default]\nurl = "sqlite:///{db_file}"\npool_size = 2\n')
    assert main(["demo", "--root", str(tmp_path / "project")]) == 0
    out = capsys.readouterr().out
    _assert_all_steps(out)
    assert "the database of namespace 'database'" in out
    assert db_file.is_file()
    assert not (tmp_path / "structum-demo.sqlite3").exists()
    assert not (tmp_path / "project" / "structum-demo.sqlite3").exists()


def test_demo_sqlite_file_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "elsewhere.db"
    assert main(["demo", "--sqlite-file", str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    assert target.is_file()


def test_demo_reports_the_failing_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A users table of another shape: the INSERT of step 2 cannot work.
    with closing(sqlite3.connect(tmp_path / "structum-demo.sqlite3")) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    assert main(["demo"]) == 1
    captured = capsys.readouterr()
    assert "[2] insert a user with RETURNING" in captured.out
    assert "[3]" not in captured.out
    assert "step 2 (insert a user with RETURNING) failed" in captured.err
    assert "QueryError" in captured.err


def test_demo_refuses_the_psycopg_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", "postgres"]) == 2
    assert "SQLAlchemy backend" in capsys.readouterr().err


def test_demo_unreachable_database_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--url", "postgresql://u:s3cretpw@127.0.0.1:1/x"]) == 1
    captured = capsys.readouterr()
    assert "step 1" in captured.err
    assert "u:***@127.0.0.1:1" in captured.out + captured.err
    assert "s3cretpw" not in captured.out + captured.err


def test_demo_on_postgres(capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    url = pg_url
    # Its own schema, so the demo's users table cannot meet the other suites' tables.
    schema = f"cli_demo_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    scoped = f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    assert main(["exec", f"CREATE SCHEMA {schema}", "--url", url, "--backend", "sqlalchemy"]) == 0
    try:
        assert main(["demo", "--url", scoped]) == 0
        out = capsys.readouterr().out
        _assert_all_steps(out)
        assert "ok (postgresql)" in out
        assert "Created user with ID: 1 (RETURNING id)" in out
        query = f"SELECT COUNT(*) AS n FROM {schema}.demo_notes"
        assert main(["exec", query, "--url", url, "--backend", "sqlalchemy", "--json"]) == 0
        assert '"n": 1' in capsys.readouterr().out
    finally:
        main(["exec", f"DROP SCHEMA {schema} CASCADE", "--url", url, "--backend", "sqlalchemy"])
