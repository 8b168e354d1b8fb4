"""Client-side deadlines of transactions (every backend, sync and async).

A server that stops answering (a frozen backend, a network that drops packets) leaves a call
blocked in the driver forever: the server's ``statement_timeout`` cannot fire, TCP keepalives
and ``tcp_user_timeout`` only look at an idle or unacknowledged socket, and ``asyncio.wait_for``
waits for the driver's own cancellation, which waits for the server. ``transaction(timeout=...)``
(or the database's ``transaction_timeout``) therefore arms a :class:`Deadline` here as well: if
the transaction is still running ``grace`` seconds after its timeout, one process-wide watchdog
thread shuts the connection's socket down (``socket.shutdown`` on a duplicate of the driver's
descriptor), so the blocked call fails at once, whatever the server does. The backend then raises
``StatementTimeoutError`` and closes that connection instead of returning it to the pool.

Cost: nothing unless a timeout is set. Armed, a transaction pays one ``dup()``, a heap push and a
``close()`` (a few microseconds); the watchdog sleeps until the nearest deadline and never looks
at a cancelled one again (cancelled entries are dropped lazily and compacted in bulk).

The duplicate descriptor is taken when the deadline is armed, so a late shutdown can only hit the
transaction's own socket, never a new connection that reused the driver's descriptor number after
the driver closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["GRACE", "Deadline", "abandon_psycopg", "arm", "ping_budget", "wait_or_abandon"]

logger = logging.getLogger("structum_lab.plugins.database")

#: Seconds past the timeout before the client acts: the server's own statement timeout (sent
#: with the same value) normally cancels a slow statement first and keeps the connection.
GRACE = 0.25

_ARMED, _FIRED, _CANCELLED = 0, 1, 2
_PQ_ACTIVE = 1  # libpq PQTRANS_ACTIVE: a statement is in flight


class Deadline:
    """One armed deadline of one transaction.

    :meth:`cancel` it when the transaction ends, before the connection is given back;
    :attr:`fired` tells whether the watchdog broke the connection.
    """

    __slots__ = ("_fd", "_interrupt", "seconds", "state", "when")

    def __init__(
        self, seconds: float, when: float, fd: int, interrupt: Callable[[], object] | None
    ) -> None:
        self.seconds = seconds
        self.when = when
        self.state = _ARMED
        self._fd = fd  # our duplicate of the socket (-1: none)
        self._interrupt = interrupt

    @property
    def fired(self) -> bool:
        """True once the watchdog has broken the connection (the transaction ran out of time)."""
        return self.state == _FIRED

    def cancel(self) -> bool:
        """Disarm (idempotent); return True if the deadline had already fired."""
        if self.state == _ARMED:
            _WATCHDOG.cancel(self)
        return self.state == _FIRED

    def _fire(self) -> None:
        """Break the connection (watchdog thread, under its lock: never blocks)."""
        self.state = _FIRED
        fd = self._fd
        if fd >= 0:
            try:
                sock = socket.socket(fileno=fd)
            except OSError as exc:  # pragma: no cover - not a socket after all
                logger.debug("deadline: descriptor %d is not a socket: %s", fd, exc)
            else:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError as exc:  # already disconnected: nothing left to wake
                    logger.debug("deadline: shutdown failed: %s", exc)
                sock.detach()
        if self._interrupt is not None:
            try:
                self._interrupt()
            except Exception as exc:  # pragma: no cover - best effort
                logger.debug("deadline: interrupting the connection failed: %s", exc)

    def _release(self) -> None:
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            with contextlib.suppress(OSError):
                os.close(fd)


class _Watchdog:
    """The thread that fires deadlines; one per process, started on the first armed deadline."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.heap: list[tuple[float, int, Deadline]] = []
        self.cancelled = 0
        self.counter = itertools.count()
        self.thread: threading.Thread | None = None

    def arm(self, deadline: Deadline) -> None:
        with self.lock:
            heap = self.heap
            heapq.heappush(heap, (deadline.when, next(self.counter), deadline))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="structum-db-deadlines", daemon=True
                )
                self.thread.start()
            elif heap[0][2] is deadline:
                self.wakeup.notify()

    def cancel(self, deadline: Deadline) -> None:
        with self.lock:
            if deadline.state != _ARMED:
                return
            deadline.state = _CANCELLED
            deadline._release()
            self.cancelled += 1
            heap = self.heap
            if self.cancelled > 64 and self.cancelled * 2 > len(heap):
                # Long timeouts and short transactions: drop the cancelled entries in one pass.
                self.heap = [entry for entry in heap if entry[2].state == _ARMED]
                heapq.heapify(self.heap)
                self.cancelled = 0

    def _run(self) -> None:
        with self.lock:
            while True:
                heap = self.heap
                while heap and heap[0][2].state != _ARMED:
                    heapq.heappop(heap)
                    self.cancelled = max(0, self.cancelled - 1)
                if not heap:
                    self.wakeup.wait()
                    continue
                when = heap[0][0]
                now = time.monotonic()
                if when > now:
                    self.wakeup.wait(when - now)
                    continue
                deadline = heapq.heappop(heap)[2]
                try:
                    deadline._fire()
                except Exception as exc:  # pragma: no cover - the watchdog must outlive any bug
                    logger.warning("structum-db deadlines: %s: %s", type(exc).__name__, exc)
                finally:
                    deadline._release()

    def after_fork_in_child(self) -> None:
        # The thread did not survive the fork; the parent's deadlines are not ours to fire.
        for entry in self.heap:
            entry[2].state = _CANCELLED
            entry[2]._release()
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.heap = []
        self.cancelled = 0
        self.thread = None


_WATCHDOG = _Watchdog()


def arm(
    seconds: float, *, fd: int | None = None, interrupt: Callable[[], object] | None = None
) -> Deadline:
    """Arm a deadline ``seconds`` (+ :data:`GRACE`) from now.

    Args:
        seconds: The transaction's timeout.
        fd: The connection's socket descriptor: duplicated now, shut down when the deadline fires.
        interrupt: Called (from the watchdog thread) when it fires, e.g. ``sqlite3``'s
            ``interrupt()`` for a connection without a socket.

    Returns:
        The armed deadline; :meth:`Deadline.cancel` it when the transaction ends.
    """
    dup = -1
    if fd is not None and fd >= 0:
        try:
            dup = os.dup(fd)
        except OSError as exc:  # the driver already closed it: nothing to break
            logger.debug("deadline: cannot duplicate descriptor %d: %s", fd, exc)
    deadline = Deadline(seconds, time.monotonic() + seconds + GRACE, dup, interrupt)
    _WATCHDOG.arm(deadline)
    return deadline


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG.after_fork_in_child)


def ping_budget(health_timeout: float) -> float:
    """What to :func:`arm` for a health probe's ping on a pooled connection.

    It fires after half of ``health_timeout`` (``GRACE`` included), leaving the other half to a
    probe on a connection of its own.
    """
    return max(health_timeout / 2 - GRACE, 0.01)


_wait_async: Any = None  # psycopg.waiting.wait_async, imported at the first call


async def wait_or_abandon(
    self: Any, gen: Any, interval: float = 0.1, timeout: float | None = None
) -> Any:
    """Psycopg's ``AsyncConnection.wait()``, except when the task is cancelled.

    psycopg then asks the server to cancel the statement and waits for its answer (up to 10 s),
    which never comes from a frozen server, so ``asyncio.wait_for`` would not return. Here the
    connection, whose state is unknown, is closed at once (:func:`abandon_psycopg`); the pool
    replaces it. The psycopg connection classes of both backends use it as their ``wait``
    method (``wait = wait_or_abandon``): it runs on every round trip, so no wrapper frame and no
    import per call (psycopg is imported at the first call: core does not depend on it).
    """
    global _wait_async  # noqa: PLW0603 - a one-time lazy import
    wait_async = _wait_async
    if wait_async is None:
        from psycopg.waiting import wait_async  # noqa: PLC0415 - only for psycopg connections

        _wait_async = wait_async
    try:
        if timeout is None:
            return await wait_async(gen, self.pgconn.socket, interval=interval)
        return await wait_async(gen, self.pgconn.socket, interval=interval, timeout=timeout)
    except (asyncio.CancelledError, KeyboardInterrupt):
        abandon_psycopg(self.pgconn)
        raise


def abandon_psycopg(pgconn: Any) -> None:
    """Close a psycopg connection interrupted mid-statement, without waiting for the server.

    Its state is unknown (a statement may be running), so it must not be used again; waiting for
    the server to acknowledge a cancel request is what hangs on a frozen server. The cancel
    request is still sent, from a daemon thread (best effort), so a healthy server stops the
    statement instead of running it to the end for nobody.
    """
    cancel = None
    if pgconn.transaction_status == _PQ_ACTIVE:
        try:
            cancel = pgconn.get_cancel()
        except Exception:  # already broken: nothing to cancel
            cancel = None
    pgconn.finish()
    if cancel is not None:
        threading.Thread(
            target=_send_cancel, args=(cancel,), name="structum-db-cancel", daemon=True
        ).start()


def _send_cancel(cancel: Any) -> None:
    try:
        cancel.cancel()
    except Exception as exc:
        logger.debug("cancel request failed: %s", exc)
