"""The seed document's SQLAlchemy examples, run as written against a real PostgreSQL.

Each test quotes its section (§) of ``shared/seed/structum-database.md``. The code inside the
``# --- seed`` markers is the seed's, verbatim, except where the seed leaves a placeholder
(``(...)``, ``WHERE ...``, ``postgresql://...``): those are filled with concrete columns and the
test server's URL. The seed runs in its own PostgreSQL database (created here and dropped at the
end), so its ``users`` table cannot collide with other suites.
"""

from __future__ import annotations

import inspect
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import HealthStatus, HealthThresholds, SQLAlchemyDatabase

logger = logging.getLogger("seed-examples")

# A health grade compares the measured round trip with a threshold, and a cold pool's first probe
# includes connecting (tens of ms, more on a loaded machine): the seed's "healthy" examples get a
# threshold no latency crosses (a day, the largest allowed), so their grade depends on the
# database only, not on the machine.
NEVER_SLOW = HealthThresholds(degraded_latency_ms=86_400_000.0)

# datetime.utcnow() (seed §4.2) is deprecated from Python 3.12 on; the seed still uses it.
utcnow_ok = pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")


@pytest.fixture(scope="module")
def seed_url(postgres_url: str) -> Iterator[str]:
    """URL of a throwaway database holding the seed's tables, on the run's PostgreSQL."""
    admin = postgres_url
    name = f"structum_seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- seed §4.3 (models)
from sqlalchemy import Integer, String  # noqa: E402, F401 - imported by the seed
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402, F401


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(255))


# --- end seed


SCHEMA = """
DROP TABLE IF EXISTS order_items, orders, profiles, sessions, accounts, large_table, users;
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMP,
    last_login TIMESTAMP
);
CREATE TABLE profiles (user_id INTEGER PRIMARY KEY REFERENCES users (id), bio TEXT);
CREATE TABLE sessions (id SERIAL PRIMARY KEY, expires_at TIMESTAMP NOT NULL);
CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (id), sku TEXT NOT NULL, qty INTEGER NOT NULL
);
CREATE TABLE large_table (id SERIAL PRIMARY KEY, payload TEXT);
INSERT INTO users (username, email) VALUES ('john_smith', 'john@smith.example'),
    ('johnny', 'johnny@example.com'), ('mary', 'mary@example.com');
INSERT INTO accounts VALUES (1, 500), (2, 0);
INSERT INTO sessions (expires_at) VALUES ('2000-01-01'), ('2000-01-02'), ('2999-01-01');
INSERT INTO large_table (payload) SELECT 'row ' || g FROM generate_series(1, 100) AS g;
"""


@pytest.fixture
def db_url(seed_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The seed database with fresh tables and a few rows.

    Every SQLAlchemyDatabase the seed code creates is shut down after the test, even when an
    assertion fails before the seed's own ``db.shutdown()``.
    """
    with psycopg.connect(seed_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    created: list[SQLAlchemyDatabase] = []
    create_engine = SQLAlchemyDatabase._create_engine

    def tracking(self: SQLAlchemyDatabase, *args: Any, **kwargs: Any) -> Any:
        created.append(self)
        return create_engine(self, *args, **kwargs)

    monkeypatch.setattr(SQLAlchemyDatabase, "_create_engine", tracking)
    yield seed_url
    for db in created:
        db.shutdown()


@pytest.fixture
def config_dir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Seed §3 step 2: config/app/database.toml and config/.secrets.toml, cwd set to the project.

    database.toml points at a port nobody listens on; only the secrets URL reaches the server,
    so a working Quick Start proves the secrets file wins.
    """
    for var in list(os.environ):
        if var.startswith("STRUCTUM_DATABASE__") or var in ("STRUCTUM_ENV", "ENV_FOR_DYNACONF"):
            monkeypatch.delenv(var)
    secret_url = make_url(db_url).set(username="postgres", password="YOUR_PASSWORD")
    app = tmp_path / "config" / "app"
    app.mkdir(parents=True)
    (app / "database.toml").write_text(
        "[default]\n"
        'url = "postgresql://user:password@127.0.0.1:1/mydb"\n'
        "pool_size = 10\n"
        "pool_timeout = 30\n"
        "echo = false  # Set true to log SQL queries\n"
    )
    (tmp_path / "config" / ".secrets.toml").write_text(
        f'[database]\nurl = "{secret_url.render_as_string(hide_password=False)}"\n'
    )
    monkeypatch.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        set_config_provider(None)


def test_quick_start_section_3(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --- seed §3 step 3
    from structum_lab.config import set_config_provider
    from structum_lab.plugins.database import SQLAlchemyDatabase
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    # Setup config
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)

    # Create database connection
    db = SQLAlchemyDatabase.from_config()

    # Execute query in transaction
    with db.transaction() as conn:
        result = conn.execute("SELECT * FROM users WHERE id = :user_id", {"user_id": 1})
        user = result.fetchone()
        if user:
            print(f"Found user: {user['username']}")

    # Shutdown (cleanup)
    db.shutdown()
    # --- end seed
    assert capsys.readouterr().out == "Found user: john_smith\n"
    assert "YOUR_PASSWORD" not in repr(db)
    assert ":***@" in db.url
    assert db.get_pool_info()["checked_out"] == 0


def test_before_after_section_1_1(config_dir: Path) -> None:
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    set_config_provider(DynaconfConfigProvider(root_path=".").auto_discover())
    # --- seed §1.1 "Dopo"
    db = SQLAlchemyDatabase.from_config()
    with db.transaction() as conn:
        conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1})
        user = conn.fetchone()
    # --- end seed
    assert user is not None
    assert user["username"] == "john_smith"
    db.shutdown()


def test_initialization_section_4_1(config_dir: Path, db_url: str) -> None:
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    set_config_provider(DynaconfConfigProvider(root_path=".").auto_discover())
    # --- seed §4.1
    # From config
    db = SQLAlchemyDatabase.from_config()
    # --- end seed
    assert db.engine.pool.size() == 10  # type: ignore[attr-defined]  # database.toml
    db.shutdown()
    # --- seed §4.1 (URL: the test server)
    # Manual initialization
    db = SQLAlchemyDatabase(
        url=db_url,
        pool_size=10,
        pool_timeout=30,
        pool_recycle=3600,  # Recycle connections after 1 hour
        echo=False,  # Log SQL queries
        pool_pre_ping=True,  # Test connections before use
    )
    # --- end seed
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM users").scalar() == 3
    db.shutdown()


@utcnow_ok
def test_query_execution_section_4_2(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = SQLAlchemyDatabase(url=db_url)
    # --- seed §4.2 Select Query
    with db.transaction() as conn:
        result = conn.execute(
            "SELECT id, username, email FROM users WHERE active = :active", {"active": True}
        )

        # Fetch one
        user = result.fetchone()
        if user:
            print(f"{user['id']}: {user['username']}")

        # Fetch all
        users = result.fetchall()
        for user in users:
            print(f"{user['id']}: {user['username']}")

        # Fetch many
        batch = result.fetchmany(size=100)
    # --- end seed
    assert batch == []
    assert sorted(capsys.readouterr().out.splitlines()) == ["1: john_smith", "2: johnny", "3: mary"]

    # --- seed §4.2 Insert Query
    with db.transaction() as conn:
        result = conn.execute(
            """
            INSERT INTO users (username, email, created_at)
            VALUES (:username, :email, :created_at)
            RETURNING id
            """,
            {
                "username": "john_doe",
                "email": "john@example.com",
                "created_at": datetime.utcnow(),
            },
        )
        new_id = result.fetchone()["id"]
        print(f"Created user with ID: {new_id}")
    # --- end seed
    assert capsys.readouterr().out == "Created user with ID: 4\n"

    user_id = new_id
    # --- seed §4.2 Update Query (user_id: the row just created)
    with db.transaction() as conn:
        result = conn.execute(
            """
            UPDATE users
            SET last_login = :now
            WHERE id = :user_id
            """,
            {"now": datetime.utcnow(), "user_id": user_id},
        )
        rows_affected = result.rowcount
        print(f"Updated {rows_affected} rows")
    # --- end seed

    # --- seed §4.2 Delete Query
    with db.transaction() as conn:
        result = conn.execute(
            "DELETE FROM sessions WHERE expires_at < :now", {"now": datetime.utcnow()}
        )
        deleted_count = result.rowcount
        print(f"Deleted {deleted_count} expired sessions")
    # --- end seed
    assert capsys.readouterr().out == "Updated 1 rows\nDeleted 2 expired sessions\n"
    with db.transaction() as conn:
        row = conn.execute("SELECT created_at, last_login FROM users WHERE id = 4").fetchone()
        assert isinstance(row["created_at"], datetime)
        assert isinstance(row["last_login"], datetime)
    db.shutdown()


def test_orm_section_4_3(db_url: str) -> None:
    db = SQLAlchemyDatabase(url=db_url)
    # --- seed §4.3 (the imports and models are at module level, as in the seed)
    # Get ORM session
    with db.get_session() as session:
        # Query with ORM
        users = session.query(User).filter(User.username.like("john%")).all()

        # Create new record
        new_user = User(username="jane_doe", email="jane@example.com")
        session.add(new_user)
        session.commit()

        # Update
        user = session.get(User, 1)
        if user:
            user.email = "newemail@example.com"
            session.commit()
    # --- end seed
    assert len(users) == 2  # john_smith, johnny (the objects are detached now)
    with db.transaction() as conn:
        assert conn.execute("SELECT email FROM users WHERE id = 1").scalar() == (
            "newemail@example.com"
        )
        assert conn.execute("SELECT count(*) FROM users WHERE username = 'jane_doe'").scalar() == 1
    assert db.get_pool_info()["checked_out"] == 0
    db.shutdown()


def test_pool_sections_6_1_and_6_2(
    db_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # --- seed §6.1 (URL: the test server)
    db = SQLAlchemyDatabase(
        url=db_url,
        pool_size=10,  # Normal connections
        max_overflow=20,  # Extra connections under load
        pool_timeout=30,  # Wait time for connection (seconds)
        pool_recycle=3600,  # Recycle after 1 hour
        pool_pre_ping=True,  # Test before use
    )
    # --- end seed
    with db.transaction() as conn:
        conn.execute("SELECT 1")
    caplog.set_level(logging.INFO)
    # --- seed §6.2
    # Get pool status
    info = db.get_pool_info()
    print(f"Checked out: {info['checked_out']}")
    print(f"Available: {info['available']}")
    print(f"Total: {info['total']}")
    print(f"Overflow: {info['overflow']}")

    # Log pool stats
    from structum_lab.plugins.observability import get_logger

    logger = get_logger(__name__)
    logger.info("Database pool status", **info)
    # --- end seed
    assert capsys.readouterr().out == "Checked out: 0\nAvailable: 1\nTotal: 1\nOverflow: 0\n"
    record = next(r for r in caplog.records if r.getMessage().startswith("Database pool status"))
    assert "checked_out=0" in record.getMessage()
    assert record.fields["total"] == 1  # type: ignore[attr-defined]
    assert info["max"] == 30
    db.shutdown()


def test_pool_exhaustion_section_6_3(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    class Metrics:
        def __init__(self) -> None:
            self.counts: dict[str, int] = {}

        def increment(self, name: str) -> None:
            self.counts[name] = self.counts.get(name, 0) + 1

    metrics = Metrics()
    db = SQLAlchemyDatabase(url=db_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    held = db.get_connection()
    # --- seed §6.3
    from sqlalchemy.exc import TimeoutError

    try:
        with db.transaction() as conn:  # noqa: F841
            # Query execution
            pass
    except TimeoutError:
        logger.error("Database pool exhausted - increase pool_size or check for connection leaks")
        # Alert monitoring
        metrics.increment("database.pool_exhaustion")
    # --- end seed
    assert metrics.counts == {"database.pool_exhaustion": 1}
    assert "Database pool exhausted" in caplog.text
    held.close()
    assert db.get_pool_info()["checked_out"] == 0
    db.shutdown()


def test_transactions_section_7_1(db_url: str) -> None:
    db = SQLAlchemyDatabase(url=db_url)
    # --- seed §7.1 (columns filled in)
    with db.transaction() as conn:
        # All queries in this block are part of single transaction
        conn.execute("INSERT INTO users (id, username, email) VALUES (100, 'ann', 'a@x.example')")
        conn.execute("INSERT INTO profiles (user_id, bio) VALUES (100, 'hello')")
        # Automatic COMMIT on success
        # Automatic ROLLBACK on exception
    # --- end seed

    def user_with_bad_profile() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO users (id, username, email) VALUES (101, 'b', 'b@x.example')")
            conn.execute("INSERT INTO profiles (user_id, bio) VALUES (999, 'no such user')")

    with pytest.raises(Exception, match="profiles"):
        user_with_bad_profile()
    with db.transaction() as conn:
        assert conn.execute("SELECT id FROM users WHERE id >= 100").fetchall() == [{"id": 100}]
    db.shutdown()


def test_explicit_commit_rollback_section_7_2(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = SQLAlchemyDatabase(url=db_url)

    def transfer() -> None:
        # --- seed §7.2
        conn = db.get_connection()
        try:
            conn.execute("UPDATE accounts SET balance = balance - 100 WHERE id = 1")
            conn.execute("UPDATE accounts SET balance = balance + 100 WHERE id = 2")
            conn.commit()
        except Exception as e:
            conn.rollback()
            logger.error(f"Transaction failed: {e}")
            raise
        finally:
            conn.close()
        # --- end seed

    for _ in range(5):
        transfer()
    with pytest.raises(Exception, match="balance"):
        transfer()  # balance would go below zero: CHECK violation, rolled back
    assert "Transaction failed" in caplog.text
    with db.transaction() as conn:
        rows = conn.execute("SELECT id, balance FROM accounts ORDER BY id").fetchall()
    assert rows == [{"id": 1, "balance": 0}, {"id": 2, "balance": 500}]
    assert db.get_pool_info()["checked_out"] == 0
    db.shutdown()


def test_savepoints_section_7_3(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = SQLAlchemyDatabase(url=db_url)
    # --- seed §7.3 (columns filled in; the item refers to an order that does not exist)
    with db.transaction() as conn:
        # Main transaction
        conn.execute("INSERT INTO orders (id, customer) VALUES (1, 'ann')")

        # Savepoint for partial rollback
        savepoint = conn.execute("SAVEPOINT sp1")  # noqa: F841
        try:
            conn.execute("INSERT INTO order_items (order_id, sku, qty) VALUES (2, 'x', 1)")
        except Exception:
            # Rollback only to savepoint
            conn.execute("ROLLBACK TO SAVEPOINT sp1")
            logger.warning("Order items insert failed, continuing with order")

        # Main transaction still commits
    # --- end seed
    assert "Order items insert failed" in caplog.text
    with db.transaction() as conn:
        assert conn.execute("SELECT customer FROM orders").fetchall() == [{"customer": "ann"}]
        assert conn.execute("SELECT count(*) FROM order_items").scalar() == 0
    db.shutdown()


def test_nested_transactions_section_7_4(db_url: str) -> None:
    db = SQLAlchemyDatabase(url=db_url)

    # --- seed §7.4
    def create_user_with_profile(username: str, email: str):  # type: ignore[no-untyped-def]
        """Transactional function."""
        with db.transaction() as conn:
            # Insert user
            result = conn.execute(
                "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id",
                {"u": username, "e": email},
            )
            user_id = result.fetchone()["id"]

            # Insert profile (nested transaction)
            create_profile(conn, user_id)

            return user_id

    def create_profile(conn, user_id: int):  # type: ignore[no-untyped-def]
        """Nested transactional function."""
        conn.execute(
            "INSERT INTO profiles (user_id, bio) VALUES (:id, :bio)",
            {"id": user_id, "bio": "New user"},
        )

    # --- end seed
    user_id = create_user_with_profile("newbie", "newbie@example.com")
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT u.username, p.bio FROM users u JOIN profiles p ON p.user_id = u.id "
            "WHERE u.id = :id",
            {"id": user_id},
        ).fetchone()
    assert row == {"username": "newbie", "bio": "New user"}
    db.shutdown()


def test_health_section_8_1(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = SQLAlchemyDatabase(url=db_url, health_thresholds=NEVER_SLOW)
    # --- seed §8.1
    from structum_lab.plugins.database import HealthStatus  # noqa: F401

    # Perform health check
    result = db.health_check()

    print(f"Status: {result.status}")  # HealthStatus.HEALTHY
    print(f"Message: {result.message}")  # "Database connection OK"
    print(f"Latency: {result.latency_ms}ms")  # 2.5
    # --- end seed
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Status: HealthStatus.HEALTHY", "Message: Database connection OK"]
    assert out[2] == f"Latency: {result.latency_ms}ms"
    assert result.latency_ms > 0
    db.shutdown()


def test_two_namespaces_section_9_3(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    # primary_db from a file, replica_db from an environment variable (seed §9.2)
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "primary_db.toml").write_text(
        f'[default]\nurl = "{db_url}"\npool_size = 3\n'
    )
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__URL", db_url)
    monkeypatch.setenv("STRUCTUM_REPLICA_DB__POOL_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    set_config_provider(DynaconfConfigProvider(root_path=".").auto_discover())
    try:
        # --- seed §9.3 (columns filled in)
        # Primary database
        primary_db = SQLAlchemyDatabase.from_config(namespace="primary_db")

        # Read replica
        replica_db = SQLAlchemyDatabase.from_config(namespace="replica_db")

        # Writes to primary
        with primary_db.transaction() as conn:
            conn.execute("INSERT INTO users (username, email) VALUES ('pat', 'pat@example.com')")

        # Reads from replica
        with replica_db.transaction() as conn:
            result = conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1})
            user = result.fetchone()
        # --- end seed
        assert user["username"] == "john_smith"
        assert primary_db.engine.pool.size() == 3  # type: ignore[attr-defined]
        assert replica_db.engine.pool.size() == 2  # type: ignore[attr-defined]
        with replica_db.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM users WHERE username = 'pat'").scalar() == 1
        primary_db.shutdown()
        replica_db.shutdown()
    finally:
        set_config_provider(None)


SEED_9_1_TOML = """\
[default]
url = "postgresql://localhost:5432/dev_db"
pool_size = 5
pool_timeout = 30
pool_recycle = 3600
echo = true # Log SQL in development

[default.options]
pool_pre_ping = true
connect_args = { "connect_timeout": 10 }

[production]
url = "postgresql://prod.db.internal:5432/prod_db"
pool_size = 20
pool_timeout = 60
pool_recycle = 1800
echo = false

[production.options]
pool_pre_ping = true
pool_use_lifo = true # LIFO for better connection reuse
"""

SEED_9_1_SECRETS = """\
[database]
# Production credentials
url = "postgresql://app_user:STRONG_PASSWORD@prod.db.example.com:5432/production"
"""


@pytest.mark.parametrize("env", ["development", "production"])
def test_configuration_sections_9_1_and_9_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, env: str
) -> None:
    from structum_lab.plugins.database import AsyncSQLAlchemyDatabase
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(SEED_9_1_TOML)
    (tmp_path / "config" / ".secrets.toml").write_text(SEED_9_1_SECRETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRUCTUM_ENV", env)
    for var in list(os.environ):
        if var.startswith("STRUCTUM_DATABASE__"):
            monkeypatch.delenv(var)
    engine_logger = logging.getLogger("sqlalchemy.engine.Engine")
    handlers = list(engine_logger.handlers)  # echo=true adds one; keep other tests quiet
    set_config_provider(DynaconfConfigProvider(root_path=".").auto_discover())
    try:
        db = SQLAlchemyDatabase.from_config()  # builds the engine; connects on first use
        pool: Any = db.engine.pool
        expected = {
            "development": (5, 30.0, 3600, True, False),
            "production": (20, 60.0, 1800, False, True),
        }[env]
        assert (
            pool.size(),
            pool.timeout(),
            pool._recycle,
            db.engine.echo,
            pool._pool.use_lifo,
        ) == expected
        assert db.url == "postgresql://app_user:***@prod.db.example.com:5432/production"
        db.shutdown()
        async_db = AsyncSQLAlchemyDatabase.from_config()
        assert async_db.engine.sync_engine.pool.size() == expected[0]  # type: ignore[attr-defined]

        # --- seed §9.2: environment variables win over files and secrets
        monkeypatch.setenv("STRUCTUM_DATABASE__URL", db_url)
        monkeypatch.setenv("STRUCTUM_DATABASE__POOL_SIZE", "20")
        # --- end seed
        set_config_provider(DynaconfConfigProvider(root_path=".").auto_discover())
        db = SQLAlchemyDatabase.from_config()
        assert db.engine.pool.size() == 20  # type: ignore[attr-defined]
        with db.transaction() as conn:
            assert conn.execute("SELECT count(*) AS n FROM users").scalar() == 3
        db.shutdown()
    finally:
        set_config_provider(None)
        engine_logger.handlers[:] = handlers


# --- seed §11.1 (URL: the seed database; function scope because db_url is; the seed's own
# users table replaces the richer one the other examples use)
@pytest.fixture
def test_db(db_url: str) -> Iterator[SQLAlchemyDatabase]:
    """Create test database."""
    db = SQLAlchemyDatabase(url=db_url, pool_size=2)

    # Run migrations
    with db.transaction() as conn:
        conn.execute("DROP TABLE IF EXISTS users CASCADE")  # the seed's table, not ours
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
def clean_db(test_db: SQLAlchemyDatabase) -> SQLAlchemyDatabase:
    """Clean database before each test."""
    with test_db.transaction() as conn:
        conn.execute("TRUNCATE users RESTART IDENTITY CASCADE")
    return test_db


# --- seed §11.2
def test_create_user(clean_db: SQLAlchemyDatabase) -> None:
    """Test user creation."""
    with clean_db.transaction() as conn:
        result = conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id",
            {"u": "testuser", "e": "test@example.com"},
        )
        user_id = result.fetchone()["id"]
        assert user_id > 0


def test_query_user(clean_db: SQLAlchemyDatabase) -> None:
    """Test user query."""
    # Insert test data
    with clean_db.transaction() as conn:
        conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e)",
            {"u": "testuser", "e": "test@example.com"},
        )

    # Query
    with clean_db.transaction() as conn:
        result = conn.execute("SELECT * FROM users WHERE username = :u", {"u": "testuser"})
        user = result.fetchone()
        assert user["username"] == "testuser"
        assert user["email"] == "test@example.com"


# --- end seed


def test_pool_sizing_section_12_2(db_url: str) -> None:
    # --- seed §12.2
    # Rule of thumb: pool_size = (num_workers * 2) + spare
    #
    # Example: 4 workers
    # pool_size = (4 * 2) + 2 = 10
    # max_overflow = pool_size * 0.5 = 5

    db = SQLAlchemyDatabase(url=db_url, pool_size=10, max_overflow=5, pool_timeout=30)
    # --- end seed
    assert db.get_pool_info()["max"] == 15
    db.shutdown()


def test_query_timeouts_section_12_3(db_url: str) -> None:
    db = SQLAlchemyDatabase(url=db_url, pool_size=1, max_overflow=0)
    # --- seed §12.3 (WHERE filled in)
    with db.transaction() as conn:
        # Set statement timeout
        conn.execute("SET statement_timeout = '5000'")  # 5 seconds

        # Long query with timeout protection
        result = conn.execute("SELECT * FROM large_table WHERE id <= 10")
    # --- end seed
    assert len(result.fetchall()) == 10
    # the portable form, scoped to the transaction: SET LOCAL statement_timeout
    with db.transaction(timeout=5) as conn:
        assert conn.execute("SHOW statement_timeout").scalar() == "5s"
    db.shutdown()


def test_health_monitoring_section_8_3(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from structum_lab.plugins.observability import get_logger

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any]] = []

        def gauge(self, name: str, value: float) -> None:
            self.calls.append((name, value))

        def send_alert(self, title: str, body: str) -> None:
            self.calls.append((title, body))

    metrics = alert_service = Recorder()
    logger = get_logger("seed-8-3")
    caplog.set_level(logging.DEBUG)
    for url, expected in ((db_url, "healthy"), ("postgresql://u:s3cretpw@127.0.0.1:1/x", "alert")):
        db = SQLAlchemyDatabase(url=url, health_thresholds=NEVER_SLOW)
        metrics.calls.clear()

        # --- seed §8.3
        def monitor_database_health():  # type: ignore[no-untyped-def]
            """Periodic health monitoring."""
            result = db.health_check()  # noqa: B023 - called in this iteration

            # Log metrics
            metrics.gauge("database.latency_ms", result.latency_ms)

            if result.status != HealthStatus.HEALTHY:
                logger.error(
                    "Database unhealthy",
                    status=result.status.value,
                    message=result.message,
                    latency_ms=result.latency_ms,
                )
                # Alert
                alert_service.send_alert(
                    "Database Health Check Failed",
                    f"Status: {result.status.value}\nLatency: {result.latency_ms}ms",
                )
            else:
                logger.debug(f"Database healthy - latency: {result.latency_ms}ms")

        # --- end seed
        monitor_database_health()  # type: ignore[no-untyped-call]
        db.shutdown()
        names = [call[0] for call in metrics.calls]
        if expected == "healthy":
            assert names == ["database.latency_ms"]
            assert "Database healthy - latency:" in caplog.text
        else:
            assert names == ["database.latency_ms", "Database Health Check Failed"]
            assert "Database unhealthy status=unhealthy" in caplog.text
    assert "s3cretpw" not in caplog.text


def test_leak_detection_section_12_4(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = SQLAlchemyDatabase(url=db_url)

    # --- seed §12.4
    import atexit

    def check_pool_on_exit():  # type: ignore[no-untyped-def]
        """Detect connection leaks at shutdown."""
        info = db.get_pool_info()
        if info["checked_out"] > 0:
            logger.warning(
                f"Connection leak detected: {info['checked_out']} connections not returned"
            )

    atexit.register(check_pool_on_exit)
    # --- end seed
    try:
        leaked = db.get_connection()
        check_pool_on_exit()  # type: ignore[no-untyped-call]
        assert "Connection leak detected: 1 connections not returned" in caplog.text
        leaked.close()
        caplog.clear()
        check_pool_on_exit()  # type: ignore[no-untyped-call]
        assert "leak" not in caplog.text
    finally:
        atexit.unregister(check_pool_on_exit)
        db.shutdown()


def test_api_reference_section_13_1() -> None:
    params = inspect.signature(SQLAlchemyDatabase.__init__).parameters
    seed_defaults: dict[str, Any] = {
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": 30,
        "pool_recycle": 3600,
        "echo": False,
        "pool_pre_ping": True,
    }
    for name, default in seed_defaults.items():
        assert params[name].default == default, name
    assert list(params)[1] == "url"
    assert inspect.signature(SQLAlchemyDatabase.from_config).parameters["namespace"].default == (
        "database"
    )
    for method in ("transaction", "get_session", "health_check", "shutdown"):
        assert callable(getattr(SQLAlchemyDatabase, method))
    assert HealthStatus.HEALTHY.value == "healthy"
