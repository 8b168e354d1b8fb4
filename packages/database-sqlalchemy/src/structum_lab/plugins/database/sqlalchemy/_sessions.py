"""Which ORM session class ``get_session()`` builds: checking a class, importing a dotted path.

Shared by both twins. The sync twin takes ``sqlalchemy.orm.Session`` or a subclass (SQLModel's
``Session``), the async twin ``sqlalchemy.ext.asyncio.AsyncSession`` or a subclass (SQLModel's
``sqlmodel.ext.asyncio.session.AsyncSession``).
"""

from __future__ import annotations

from typing import Any

from structum_lab.plugins.database._hooks import import_dotted
from structum_lab.plugins.database.errors import ConfigurationError

__all__ = ["session_class_for"]

_KEY = "session_class"


def session_class_for(value: Any, *, is_async: bool, owner: str) -> type[Any]:
    """Check (and for a string, import) an ORM session class for ``owner``.

    Args:
        value: A class, or an import path such as ``"sqlmodel:Session"`` (as configuration gives
            it).
        is_async: True for ``AsyncSQLAlchemyDatabase`` (an ``AsyncSession`` subclass is needed).
        owner: The database class name, for the message.

    Raises:
        ConfigurationError: The path cannot be imported, or the class is not a session class of
            the right kind (sync ``Session`` for ``SQLAlchemyDatabase``, ``AsyncSession`` for
            ``AsyncSQLAlchemyDatabase``).
    """
    from sqlalchemy.ext.asyncio import AsyncSession  # noqa: PLC0415
    from sqlalchemy.orm import Session  # noqa: PLC0415

    cls = (
        import_dotted(value, key=_KEY, example="sqlmodel:Session")
        if isinstance(value, str)
        else value
    )
    base: type[Any] = AsyncSession if is_async else Session
    if isinstance(cls, type) and issubclass(cls, base):
        return cls
    shown = f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else repr(cls)
    if is_async:
        wanted = (
            "sqlalchemy.ext.asyncio.AsyncSession or a subclass "
            "(SQLModel: 'sqlmodel.ext.asyncio.session:AsyncSession')"
        )
    else:
        wanted = "sqlalchemy.orm.Session or a subclass (SQLModel: 'sqlmodel:Session')"
    raise ConfigurationError(f"{owner} {_KEY} must be {wanted}, got {shown}", key=_KEY)
