"""``get_database(name, type)``: typed for mypy --strict, checked at run time, with real backends.

``tools/dev.py typecheck`` runs mypy --strict over this file: the ``assert_type`` lines and seed
§10.1's ``get_db()`` are the typing test; running it checks the same at run time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typing_extensions import assert_type

from structum_lab.plugins.database import (
    ConfigurationError,
    get_database,
    set_database,
)
from structum_lab.plugins.database.interfaces import AsyncDatabaseInterface, DatabaseInterface
from structum_lab.plugins.database.postgres import PostgresDatabase
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase


# Seed §10.1, as written (its imports added): must pass mypy --strict.
def get_db() -> DatabaseInterface:
    return get_database()


def test_seed_10_1_and_narrowing_by_class(tmp_path: Path, registry: None) -> None:
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        set_database(db)
        assert get_db() is db
        narrowed = get_database("default", SQLAlchemyDatabase)
        assert_type(narrowed, SQLAlchemyDatabase)
        assert narrowed is db
        assert get_database(type=DatabaseInterface) is db
        with narrowed.get_session() as session:  # the backend's own API, typed
            assert session.bind is narrowed.engine
        with pytest.raises(ConfigurationError) as info:
            get_database("default", PostgresDatabase)
        message = str(info.value)
        assert "'default' is a SQLAlchemyDatabase, not a PostgresDatabase" in message
        assert "get_database('default', SQLAlchemyDatabase)" in message
        with pytest.raises(ConfigurationError, match="not a AsyncDatabaseInterface"):
            get_database("default", AsyncDatabaseInterface)
        with pytest.raises(TypeError, match="must be a class"):
            get_database("default", lambda: db)
        with pytest.raises(ConfigurationError, match="no database registered as 'replica'"):
            get_database("replica", SQLAlchemyDatabase)
    finally:
        db.shutdown()


async def test_async_database_is_asked_for_by_class(tmp_path: Path, registry: None) -> None:
    db = AsyncSQLAlchemyDatabase(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        set_database(db, "aio")
        aio = get_database("aio", AsyncDatabaseInterface)
        assert_type(aio, AsyncDatabaseInterface)
        async with aio.transaction() as conn:
            assert await (await conn.execute("SELECT 1")).scalar() == 1
        backend = get_database("aio", type=AsyncSQLAlchemyDatabase)
        assert_type(backend, AsyncSQLAlchemyDatabase)
        with pytest.raises(ConfigurationError, match="not a DatabaseInterface"):
            get_database("aio", DatabaseInterface)
    finally:
        await db.shutdown()
