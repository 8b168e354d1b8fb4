"""One name per side for the primitives whose sync and async forms differ (psycopg's ``_acompat``).

``tools/async_to_sync.py`` maps each async name here to its sync partner, so the async sources can
be written once and their sync twins generated.
"""

from __future__ import annotations

import asyncio
import time
from asyncio import current_task
from threading import get_ident
from typing import Any

__all__ = ["AsyncOwner", "Owner", "asleep", "current_task", "get_ident", "sleep"]

# Who is "inside" a transaction: the sync twins key it by thread, the async ones by task (a child
# task inherits the context, but must not share its parent's connection).
Owner = int
AsyncOwner = asyncio.Task[Any] | None

sleep = time.sleep


async def asleep(seconds: float) -> None:
    """``asyncio.sleep``; its sync twin is ``time.sleep``."""
    await asyncio.sleep(seconds)
