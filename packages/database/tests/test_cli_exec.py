"""``structum-db exec``: tables, parameters, rowcount, JSON and masked errors on real databases."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import get_config_provider, set_config_provider
from structum_lab.plugins.database.cli import main

UNREACHABLE = "postgresql://u:s3cretpw@127.0.0.1:1/x"


@pytest.fixture(autouse=True)
def _no_registered_provider() -> Iterator[None]:
    previous = get_config_provider()
    set_config_provider(None)
    yield
    set_config_provider(previous)


@pytest.fixture
def sqlite_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path / 'exec.sqlite3'}"
    ddl = (
        "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, username VARCHAR(50), "
        "email VARCHAR(255), active BOOLEAN, score NUMERIC)"
    )
    assert main(["exec", ddl, "--url", url]) == 0
    assert capsys.readouterr().out == "OK\n"
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_insert_params_and_table(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    insert = "INSERT INTO users (username, email, active, score) VALUES (:u, :e, :a, :s)"
    code, out, _ = run(
        capsys, "exec", insert, "--url", sqlite_url, "-p", "u=john_doe", "-p", "e=john@example.com",
        "-p", "a:=true", "-p", "s:=12.5",
    )  # fmt: skip
    assert (code, out) == (0, "1 row affected\n")
    run(capsys, "exec", insert, "--url", sqlite_url, "-p", "u=al", "-p", "e=al@x", "-p", "a:=false",
        "-p", "s:=null")  # fmt: skip

    select = "SELECT id, username, email, score FROM users ORDER BY id"
    code, out, err = run(capsys, "exec", select, "--url", sqlite_url)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "id | username |      email       | score",
        "---+----------+------------------+------",
        " 1 | john_doe | john@example.com |  12.5",
        " 2 | al       | al@x             |  NULL",
        "(2 rows)",
    ]

    code, out, _ = run(
        capsys, "exec", "SELECT username FROM users WHERE id = :user_id", "--url", sqlite_url,
        "--param", "user_id=2",
    )  # fmt: skip
    assert (code, out.splitlines()) == (0, ["username", "--------", "al", "(1 row)"])


def test_dml_rowcount_and_returning(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b", "c"):
        run(capsys, "exec", "INSERT INTO users (username) VALUES (:n)", "--url", sqlite_url,
            "-p", f"n={name}")  # fmt: skip
    code, out, _ = run(
        capsys, "exec", "UPDATE users SET email = :e WHERE username <> :n", "--url", sqlite_url,
        "-p", "e=x@y", "-p", "n=a",
    )  # fmt: skip
    assert (code, out) == (0, "2 rows affected\n")
    code, out, _ = run(
        capsys, "exec", "DELETE FROM users WHERE username = 'c' RETURNING id, username",
        "--url", sqlite_url,
    )  # fmt: skip
    assert code == 0
    assert out.splitlines()[-2:] == ["(1 row)", "1 row affected"]
    assert " 3 | c" in out


def test_empty_select_shows_columns(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "exec", "SELECT id, username FROM users", "--url", sqlite_url)
    assert (code, out.splitlines()) == (0, ["id | username", "---+---------", "(0 rows)"])


def test_json_output(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "exec", "INSERT INTO users (username, score) VALUES ('j', 1.25)", "--url",
        sqlite_url)  # fmt: skip
    code, out, _ = run(
        capsys, "exec", "SELECT id, username, score FROM users", "--url", sqlite_url, "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["columns"] == ["id", "username", "score"]
    assert doc["rows"] == [{"id": 1, "username": "j", "score": 1.25}]
    assert "rowcount" in doc


def test_sql_from_stdin(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT 41 + 1 AS answer\n"))
    code, out, _ = run(capsys, "exec", "-", "--url", sqlite_url)
    assert (code, out.splitlines()) == (0, ["answer", "------", "    42", "(1 row)"])


def test_sql_error_exit_1_and_rolled_back(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "exec", "SELEC 1", "--url", sqlite_url)
    assert (code, out) == (1, "")
    assert "syntax error" in err
    assert "SQLSTATE 42" in err
    # A failing statement inside the transaction leaves nothing behind.
    code, _, err = run(
        capsys, "exec", "INSERT INTO users (id, username) VALUES (1, 'x'), (1, 'dup')",
        "--url", sqlite_url,
    )  # fmt: skip
    assert code == 1
    assert "IntegrityError" in err
    assert run(capsys, "exec", "SELECT COUNT(*) AS n FROM users", "--url", sqlite_url, "--json")[
        1
    ].count('"n": 0')


def test_missing_param_is_exit_1(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "exec", "SELECT * FROM users WHERE id = :id", "--url", sqlite_url)
    assert code == 1
    assert ":id" in err


def test_missing_params_are_named_with_the_option_to_pass(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "exec",
        "SELECT :a AS a, :b AS b, ':c' AS c, :a AS again",
        "--url",
        sqlite_url,
        "-p",
        "b=1",
    )
    assert (code, out) == (1, "")
    assert "uses :a but no value was given" in err
    assert "-p a=TEXT" in err


@pytest.mark.parametrize("text", ["SELECT 1\x00; DROP TABLE users", "\x00"])
def test_nul_on_stdin_is_refused_not_truncated(
    text: str, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, out, err = run(capsys, "exec", "-", "--url", sqlite_url)
    assert (code, out) == (2, "")
    assert "NUL character" in err
    # Nothing ran: the table is still there.
    assert run(capsys, "exec", "SELECT COUNT(*) AS n FROM users", "--url", sqlite_url)[0] == 0


# C0 and C1 controls, DEL, a bidirectional override: none reaches the terminal as it is.
CONTROLS = "\x1b[2J\x1b]0;owned\x07\x9b31m\x7f\u202e\x00\x08"


def _has_controls(text: str) -> bool:
    return any(
        (ord(ch) < 0x20 and ch not in "\n\t") or 0x7F <= ord(ch) <= 0x9F or ch == "\u202e"
        for ch in text
    )


def test_control_characters_from_the_database_are_escaped(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = ["-p", f"v:={json.dumps(CONTROLS)}"]
    code, out, err = run(capsys, "exec", 'SELECT :v AS "col\x1b[1m"', "--url", sqlite_url, *params)
    assert code == 0, err
    assert not _has_controls(out + err)
    assert "\\x1b[2J" in out
    code, out, _ = run(capsys, "exec", "SELECT :v AS v", "--url", sqlite_url, *params, "--json")
    assert code == 0
    assert not _has_controls(out)
    assert json.loads(out)["rows"] == [{"v": CONTROLS}]  # escaped, but still the same JSON value
    # Error text quoting a value goes through the same printer.
    code, _, err = run(capsys, "exec", 'SELECT * FROM "x\x1b[2J"', "--url", sqlite_url)
    assert code == 1
    assert not _has_controls(err)


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_unreachable_error_is_masked(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "exec", "SELECT 1", "--url", UNREACHABLE, "--backend", backend)
    assert code == 1
    assert "u:***@127.0.0.1:1" in err
    assert "s3cretpw" not in out + err


@pytest.mark.parametrize("backend", ["auto", "sqlalchemy"])
def test_postgres_table_params_and_sqlstate(
    backend: str, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    url = pg_url
    table = f"cli_exec_{uuid.uuid4().hex[:10]}"
    common = ["--url", url, "--backend", backend]
    try:
        code, out, err = run(
            capsys, "exec", f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, username TEXT, "
            "created_at TIMESTAMPTZ DEFAULT now(), price NUMERIC(8, 2))", *common,
        )  # fmt: skip
        assert (code, out, err) == (0, "OK\n", "")
        code, out, _ = run(
            capsys, "exec", f"INSERT INTO {table} (username, price) VALUES (:u, :p), (:u2, :p) "
            "RETURNING id", *common, "-p", "u=john_doe", "-p", "u2=jane", "-p", "p:=9.99",
        )  # fmt: skip
        assert code == 0
        assert out.splitlines()[-2:] == ["(2 rows)", "2 rows affected"]

        code, out, _ = run(
            capsys, "exec", f"SELECT id, username, price FROM {table} WHERE username = :u",
            *common, "--param", "u=jane",
        )  # fmt: skip
        assert (code, out.splitlines()) == (
            0,
            ["id | username | price", "---+----------+------", " 2 | jane     |  9.99", "(1 row)"],
        )

        code, out, _ = run(capsys, "exec", f"SELECT * FROM {table} ORDER BY id", *common, "--json")
        rows = json.loads(out)["rows"]
        assert [(r["id"], r["username"], r["price"]) for r in rows] == [
            (1, "john_doe", "9.99"),
            (2, "jane", "9.99"),
        ]
        assert rows[0]["created_at"][:4].isdigit()  # ISO 8601 timestamp

        code, _, err = run(capsys, "exec", f"SELECT nope FROM {table}", *common)
        assert code == 1
        assert "SQLSTATE 42703" in err
    finally:
        run(capsys, "exec", f"DROP TABLE IF EXISTS {table}", *common)
