"""Seed §11.1 to §11.2, as written, against a real PostgreSQL server.

The seed hard-codes ``postgresql://localhost/test_db``. The code is run unchanged; the server is
reached through libpq's environment variables (``PGPORT``, ``PGUSER``, ``PGPASSWORD``,
``PGHOSTADDR``), which fill in what the seed's URL leaves out, and ``test_db`` is created on it for
the run. A fixed database name on a shared server would let two test runs at once drop each other's
``test_db``, so the server is a throwaway cluster of this test's own when the binaries are there,
else the run's ``postgres_url``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest

from structum_lab.plugins.database.testing import LocalPostgresCluster, find_postgres_bindir

SEED_11 = '''
import pytest
from structum_lab.plugins.database import SQLAlchemyDatabase

@pytest.fixture(scope="session")
def test_db():
    """Create test database."""
    db = SQLAlchemyDatabase(
        url="postgresql://localhost/test_db",
        pool_size=2
    )

    # Run migrations
    with db.transaction() as conn:
        conn.execute("""
            CREATE TABLE IF NOT EXISTS users (
                id SERIAL PRIMARY KEY,
                username VARCHAR(50) UNIQUE NOT NULL,
                email VARCHAR(255) UNIQUE NOT NULL
            )
        """)

    yield db

    # Cleanup
    with db.transaction() as conn:
        conn.execute("DROP TABLE IF EXISTS users")
    db.shutdown()

@pytest.fixture
def clean_db(test_db):
    """Clean database before each test."""
    with test_db.transaction() as conn:
        conn.execute("TRUNCATE users RESTART IDENTITY CASCADE")
    yield test_db

def test_create_user(clean_db):
    """Test user creation."""
    with clean_db.transaction() as conn:
        result = conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id",
            {"u": "testuser", "e": "test@example.com"}
        )
        user_id = result.fetchone()["id"]

    assert user_id > 0

def test_query_user(clean_db):
    """Test user query."""
    # Insert test data
    with clean_db.transaction() as conn:
        conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e)",
            {"u": "testuser", "e": "test@example.com"}
        )

    # Query
    with clean_db.transaction() as conn:
        result = conn.execute(
            "SELECT * FROM users WHERE username = :u",
            {"u": "testuser"}
        )
        user = result.fetchone()

    assert user["username"] == "testuser"
    assert user["email"] == "test@example.com"
'''


@pytest.fixture
def own_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL no other test run uses: a throwaway cluster, else the run's server."""
    if find_postgres_bindir() is None:
        yield str(request.getfixturevalue("postgres_url"))
        return
    with LocalPostgresCluster() as cluster:
        yield cluster.url


@pytest.fixture
def seed_server(own_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    parts = urlsplit(own_server)
    admin = f"postgresql://{parts.netloc}/{parts.path.lstrip('/')}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS test_db WITH (FORCE)")
        conn.execute("CREATE DATABASE test_db")
    monkeypatch.setenv("PGHOSTADDR", socket.gethostbyname(parts.hostname or "127.0.0.1"))
    monkeypatch.setenv("PGPORT", str(parts.port or 5432))
    monkeypatch.setenv("PGUSER", unquote(parts.username or "postgres"))
    if parts.password:
        monkeypatch.setenv("PGPASSWORD", unquote(parts.password))
    try:
        yield admin
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS test_db WITH (FORCE)")


@pytest.mark.integration
def test_seed_section_11_runs_as_written(
    pytester: pytest.Pytester, inner_pytest: object, seed_server: str
) -> None:
    pytester.makepyfile(test_seed_11=SEED_11)
    result = inner_pytest("-v")  # type: ignore[operator]
    result.assert_outcomes(passed=2)
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(seed_server.rsplit("/", 1)[0] + "/test_db") as conn:
        left = conn.execute("SELECT to_regclass('users') IS NULL").fetchone()
    assert left == (True,), "the seed's session fixture drops its table at the end"
