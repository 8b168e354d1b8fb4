"""State and checks shared by every backend, sync and async (psycopg_pool's ``base.py`` role).

A backend subclasses :class:`SyncDatabaseBase` or :class:`AsyncDatabaseBase` and supplies three
hooks: ``_begin()`` (check a connection out and start a transaction), ``_end(conn, commit)``
(commit or roll back, then give the connection back, never leaking it) and ``_probe()`` (one
round trip, for health). Nesting, savepoints, the closed check, health grading, masking and error
wording live here once: :class:`DatabaseState` in ``_state.py``, the transaction machinery in
``_base_async.py``, whose sync twin ``_base_sync.py`` is generated from it.
"""

from __future__ import annotations

from ._base_async import AsyncDatabaseBase
from ._base_sync import SyncDatabaseBase
from ._state import DatabaseState, logger

__all__ = ["AsyncDatabaseBase", "DatabaseState", "SyncDatabaseBase", "logger"]
