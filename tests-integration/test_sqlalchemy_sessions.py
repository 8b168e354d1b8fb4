"""ORM sessions: ``get_session(session_class=...)``, the ``session_class`` setting, and sessions
joining ``transaction()``.

Against real servers (PostgreSQL, MariaDB, SQLite) with both twins: a custom ``Session`` /
``AsyncSession`` subclass, SQLModel's sessions (``.exec()``), the default class from the
constructor and from configuration (an import path), and the errors for a wrong class.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, event, select
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


# -- sessions inside transaction(): the block decides, whatever the session commits ----------
# transaction() begins its SQLAlchemy transaction at once, so SQLAlchemy's documented join of an
# external transaction (Session(bind=conn, join_transaction_mode="create_savepoint")) works, and
# db.get_session() opened inside the block joins it by itself: the session's commit() releases a
# SAVEPOINT, and a block that raises leaves nothing. force_rollback() (the testing package's
# isolated_* fixtures) covers sessions the same way.


class Boom(Exception):
    pass


@pytest.fixture
def db(sync_url: str) -> Iterator[SQLAlchemyDatabase]:
    database = SQLAlchemyDatabase(sync_url, pool_size=3)
    try:
        yield database
        assert database.get_pool_info()["checked_out"] == 0
    finally:
        database.shutdown()


@pytest.fixture
async def adb(async_url: str) -> AsyncIterator[AsyncSQLAlchemyDatabase]:
    database = AsyncSQLAlchemyDatabase(async_url, pool_size=3)
    try:
        yield database
        assert database.get_pool_info()["checked_out"] == 0
    finally:
        await database.shutdown()


# -- sync -------------------------------------------------------------------------------------
def test_sqlalchemy_documented_join_rolls_back_with_the_block(db: SQLAlchemyDatabase) -> None:
    with pytest.raises(Boom), db.transaction() as conn:  # noqa: PT012
        session = Session(bind=conn.sqlalchemy_connection, join_transaction_mode="create_savepoint")
        session.add(Item(name="orm"))
        session.commit()  # releases a savepoint only
        session.close()
        raise Boom
    assert _names(db) == []


def test_get_session_inside_a_transaction_joins_it(db: SQLAlchemyDatabase) -> None:
    with pytest.raises(Boom), db.transaction() as conn:  # noqa: PT012
        conn.execute(f"INSERT INTO {_TABLE} (name) VALUES ('core')")
        with db.get_session(AppSession) as session:
            session.add(Item(name="orm"))
            session.commit()
            # the session sees the block's row: same connection, same transaction
            assert session.names() == ["core", "orm"]
        raise Boom
    assert _names(db) == []

    with db.transaction() as conn:
        with db.get_session() as session:
            session.add(Item(name="kept"))
            session.commit()
        with db.get_session() as session:
            session.add(Item(name="session rolled back"))
            session.flush()
            session.rollback()  # back to its savepoint; the block goes on
        conn.execute(f"INSERT INTO {_TABLE} (name) VALUES ('after')")
    assert _names(db) == ["after", "kept"]


def test_get_session_outside_a_transaction_commits_on_its_own(db: SQLAlchemyDatabase) -> None:
    with db.get_session() as session:
        session.add(Item(name="alone"))
        session.commit()
    assert _names(db) == ["alone"]
    # another thread's session does not join this thread's transaction
    with pytest.raises(Boom), db.transaction():  # noqa: PT012
        thread = threading.Thread(target=_session_insert, args=(db, "other thread"))
        thread.start()
        thread.join(30)
        raise Boom
    assert _names(db) == ["alone", "other thread"]


def _session_insert(db: SQLAlchemyDatabase, name: str) -> None:
    with db.get_session() as session:
        session.add(Item(name=name))
        session.commit()


def test_force_rollback_covers_orm_sessions(db: SQLAlchemyDatabase) -> None:
    with db.force_rollback():
        _session_insert(db, "same thread")
        thread = threading.Thread(target=_session_insert, args=(db, "thread"))
        thread.start()
        thread.join(30)
        assert _names(db) == ["same thread", "thread"]
    assert _names(db) == []


def test_eager_begin_adds_no_statement(db: SQLAlchemyDatabase) -> None:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(maxsplit=1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    # SQLite's driver needs the explicit BEGIN (it was sent before too, by the first statement)
    expected = ["BEGIN", "SELECT"] if db.dialect_name == "sqlite" else ["SELECT"]
    assert statements == expected


# -- async ------------------------------------------------------------------------------------
async def test_async_documented_join_rolls_back_with_the_block(
    adb: AsyncSQLAlchemyDatabase,
) -> None:
    async def block() -> None:
        async with adb.transaction() as conn:
            session = AsyncSession(
                bind=conn.sqlalchemy_connection, join_transaction_mode="create_savepoint"
            )
            session.add(Item(name="orm"))
            await session.commit()
            await session.close()
            raise Boom

    with pytest.raises(Boom):
        await block()
    assert await _anames(adb) == []


async def test_async_get_session_inside_a_transaction_joins_it(
    adb: AsyncSQLAlchemyDatabase,
) -> None:
    async def block() -> None:
        async with adb.transaction() as conn:
            await conn.execute(f"INSERT INTO {_TABLE} (name) VALUES ('core')")
            async with adb.get_session() as session:
                session.add(Item(name="orm"))
                await session.commit()
                names = await session.scalars(select(Item.name).order_by(Item.name))
                assert list(names) == ["core", "orm"]
            raise Boom

    with pytest.raises(Boom):
        await block()
    assert await _anames(adb) == []

    async with adb.transaction(), adb.get_session() as session:
        session.add(Item(name="kept"))
        await session.commit()
    assert await _anames(adb) == ["kept"]


async def test_async_child_task_session_does_not_join(adb: AsyncSQLAlchemyDatabase) -> None:
    async def insert(name: str) -> None:
        async with adb.get_session() as session:
            session.add(Item(name=name))
            await session.commit()

    async def block() -> None:
        async with adb.transaction():
            await asyncio.create_task(insert("child task"))  # its own connection: commits
            await insert("same task")  # joins the block: rolled back with it
            raise Boom

    with pytest.raises(Boom):
        await block()
    assert await _anames(adb) == ["child task"]


async def test_async_force_rollback_covers_orm_sessions(adb: AsyncSQLAlchemyDatabase) -> None:
    async with adb.force_rollback():
        async with adb.get_session() as session:
            session.add(Item(name="isolated"))
            await session.commit()
        assert await _anames(adb) == ["isolated"]
    assert await _anames(adb) == []
