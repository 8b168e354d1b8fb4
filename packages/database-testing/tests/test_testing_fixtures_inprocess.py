"""The plugin's database fixtures used directly in this (outer) session, as a project would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TABLE = f"structum_inproc_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def schema(postgres_db: Any) -> Iterator[str]:
    with postgres_db.transaction() as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id SERIAL PRIMARY KEY, note TEXT)")
    yield TABLE
    with postgres_db.transaction() as conn:
        conn.execute(f"DROP TABLE {TABLE}")


def _count(db: Any) -> int:
    with db.transaction() as conn:
        return int(conn.execute(f"SELECT count(*) AS n FROM {TABLE}").scalar())


def test_sync_backends_write_inside_the_rollback(
    schema: str, isolated_postgres_db: Any, isolated_sqlalchemy_db: Any
) -> None:
    with isolated_postgres_db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} (note) VALUES (:n)", {"n": "psycopg"})
    with isolated_sqlalchemy_db.transaction() as conn:
        conn.execute(f"INSERT INTO {schema} (note) VALUES (:n)", {"n": "sqlalchemy"})
    # Two backends, two outer transactions: each sees only its own uncommitted row.
    assert _count(isolated_postgres_db) == 1
    assert _count(isolated_sqlalchemy_db) == 1


def test_nothing_survived(schema: str, postgres_db: Any) -> None:
    assert _count(postgres_db) == 0


async def test_async_backends(
    schema: str, async_isolated_postgres_db: Any, async_isolated_sqlalchemy_db: Any
) -> None:
    for db in (async_isolated_postgres_db, async_isolated_sqlalchemy_db):
        async with db.transaction() as conn:
            await conn.execute(f"INSERT INTO {schema} (note) VALUES ('async')")
        async with db.transaction() as conn:
            result = await conn.execute(f"SELECT count(*) AS n FROM {schema}")
            assert await result.scalar() == 1


def test_still_nothing(schema: str, sqlalchemy_db: Any) -> None:
    assert _count(sqlalchemy_db) == 0
