"""``MockDatabase`` and ``AsyncMockDatabase``: in-memory twins of the database interfaces.

The async twin is written in ``_mock_async.py``; the sync twin in ``_mock_sync.py`` is generated
from it by ``tools/async_to_sync.py``; what both share is in ``_mock_base.py``.
"""

from __future__ import annotations

from ._mock_async import AsyncMockConnection, AsyncMockDatabase
from ._mock_sync import MockConnection, MockDatabase

__all__ = ["AsyncMockConnection", "AsyncMockDatabase", "MockConnection", "MockDatabase"]
