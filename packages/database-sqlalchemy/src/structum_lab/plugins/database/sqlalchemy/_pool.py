"""The pool classes the backends use by default: SQLAlchemy's queue pools, plus a no-wait checkout.

``health_check()`` must not queue behind the callers waiting for a connection: it asks the pool
for one it can hand out *now* (an idle one) with :func:`checkout_now`, and probes with a
connection of its own otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool
from sqlalchemy.pool.base import ConnectionPoolEntry
from sqlalchemy.util import queue as sqla_queue

__all__ = ["StructumAsyncQueuePool", "StructumQueuePool", "checkout_now", "is_structum_pool"]

# Set by checkout_now() and consumed by the next _do_get() of the same thread, before anything
# can switch away (greenlets of an async engine share the thread but do not interleave there).
_local = threading.local()


@contextmanager
def checkout_now() -> Iterator[None]:
    """Within the block, the first checkout from a Structum pool never waits.

    It gets an idle connection, or raises ``sqlalchemy.exc.TimeoutError`` at once (it opens
    none: a connect is bounded by the driver's own timeout, not the probe's).
    """
    _local.nowait = True
    try:
        yield
    finally:
        _local.nowait = False


class _NoWaitMixin:
    """``_do_get()`` that honours :func:`checkout_now`."""

    _pool: sqla_queue.QueueCommon[ConnectionPoolEntry]

    def _do_get(self) -> ConnectionPoolEntry:
        if getattr(_local, "nowait", False):
            _local.nowait = False
            try:
                return self._pool.get(False)
            except sqla_queue.Empty:
                raise sa_exc.TimeoutError("no idle connection now", code="3o7r") from None
        return super()._do_get()  # type: ignore[misc,no-any-return]


# SQLAlchemy names a pool's logger after its class's module unless told otherwise, and keeps its
# ``sqlalchemy`` loggers at WARNING by default: its DEBUG records quote the driver's connect errors
# (a mistyped URL may have turned a piece of the password into a host name). These pools log
# under ``sqlalchemy.pool`` like SQLAlchemy's own.


class StructumQueuePool(_NoWaitMixin, QueuePool):
    """SQLAlchemy's ``QueuePool`` with a no-wait checkout for health probes."""

    _sqla_logger_namespace = "sqlalchemy.pool.impl.StructumQueuePool"


class StructumAsyncQueuePool(_NoWaitMixin, AsyncAdaptedQueuePool):
    """SQLAlchemy's ``AsyncAdaptedQueuePool`` with a no-wait checkout for health probes."""

    _sqla_logger_namespace = "sqlalchemy.pool.impl.StructumAsyncQueuePool"


def is_structum_pool(pool: Any) -> bool:
    """True for a pool that understands :func:`checkout_now`."""
    return isinstance(pool, _NoWaitMixin)
