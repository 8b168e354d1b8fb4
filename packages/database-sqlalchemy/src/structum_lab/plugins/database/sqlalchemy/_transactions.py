"""Per-transaction options: what runs at BEGIN, what is restored at return; savepoint names."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

from structum_lab.plugins.database.base import logger

__all__ = ["TransactionSetup", "savepoint_name", "transaction_setup"]


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def savepoint_name(name: str) -> str:
    """Check a user-given savepoint name (it is spliced into SQL, so identifiers only)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"savepoint name must be a plain identifier, got {name!r}")
    return name


class TransactionSetup(NamedTuple):
    """How to open one transaction: execution options, statements to run, statements to undo."""

    execution_options: dict[str, Any]
    statements: tuple[str, ...]
    restore: tuple[str, ...]


@lru_cache(maxsize=256)
def transaction_setup(
    dialect: str,
    is_mariadb: bool,
    isolation_level: str | None,
    read_only: bool,
    timeout: float | None,
) -> TransactionSetup:
    """Translate ``transaction()`` options for ``dialect``.

    - ``isolation_level`` goes through SQLAlchemy (which restores it when the connection returns).
    - ``read_only``: PostgreSQL ``postgresql_readonly``; MySQL/MariaDB ``SET TRANSACTION READ
      ONLY``; SQLite ``PRAGMA query_only`` (undone on return).
    - ``timeout``: PostgreSQL ``SET LOCAL statement_timeout``; MariaDB ``SET SESSION
      max_statement_time`` and MySQL ``max_execution_time`` (SELECT only; undone on return);
      ignored on SQLite, which has no statement timeout.

    Raises:
        ValueError: An option has a value the database cannot take.
    """
    options: dict[str, Any] = {}
    statements: list[str] = []
    restore: list[str] = []
    if isolation_level is not None:
        options["isolation_level"] = str(isolation_level).strip().upper().replace("_", " ")
    if read_only:
        if dialect == "postgresql":
            options["postgresql_readonly"] = True
        elif dialect in ("mysql", "mariadb"):
            statements.append("SET TRANSACTION READ ONLY")
        elif dialect == "sqlite":
            statements.append("PRAGMA query_only = 1")
            restore.append("PRAGMA query_only = 0")
        else:
            raise ValueError(f"read_only transactions are not supported on {dialect}")
    if timeout is not None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        millis = max(1, round(timeout * 1000))
        if dialect == "postgresql":
            statements.append(f"SET LOCAL statement_timeout = {millis}")
        elif dialect in ("mysql", "mariadb") and is_mariadb:
            statements.append(f"SET SESSION max_statement_time = {millis / 1000:g}")
            restore.append("SET SESSION max_statement_time = DEFAULT")
        elif dialect == "mysql":
            statements.append(f"SET SESSION max_execution_time = {millis}")
            restore.append("SET SESSION max_execution_time = DEFAULT")
        else:
            logger.debug("transaction timeout ignored: %s has no statement timeout", dialect)
    return TransactionSetup(options, tuple(statements), tuple(restore))
