"""ORM session classes: ``get_session(session_class=...)`` and the ``session_class`` setting.

Against real servers (PostgreSQL, MariaDB, SQLite) with both twins: a custom ``Session`` /
``AsyncSession`` subclass, SQLModel's sessions (``.exec()``), the default class from the
constructor and from configuration (an import path), and the errors for a wrong class.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from structum_lab.config import DictConfigProvider, set_config_provider
from structum_lab.plugins.database import ConfigurationError
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

_TABLE = f"structum_orm_{uuid.uuid4().hex[:8]}"


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = _TABLE
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class AppSession(Session):
    """What an application's own session class looks like: one helper method."""

    def names(self) -> list[str]:
        return list(self.scalars(select(Item.name).order_by(Item.name)))


class AppAsyncSession(AsyncSession):
    async def names(self) -> list[str]:
        return list(await self.scalars(select(Item.name).order_by(Item.name)))


def _names(db: Any) -> list[str]:
    with db.transaction() as conn:
        return [r["name"] for r in conn.execute(f"SELECT name FROM {_TABLE} ORDER BY name")]


async def _anames(db: Any) -> list[str]:
    async with db.transaction() as conn:
        result = await conn.execute(f"SELECT name FROM {_TABLE} ORDER BY name")
        return [r["name"] async for r in result]


@pytest.fixture
def sync_url(sqlalchemy_url: str) -> Iterator[str]:
    url = sqlalchemy_url
    db = SQLAlchemyDatabase(url)
    Base.metadata.create_all(db.engine)
    try:
        yield url
    finally:
        Base.metadata.drop_all(db.engine)
        db.shutdown()


@pytest.fixture
async def async_url(sqlalchemy_url: str) -> AsyncIterator[str]:
    url = sqlalchemy_url
    db = AsyncSQLAlchemyDatabase(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield url
    finally:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await db.shutdown()


@pytest.fixture
def provider() -> Iterator[Any]:
    yield lambda data: set_config_provider(DictConfigProvider(data))
    set_config_provider(None)


def test_session_class_per_call_with_session_kwargs(sync_url: str) -> None:
    db = SQLAlchemyDatabase(sync_url)
    try:
        with db.get_session(AppSession, expire_on_commit=False) as session:
            assert type(session) is AppSession
            assert session.bind is db.engine
            item = Item(name="alice")
            session.add(item)
            session.commit()
            # expire_on_commit=False reached the session: no reload after the commit.
            assert "name" in item.__dict__
            assert session.names() == ["alice"]
        assert _names(db) == ["alice"]
        with db.get_session() as plain:
            assert type(plain) is Session
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


async def test_async_session_class_per_call_with_session_kwargs(async_url: str) -> None:
    db = AsyncSQLAlchemyDatabase(async_url)
    try:
        async with db.get_session(AppAsyncSession, expire_on_commit=False) as session:
            assert type(session) is AppAsyncSession
            assert session.bind is db.engine
            item = Item(name="bob")
            session.add(item)
            await session.commit()
            assert "name" in item.__dict__
            assert await session.names() == ["bob"]
        assert await _anames(db) == ["bob"]
        async with db.get_session() as plain:
            assert type(plain) is AsyncSession
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()


def test_default_session_class_from_constructor_and_call_overrides(sync_url: str) -> None:
    db = SQLAlchemyDatabase(sync_url, session_class=AppSession)
    try:
        with db.get_session() as session:
            session.add(Item(name="carol"))
            session.commit()
            assert type(session) is AppSession
            assert session.names() == ["carol"]
        with db.get_session(Session) as session:
            assert type(session) is Session
    finally:
        db.shutdown()


async def test_async_default_session_class_from_configuration_path(
    async_url: str, provider: Any
) -> None:
    path = f"{__name__}:AppAsyncSession"
    provider({"database": {"url": async_url, "session_class": path}})
    db = AsyncSQLAlchemyDatabase.from_config()
    try:
        async with db.get_session() as session:
            assert type(session) is AppAsyncSession
            session.add(Item(name="dave"))
            await session.commit()
        assert await _anames(db) == ["dave"]
    finally:
        await db.shutdown()


def test_default_session_class_from_configuration_path(tmp_path: Path, provider: Any) -> None:
    provider(
        {
            "database": {
                "url": f"sqlite:///{tmp_path / 'c.db'}",
                "options": {"session_class": f"{__name__}.AppSession"},
            }
        }
    )
    db = SQLAlchemyDatabase.from_config()
    try:
        with db.get_session() as session:
            assert type(session) is AppSession
    finally:
        db.shutdown()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("structum_no_such_module:Session", "cannot import module 'structum_no_such_module'"),
        ("sqlalchemy.orm:NoSuchSession", "has no attribute 'NoSuchSession'"),
        ("Session", "is not an import path"),
        ("sqlalchemy.ext.asyncio:AsyncSession", "must be sqlalchemy.orm.Session or a subclass"),
        ("builtins:dict", "must be sqlalchemy.orm.Session or a subclass"),
    ],
)
def test_bad_session_class_in_configuration(
    tmp_path: Path, provider: Any, value: str, message: str
) -> None:
    provider({"database": {"url": f"sqlite:///{tmp_path / 'c.db'}", "session_class": value}})
    with pytest.raises(ConfigurationError, match=message) as info:
        SQLAlchemyDatabase.from_config()
    assert info.value.key == "session_class"


def test_wrong_kind_of_session_class_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with pytest.raises(ConfigurationError, match="AsyncSession or a subclass"):
        AsyncSQLAlchemyDatabase(url, session_class=Session)
    with pytest.raises(ConfigurationError, match="AsyncSession or a subclass"):
        AsyncSQLAlchemyDatabase(url, session_class="sqlalchemy.orm:Session")
    db = SQLAlchemyDatabase(url)
    try:
        with pytest.raises(ConfigurationError, match=r"Session or a subclass.*got .*AsyncSession"):
            db.get_session(AsyncSession)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="do not pass bind"):
            db.get_session(bind=db.engine)
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()
