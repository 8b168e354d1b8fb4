"""Every Python example of the seed document, type-checked with ``mypy --strict``.

``python3 tools/dev.py typecheck`` (CI) runs mypy over this file. Each section is the seed's code
inside a function (so importing this module runs nothing); what the seed leaves to the reader is
supplied above it: imports, the free names (``user_id``, ``metrics``, ``alert_service``,
``UserCreate``, ``MockConnection``) and, where ``--strict`` requires them, parameter and return
annotations of functions the seed writes without (``create_profile(conn, ...)``, the §11 fixtures,
§11.3's ``MockDatabase``). The statements themselves are the seed's. Not here: §1.1's "before"
(psycopg2, not this library) and §13's class outlines (signatures, not code to run).

The lines marked ``# type: ignore[...]`` at the end are the negative checks: each is a typo mypy
must report. mypy --strict warns about an unused ``type: ignore``, so if the API ever went back to
``Any`` (``conn.exectue(...)`` passing silently) the typecheck fails.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.exc import TimeoutError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    Connection,
    DatabaseInterface,
    HealthResult,
    HealthStatus,
    PoolInfo,
    PostgresDatabase,
    SQLAlchemyDatabase,
    get_database,
    set_database,
)
from structum_lab.plugins.database.fastapi import (
    DbConnection,
    DbSession,
    SQLAlchemyDbConnection,
)
from structum_lab.plugins.database.testing import MockConnection
from structum_lab.plugins.dynaconf import DynaconfConfigProvider
from structum_lab.plugins.observability import get_logger


# -- what the seed leaves to the reader ---------------------------------------------------------
class Metrics:
    def increment(self, name: str) -> None: ...
    def gauge(self, name: str, value: float) -> None: ...


class AlertService:
    def send_alert(self, title: str, body: str) -> None: ...


metrics = Metrics()
alert_service = AlertService()
user_id = 1
logger = get_logger(__name__)


class UserCreate(BaseModel):
    username: str
    email: str


# -- §1.1 (after) -------------------------------------------------------------------------------
def section_1_1() -> None:
    db = SQLAlchemyDatabase.from_config()
    with db.transaction() as conn:
        conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1})
        user = conn.fetchone()
    print(user)


# -- §3 Quick Start, step 3 ---------------------------------------------------------------------
def section_3() -> None:
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


# -- §4.1 ---------------------------------------------------------------------------------------
def section_4_1() -> SQLAlchemyDatabase:
    # From config
    db = SQLAlchemyDatabase.from_config()

    # Manual initialization
    db = SQLAlchemyDatabase(
        url="postgresql://user:pass@localhost/mydb",
        pool_size=10,
        pool_timeout=30,
        pool_recycle=3600,  # Recycle connections after 1 hour
        echo=False,  # Log SQL queries
        pool_pre_ping=True,  # Test connections before use
    )
    return db


# -- §4.2 ---------------------------------------------------------------------------------------
def section_4_2(db: SQLAlchemyDatabase) -> None:
    # Select
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
        print(batch)

    # Insert
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

    # Update
    with db.transaction() as conn:
        result = conn.execute(
            """
            UPDATE users
            SET last_login = :now
            WHERE id = :user_id
            """,
            {"now": datetime.utcnow(), "user_id": 123},
        )
        rows_affected = result.rowcount
        print(f"Updated {rows_affected} rows")

    # Delete
    with db.transaction() as conn:
        result = conn.execute(
            "DELETE FROM sessions WHERE expires_at < :now", {"now": datetime.utcnow()}
        )
        deleted_count = result.rowcount
        print(f"Deleted {deleted_count} expired sessions")


# -- §4.3 ORM -----------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(255))


def section_4_3(db: SQLAlchemyDatabase) -> None:
    # Get ORM session
    with db.get_session() as session:
        # Query with ORM
        users = session.query(User).filter(User.username.like("john%")).all()
        print(users)

        # Create new record
        new_user = User(username="jane_doe", email="jane@example.com")
        session.add(new_user)
        session.commit()

        # Update
        user = session.get(User, 1)
        if user:
            user.email = "newemail@example.com"
            session.commit()


# -- §5.1, §5.2, §5.3 ---------------------------------------------------------------------------
def section_5_1() -> PostgresDatabase:
    # From config
    db = PostgresDatabase.from_config()

    # Manual
    db = PostgresDatabase(
        url="postgresql://user:pass@localhost/mydb",
        pool_size=10,
        min_size=2,  # Minimum connections to maintain
        max_size=20,  # Maximum connections
        timeout=5.0,
    )
    return db


def section_5_2(db: PostgresDatabase) -> None:
    with db.transaction() as conn:
        # Execute with parameters
        result = conn.execute(
            "SELECT * FROM users WHERE id = %s",
            (user_id,),  # Note: tuple for parameters
        )
        # Fetch results
        row = result.fetchone()
        if row:
            print(f"User: {row['username']}")


def section_5_3() -> None:
    async def main() -> None:
        db = AsyncPostgresDatabase.from_config()
        async with db.transaction() as conn:
            result = await conn.execute("SELECT * FROM users WHERE id = $1", [user_id])
            user = await result.fetchone()
            print(f"User: {user['username']}")
        await db.shutdown()

    asyncio.run(main())


# -- §6 -----------------------------------------------------------------------------------------
def section_6_1() -> SQLAlchemyDatabase:
    return SQLAlchemyDatabase(
        url="postgresql://...",
        pool_size=10,  # Normal connections
        max_overflow=20,  # Extra connections under load
        pool_timeout=30,  # Wait time for connection (seconds)
        pool_recycle=3600,  # Recycle after 1 hour
        pool_pre_ping=True,  # Test before use
    )


def section_6_2(db: SQLAlchemyDatabase) -> None:
    # Get pool status
    info = db.get_pool_info()
    print(f"Checked out: {info['checked_out']}")
    print(f"Available: {info['available']}")
    print(f"Total: {info['total']}")
    print(f"Overflow: {info['overflow']}")

    # Log pool stats
    logger.info("Database pool status", **info)


def section_6_3(db: SQLAlchemyDatabase) -> None:
    try:
        with db.transaction() as conn:  # noqa: F841 - the seed's
            # Query execution
            pass
    except TimeoutError:
        logger.error("Database pool exhausted - increase pool_size or check for connection leaks")
        # Alert monitoring
        metrics.increment("database.pool_exhaustion")


# -- §7 -----------------------------------------------------------------------------------------
def section_7_1(db: DatabaseInterface) -> None:
    with db.transaction() as conn:
        # All queries in this block are part of single transaction
        conn.execute("INSERT INTO users (...) VALUES (...)")
        conn.execute("INSERT INTO profiles (...) VALUES (...)")


def section_7_2(db: DatabaseInterface) -> None:
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


def section_7_3(db: DatabaseInterface) -> None:
    with db.transaction() as conn:
        # Main transaction
        conn.execute("INSERT INTO orders (...) VALUES (...)")

        # Savepoint for partial rollback
        savepoint = conn.execute("SAVEPOINT sp1")
        try:
            conn.execute("INSERT INTO order_items (...) VALUES (...)")
        except Exception:
            # Rollback only to savepoint
            conn.execute("ROLLBACK TO SAVEPOINT sp1")
            logger.warning("Order items insert failed, continuing with order")
        print(savepoint)


def section_7_4(db: DatabaseInterface) -> None:
    def create_user_with_profile(username: str, email: str) -> Any:
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

    def create_profile(conn: Connection, user_id: int) -> None:
        """Nested transactional function."""
        conn.execute(
            "INSERT INTO profiles (user_id, bio) VALUES (:id, :bio)",
            {"id": user_id, "bio": "New user"},
        )

    create_user_with_profile("ada", "ada@example.com")


# -- §8 -----------------------------------------------------------------------------------------
def section_8_1(db: DatabaseInterface) -> None:
    # Perform health check
    result = db.health_check()
    print(f"Status: {result.status}")  # HealthStatus.HEALTHY
    print(f"Message: {result.message}")  # "Database connection OK"
    print(f"Latency: {result.latency_ms}ms")  # 2.5


def section_8_2(db: DatabaseInterface) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Health check endpoint."""
        db_health = db.health_check()
        return {
            "status": "healthy" if db_health.status == HealthStatus.HEALTHY else "unhealthy",
            "database": {
                "status": db_health.status.value,
                "latency_ms": db_health.latency_ms,
                "message": db_health.message,
            },
        }

    return app


def section_8_3(db: DatabaseInterface) -> None:
    def monitor_database_health() -> None:
        """Periodic health monitoring."""
        result = db.health_check()

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

    monitor_database_health()


# -- §9.3 ---------------------------------------------------------------------------------------
def section_9_3() -> None:
    # Primary database
    primary_db = SQLAlchemyDatabase.from_config(namespace="primary_db")

    # Read replica
    replica_db = SQLAlchemyDatabase.from_config(namespace="replica_db")

    # Writes to primary
    with primary_db.transaction() as conn:
        conn.execute("INSERT INTO users (...) VALUES (...)")

    # Reads from replica
    with replica_db.transaction() as conn:
        result = conn.execute("SELECT * FROM users WHERE id = :id", {"id": 1})
        user = result.fetchone()
    print(user)


# -- §10.1, §10.2 -------------------------------------------------------------------------------
def section_10() -> FastAPI:
    app = FastAPI()

    # Database initialization
    @app.on_event("startup")
    async def startup() -> None:
        db = SQLAlchemyDatabase.from_config()
        set_database(db)

    @app.on_event("shutdown")
    async def shutdown() -> None:
        db = get_database()
        db.shutdown()

    # Dependency
    def get_db() -> DatabaseInterface:
        return get_database()

    # Route with injection
    @app.get("/users/{user_id}")
    async def get_user(user_id: int, db: DatabaseInterface = Depends(get_db)) -> dict[str, Any]:  # noqa: B008
        with db.transaction() as conn:
            result = conn.execute("SELECT * FROM users WHERE id = :id", {"id": user_id})
            user = result.fetchone()
            if not user:
                raise HTTPException(status_code=404, detail="User not found")
            return {"id": user["id"], "username": user["username"]}

    class TransactionMiddleware(BaseHTTPMiddleware):
        """Automatic transaction per request."""

        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            db = get_database()
            with db.transaction() as conn:
                # Attach connection to request state
                request.state.db_conn = conn
                try:
                    response = await call_next(request)
                    # Transaction auto-commits on success
                    return response
                except Exception:
                    # Transaction auto-rollbacks on error
                    raise

    app.add_middleware(TransactionMiddleware)

    # Routes can access connection
    @app.post("/users")
    async def create_user(user: UserCreate, request: Request) -> dict[str, Any]:
        conn = request.state.db_conn
        result = conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id",
            {"u": user.username, "e": user.email},
        )
        new_id = result.fetchone()["id"]
        return {"id": new_id}

    return app


# -- §11 ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def test_db() -> Iterator[SQLAlchemyDatabase]:
    """Create test database."""
    db = SQLAlchemyDatabase(url="postgresql://localhost/test_db", pool_size=2)
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
def clean_db(test_db: SQLAlchemyDatabase) -> Iterator[SQLAlchemyDatabase]:
    """Clean database before each test."""
    with test_db.transaction() as conn:
        conn.execute("TRUNCATE users RESTART IDENTITY CASCADE")
    yield test_db  # noqa: PT022 - the seed's


def check_create_user(clean_db: SQLAlchemyDatabase) -> None:
    """Test user creation."""
    with clean_db.transaction() as conn:
        result = conn.execute(
            "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id",
            {"u": "testuser", "e": "test@example.com"},
        )
        user_id = result.fetchone()["id"]
        assert user_id > 0


def check_query_user(clean_db: SQLAlchemyDatabase) -> None:
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


# §11.3, typed: the seed's ``def transaction(self)`` drops the interface's keywords, which mypy
# reports as an incompatible override (the seed's version still runs: test_testing_seed_mock.py).
class MockDatabase(DatabaseInterface):
    """Mock database for testing."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.queries: list[str] = []

    def transaction(
        self,
        *,
        isolation_level: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
    ) -> MockConnection:
        return MockConnection(self)

    def health_check(self) -> HealthResult:
        return HealthResult(status=HealthStatus.HEALTHY, message="Mock OK", latency_ms=0.1)


@pytest.fixture
def mock_db() -> MockDatabase:
    return MockDatabase()


def check_with_mock(mock_db: MockDatabase) -> None:
    """Test using mock database."""
    with mock_db.transaction() as conn:
        conn.execute("SELECT * FROM users")
    assert len(mock_db.queries) == 1


# -- §12 ----------------------------------------------------------------------------------------
def section_12_2(db_url: str) -> SQLAlchemyDatabase:
    return SQLAlchemyDatabase(url=db_url, pool_size=10, max_overflow=5, pool_timeout=30)


def section_12_3(db: DatabaseInterface) -> None:
    with db.transaction() as conn:
        # Set statement timeout
        conn.execute("SET statement_timeout = '5000'")  # 5 seconds
        # Long query with timeout protection
        result = conn.execute("SELECT * FROM large_table WHERE ...")
        print(result)


def section_12_4(db: DatabaseInterface) -> None:
    def check_pool_on_exit() -> None:
        """Detect connection leaks at shutdown."""
        info = db.get_pool_info()
        if info["checked_out"] > 0:
            logger.warning(
                f"Connection leak detected: {info['checked_out']} connections not returned"
            )

    atexit.register(check_pool_on_exit)


# -- beyond the seed: the typed ORM/FastAPI additions of issue 13 -------------------------------
def typed_additions(db: SQLAlchemyDatabase) -> FastAPI:
    app = FastAPI()

    @app.get("/raw")
    def raw(conn: SQLAlchemyDbConnection) -> int:
        return int(conn.sqlalchemy_connection.exec_driver_sql("SELECT 1").scalar_one())

    @app.get("/orm")
    def orm(session: DbSession, conn: DbConnection) -> int:
        return len(session.query(User).all()) + (conn.execute("SELECT 1").scalar() or 0)

    info: PoolInfo = db.get_pool_info()
    print(info["checked_out"], info.get("max"))
    return app


# -- negative checks: each line is a typo mypy --strict must report -----------------------------
def typos(db: DatabaseInterface, conn: DbConnection, session: Annotated[Session, None]) -> None:
    with db.transaction() as tx:
        tx.exectue("SELECT 1")  # type: ignore[attr-defined]
    with db.transaction(readonly=True):  # type: ignore[call-arg]
        pass
    db.get_pool_info()["chekced_out"]  # type: ignore[typeddict-item]
    _ = conn.sqlalchemy_connection  # type: ignore[attr-defined]  # DbConnection is portable
    session.exce("SELECT 1")  # type: ignore[attr-defined]
