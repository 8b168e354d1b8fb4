"""SQLModel's ``Session``/``AsyncSession`` (``.exec()``) from ``get_session()``, on real servers.

Issue 13's template application needs SQLModel's session classes; this proves both twins build them
from configuration (``session_class = "sqlmodel:Session"``) and per call.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

sqlmodel = pytest.importorskip("sqlmodel")  # Python >= 3.11 (requirements-dev.txt)
from sqlmodel import Field, SQLModel  # noqa: E402
from sqlmodel import Session as SQLModelSession  # noqa: E402
from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession  # noqa: E402


@pytest.fixture
def provider() -> Iterator[Any]:
    yield lambda data: set_config_provider(DictConfigProvider(data))
    set_config_provider(None)


_HERO = f"structum_hero_{uuid.uuid4().hex[:8]}"


class Hero(SQLModel, table=True):
    __tablename__ = _HERO
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)


def test_sqlmodel_session_from_configuration(sqlalchemy_url: str, provider: Any) -> None:
    provider({"database": {"url": sqlalchemy_url, "session_class": "sqlmodel:Session"}})
    db = SQLAlchemyDatabase.from_config()
    SQLModel.metadata.create_all(db.engine, tables=[SQLModel.metadata.tables[_HERO]])
    try:
        with db.get_session() as session:
            assert isinstance(session, SQLModelSession)
            session.add(Hero(name="Deadpond"))
            session.commit()
            assert [h.name for h in session.exec(sqlmodel.select(Hero))] == ["Deadpond"]
    finally:
        SQLModel.metadata.drop_all(db.engine, tables=[SQLModel.metadata.tables[_HERO]])
        db.shutdown()


async def test_sqlmodel_async_session(sqlalchemy_url: str) -> None:
    db = AsyncSQLAlchemyDatabase(
        sqlalchemy_url, session_class="sqlmodel.ext.asyncio.session:AsyncSession"
    )
    tables = [SQLModel.metadata.tables[_HERO]]
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=tables))
    try:
        async with db.get_session() as session:
            assert isinstance(session, SQLModelAsyncSession)
            session.add(Hero(name="Rusty-Man"))
            await session.commit()
            heroes = await session.exec(sqlmodel.select(Hero))
            assert [h.name for h in heroes] == ["Rusty-Man"]
        async with db.get_session(SQLModelAsyncSession) as typed:
            assert (await typed.exec(sqlmodel.select(Hero))).one().name == "Rusty-Man"
    finally:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: SQLModel.metadata.drop_all(c, tables=tables))
        await db.shutdown()
