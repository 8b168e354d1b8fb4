"""The backends' default pools: SQLAlchemy's queue pools, made fair, plus a no-wait checkout.

Waiters are served first come, first served (:class:`FairQueue`, :class:`FairAsyncQueue`): under
overload SQLAlchemy's own queues let newcomers take a returned connection before the callers
already waiting, some of whom then time out although the mean wait is far below the timeout.

``health_check()`` must not queue behind the callers waiting for a connection: it asks the pool
for one it can hand out *now* (an idle one) with :func:`checkout_now`, and probes with a
connection of its own otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool
from sqlalchemy.pool.base import ConnectionPoolEntry
from sqlalchemy.util import await_only
from sqlalchemy.util import queue as sqla_queue

__all__ = [
    "FairAsyncQueue",
    "FairQueue",
    "StructumAsyncQueuePool",
    "StructumQueuePool",
    "checkout_now",
    "is_structum_pool",
]

_T = TypeVar("_T")

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


class _Waiter:
    """One caller waiting for a connection in :class:`FairQueue`."""

    __slots__ = ("event", "item", "served")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.item: Any = None
        self.served = False


class FairQueue(sqla_queue.Queue[_T]):
    """SQLAlchemy's queue with first-come, first-served hand-off.

    SQLAlchemy's ``Queue`` wakes a waiter with ``Condition.notify()`` and lets it take the
    connection when it runs again; a caller arriving in between takes it first, and the waiter
    goes back to sleep with less time left. Under load a few waiters are passed over again and
    again until their pool timeout expires while the mean wait is far below it. Here a returned
    connection goes straight to the longest waiter, and nobody takes an idle one while anyone
    waits (psycopg_pool's rule).
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[_Waiter] = deque()

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:  # re-entrant: super().put() takes it again
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.item = item
                waiter.served = True
                waiter.event.set()
                return
            super().put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        with self.mutex:
            if not self._waiters and not self._empty():
                item = self._get()
                self.not_full.notify()
                return item
            if not block:
                raise sqla_queue.Empty
            if timeout is not None and timeout < 0:
                raise ValueError("'timeout' must be a positive number")
            waiter = _Waiter()
            self._waiters.append(waiter)
        waiter.event.wait(timeout)
        with self.mutex:
            if waiter.served:
                item = waiter.item
                waiter.item = None
                return item
            self._waiters.remove(waiter)
        raise sqla_queue.Empty


class FairAsyncQueue(sqla_queue.AsyncAdaptedQueue[_T]):
    """:class:`FairQueue` for asyncio: a returned connection goes to the longest waiting task.

    asyncio's ``Queue.get()`` hands an item to a woken getter only when it runs again, and a
    task calling ``get_nowait()`` in between takes it first. Pool code runs in the event loop's
    thread (inside SQLAlchemy's greenlets); a connection returned from another thread (a
    garbage-collected checkout) is handed over through ``call_soon_threadsafe``.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[_T]] = deque()

    def put_nowait(self, item: _T) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if future.done():
                continue  # timed out or cancelled meanwhile
            loop = future.get_loop()
            if _running_loop() is loop:
                future.set_result(item)
                return
            try:
                loop.call_soon_threadsafe(self._hand_over, future, item)
            except RuntimeError:  # its loop is closed: nobody waits there any more
                continue
            return
        super().put_nowait(item)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        if self._waiters or not block:
            self.put_nowait(item)
            return
        super().put(item, block, timeout)

    def _hand_over(self, future: asyncio.Future[_T], item: _T) -> None:
        if future.done():
            self.put_nowait(item)  # its waiter gave up meanwhile: the next one, or the queue
        else:
            future.set_result(item)

    def get_nowait(self) -> _T:
        if self._waiters:
            raise sqla_queue.Empty
        return super().get_nowait()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        if not self._waiters and not self._queue.empty():
            return super().get_nowait()
        if not block:
            raise sqla_queue.Empty
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            return await_only(asyncio.wait_for(_wait(future), timeout))
        except asyncio.TimeoutError:
            if future.done() and not future.cancelled():
                # Handed over just as the wait ended: keep it rather than lose it.
                return future.result()
            raise sqla_queue.Empty from None
        except BaseException:
            # Cancelled: a connection handed over meanwhile goes to the next waiter.
            if future.done() and not future.cancelled():
                self.put_nowait(future.result())
            raise
        finally:
            if not future.done():
                future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(future)


async def _wait(future: asyncio.Future[_T]) -> _T:
    # shield: wait_for's timeout must not cancel the future a connection may be handed to
    return await asyncio.shield(future)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# SQLAlchemy names a pool's logger after its class's module unless told otherwise, and keeps its
# ``sqlalchemy`` loggers at WARNING by default: its DEBUG records quote the driver's connect errors
# (a mistyped URL may have turned a piece of the password into a host name). These pools log
# under ``sqlalchemy.pool`` like SQLAlchemy's own.


class StructumQueuePool(_NoWaitMixin, QueuePool):
    """SQLAlchemy's ``QueuePool`` with a no-wait checkout for health probes."""

    _queue_class = FairQueue[ConnectionPoolEntry]
    _sqla_logger_namespace = "sqlalchemy.pool.impl.StructumQueuePool"


class StructumAsyncQueuePool(_NoWaitMixin, AsyncAdaptedQueuePool):
    """SQLAlchemy's ``AsyncAdaptedQueuePool`` with a no-wait checkout for health probes."""

    _queue_class = FairAsyncQueue[ConnectionPoolEntry]
    _sqla_logger_namespace = "sqlalchemy.pool.impl.StructumAsyncQueuePool"


def is_structum_pool(pool: Any) -> bool:
    """True for a pool that understands :func:`checkout_now`."""
    return isinstance(pool, _NoWaitMixin)
