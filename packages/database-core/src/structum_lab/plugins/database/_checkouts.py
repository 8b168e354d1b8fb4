"""Who holds which connection: leak detection, dropped connections, fork safety (all backends).

Three things every backend needs and implements once, here:

- **Leak detection** (HikariCP's ``leakDetectionThreshold``): with ``leak_detection_threshold``
  set, every checkout records when and where (the stack) it happened; one process-wide watchdog
  thread logs one WARNING for a connection held longer, and an INFO if it comes back later.
  Off (``None``, the default), a ``transaction()`` costs one attribute test and nothing else.
- **Dropped connections**: a connection from ``get_connection()`` that its caller drops without
  ``close()`` is rolled back and returned to the pool when it is garbage collected, with a
  WARNING naming where it was taken. The ``weakref.finalize`` callback only queues the work
  (``SimpleQueue.put`` is safe inside a garbage-collector callback); the watchdog thread does it,
  or, for an asyncio connection, schedules it on the event loop it was taken in.
- **Fork safety**: ``os.register_at_fork`` runs :func:`_after_fork_in_child` in a child process;
  every database of the parent forgets its pool there (the backend's ``_after_fork()`` hook makes
  a fresh one and keeps the inherited connections referenced forever, so nothing is ever sent on
  them), and the child opens its own connections on first use. No check runs on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from types import CodeType, FrameType
from typing import Any

from . import _observe
from .errors import ConfigurationError

__all__ = [
    "CheckoutTracker",
    "Ticket",
    "blind_socket",
    "keep_inherited",
    "leak_threshold",
    "register_database",
]

logger = logging.getLogger("structum_lab.plugins.database")

# Frames of these modules are ours: "where a connection was taken" is the first frame outside.
_LIBRARY = "structum_lab.plugins.database"
_STACK_LIMIT = 40
_MANUAL = "get_connection()"


def leak_threshold(value: Any, owner: str) -> float | None:
    """Check ``leak_detection_threshold``: seconds > 0, or None (off).

    Raises:
        ConfigurationError: Not a number > 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{owner}: leak_detection_threshold must be a number of seconds > 0, or None to "
            f"turn leak detection off, got {value!r}",
            key="leak_detection_threshold",
        )
    return float(value)


def _caller_frame() -> FrameType | None:
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_LIBRARY):
        frame = frame.f_back
    return frame


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return "an unknown place"
    code = frame.f_code
    return f'File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}'


class Ticket:
    """One checked-out connection being watched (by the leak detector, a finalizer, or both)."""

    __slots__ = (
        "deadline",
        "finalizer",
        "kind",
        "since",
        "stack",
        "thread",
        "tracker",
        "warned",
        "where",
    )

    def __init__(self, tracker: CheckoutTracker, kind: str) -> None:
        self.tracker = tracker
        self.kind = kind
        self.since = time.monotonic()
        self.deadline = 0.0
        self.warned = False
        self.finalizer: weakref.finalize[Any, Any] | None = None
        self.thread = threading.current_thread().name
        frame = _caller_frame()
        self.where = _where(frame)
        # The whole stack only when leak detection is on: the WARNING shows it. Code objects and
        # line numbers only (no frames: they would keep the caller's locals alive); file lines
        # are read when a WARNING is written.
        self.stack: list[tuple[CodeType, int]] | None = None
        if tracker.threshold is not None:
            stack: list[tuple[CodeType, int]] = []
            while frame is not None and len(stack) < _STACK_LIMIT:
                stack.append((frame.f_code, frame.f_lineno))
                frame = frame.f_back
            self.stack = stack

    def checkin(self, conn: Any) -> None:
        """The connection went back to the pool (``conn`` is the object that carried us)."""
        conn._ticket = None
        self.tracker._checkin(self)

    def fields(self, event: str) -> dict[str, Any]:
        """Structured fields of a log record about this connection (``extra=``).

        ``structum_event`` names what happened; ``structum_taken_at`` is where the connection was
        checked out, as plain data a log pipeline can group by.
        """
        return {"structum_event": event, "structum_taken_at": self.where}

    def describe(self) -> str:
        """``get_connection() at File ..., line ...`` and, when captured, the stack."""
        text = f"{self.kind} in thread {self.thread!r} at {self.where}"
        if self.stack is not None:
            summary = traceback.StackSummary.from_list(
                [(code.co_filename, line, code.co_name, None) for code, line in self.stack[::-1]]
            )
            text += "\n" + "".join(summary.format()).rstrip()
        return text


class CheckoutTracker:
    """The connections one database handed out that are watched, and how many are past due."""

    def __init__(self, owner: str, threshold: float | None) -> None:
        self.owner = owner  # the masked URL or name shown in messages
        self.threshold = threshold
        self.metric_attrs: dict[str, Any] | None = None  # set by the database (_observe)
        self.live: set[Ticket] = set()  # watched and not back yet
        self.warned: set[Ticket] = set()  # past the threshold and not back yet
        self.pending: deque[Ticket] = deque()  # by deadline (one threshold: FIFO), for the watchdog
        self.lock = threading.Lock()

    @property
    def leaked(self) -> int:
        """Connections held longer than the threshold right now."""
        return len(self.warned)

    # -- checkout ---------------------------------------------------------------------------
    def track(self, conn: Any, kind: str) -> Ticket:
        """Watch a connection just checked out (leak detection on)."""
        ticket = Ticket(self, kind)
        conn._ticket = ticket
        self.live.add(ticket)
        if self.threshold is not None:
            ticket.deadline = ticket.since + self.threshold
            with self.lock:
                self.pending.append(ticket)
                first = len(self.pending) == 1
            _WATCHDOG.watch(self, wake=first)
        return ticket

    def handout(
        self,
        conn: Any,
        reclaim: Callable[[], Any] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Ticket:
        """Watch a ``get_connection()`` connection: reclaimed if its caller drops it.

        Args:
            conn: The connection handed to the caller.
            reclaim: Rolls the connection back and returns it (a coroutine function for an
                asyncio backend); it must not refer to ``conn``.
            loop: The event loop ``conn`` belongs to (asyncio backends), else None.
        """
        ticket = self.track(conn, _MANUAL)
        if reclaim is not None:
            finalizer = weakref.finalize(conn, _WATCHDOG.submit, (ticket, reclaim, loop))
            finalizer.atexit = False  # at exit a connection still held is not a dropped one
            ticket.finalizer = finalizer
            _WATCHDOG.ensure_running()
        return ticket

    # -- return -----------------------------------------------------------------------------
    def _checkin(self, ticket: Ticket) -> None:
        if ticket.finalizer is not None:
            ticket.finalizer.detach()
        if _observe._STATE.on and ticket.kind == _MANUAL:  # (transaction() records its own)
            _observe.record_use(self.metric_attrs, time.monotonic() - ticket.since)
        self.live.discard(ticket)
        if self.threshold is None:
            return
        with self.lock:
            ticket.deadline = 0.0  # back: dropped from the queue once it reaches the head
            pending = self.pending
            while pending and pending[0].deadline == 0.0:
                pending.popleft()  # mostly this ticket: the queue stays as short as the load
            warned = ticket.warned
            if warned:
                self.warned.discard(ticket)
        if warned:
            logger.info(
                "%s: the connection reported as leaked (%s) was returned after %.1fs",
                self.owner,
                ticket.kind,
                time.monotonic() - ticket.since,
                extra=ticket.fields("connection_leak_returned"),
            )

    def _dropped(self, ticket: Ticket) -> None:
        """A finalizer found the caller's connection unreachable (before reclaiming it)."""
        self.live.discard(ticket)
        with self.lock:
            ticket.deadline = 0.0
            self.warned.discard(ticket)
        logger.warning(
            "%s: a connection taken by %s was dropped without close(); rolling it back and "
            "returning it to the pool. Close it (`with db.get_connection() as conn:`) or use "
            "db.transaction()",
            self.owner,
            ticket.describe(),
            extra=ticket.fields("connection_dropped"),
        )

    # -- watchdog ---------------------------------------------------------------------------
    def _due(self, now: float) -> tuple[list[Ticket], float | None]:
        """Tickets past their deadline (marked warned) and the next deadline, if any."""
        due: list[Ticket] = []
        with self.lock:
            pending = self.pending
            while pending:
                head = pending[0]
                if head.deadline == 0.0:  # already back
                    pending.popleft()
                elif head.deadline <= now:
                    pending.popleft()
                    head.warned = True
                    self.warned.add(head)
                    due.append(head)
                else:
                    return due, head.deadline
        return due, None

    def _warn(self, ticket: Ticket, now: float) -> None:
        _observe.count_leak(self.metric_attrs)
        logger.warning(
            "%s: a connection has been checked out for %.1fs, longer than "
            "leak_detection_threshold=%gs (possible leak); taken by %s",
            self.owner,
            now - ticket.since,
            self.threshold,
            ticket.describe(),
            extra=ticket.fields("connection_leak"),
        )

    # -- shutdown and fork ------------------------------------------------------------------
    def outstanding(self) -> list[Ticket]:
        """Watched connections not back yet (for the shutdown report)."""
        return list(self.live)

    def forget_inherited(self) -> list[Any]:
        """In a forked child: drop every ticket; return the live ``get_connection()`` connections.

        Their finalizers are detached: rolling them back here would talk on the parent's sockets.
        """
        conns: list[Any] = []
        for ticket in list(self.live):
            if ticket.finalizer is not None:
                info = ticket.finalizer.peek()
                ticket.finalizer.detach()
                if info is not None:
                    conns.append(info[0])
        self.live = set()
        self.warned = set()
        self.pending = deque()
        self.lock = threading.Lock()  # another thread of the parent may have held it
        return conns


class _Watchdog:
    """The process-wide thread that warns about leaks and reclaims dropped connections."""

    def __init__(self) -> None:
        self.jobs: SimpleQueue[tuple[Ticket, Callable[[], Any], Any] | None] = SimpleQueue()
        self.trackers: weakref.WeakSet[CheckoutTracker] = weakref.WeakSet()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    def ensure_running(self) -> None:
        if self.thread is None:
            with self.start_lock:
                if self.thread is None:
                    thread = threading.Thread(
                        target=self._run, name="structum-db-watchdog", daemon=True
                    )
                    thread.start()
                    self.thread = thread

    def watch(self, tracker: CheckoutTracker, *, wake: bool) -> None:
        if tracker not in self.trackers:
            self.trackers.add(tracker)
            wake = True
        self.ensure_running()
        if wake:
            self.jobs.put(None)

    def submit(self, job: tuple[Ticket, Callable[[], Any], Any]) -> None:
        # Called by weakref.finalize, possibly inside the garbage collector: only queue.
        self.jobs.put(job)

    def _run(self) -> None:
        while True:
            try:
                timeout = self._scan()
                try:
                    job = self.jobs.get(timeout=timeout)
                except Empty:
                    continue
                if job is not None:
                    self._dispatch(*job)
            except Exception as exc:  # pragma: no cover - the watchdog must outlive any bug
                logger.warning("structum-db watchdog: %s: %s", type(exc).__name__, exc)
                time.sleep(0.1)

    @staticmethod
    def _dispatch(ticket: Ticket, reclaim: Callable[[], Any], loop: Any) -> None:
        ticket.tracker._dropped(ticket)
        if loop is None:
            # Returning a connection is I/O that may block (a server that stopped answering):
            # never in this thread, which must stay free to warn about leaks on time.
            threading.Thread(
                target=_Watchdog._reclaim,
                args=(ticket, reclaim, None),
                name="structum-db-reclaim",
                daemon=True,
            ).start()
        else:
            _Watchdog._reclaim(ticket, reclaim, loop)

    def _scan(self) -> float | None:
        now = time.monotonic()
        nearest: float | None = None
        for tracker in list(self.trackers):
            due, deadline = tracker._due(now)
            for ticket in due:
                tracker._warn(ticket, now)
            if deadline is not None and (nearest is None or deadline < nearest):
                nearest = deadline
        return None if nearest is None else max(nearest - time.monotonic(), 0.0)

    @staticmethod
    def _reclaim(ticket: Ticket, reclaim: Callable[[], Any], loop: Any) -> None:
        try:
            if loop is None:
                reclaim()
            elif loop.is_closed():
                logger.warning(
                    "%s: the event loop of the dropped connection is closed; it cannot be "
                    "returned and is lost to the pool",
                    ticket.tracker.owner,
                )
            else:
                asyncio.run_coroutine_threadsafe(reclaim(), loop)
        except Exception as exc:
            logger.warning(
                "%s: returning a dropped connection failed: %s: %s",
                ticket.tracker.owner,
                type(exc).__name__,
                exc,
            )

    def after_fork_in_child(self) -> None:
        # The thread did not survive the fork and the queue's lock may be held: start over.
        self.jobs = SimpleQueue()
        self.thread = None
        self.start_lock = threading.Lock()


_WATCHDOG = _Watchdog()

# -- fork ------------------------------------------------------------------------------------
# Every database object of this process; the child's hook asks each one to forget its pool.
_DATABASES: weakref.WeakSet[Any] = weakref.WeakSet()
# What a child inherited and must never close, finalize or use: kept referenced until exit.
_INHERITED: list[Any] = []


def register_database(db: Any) -> None:
    """Make ``db`` forget its pool in a child process after ``os.fork()``."""
    _DATABASES.add(db)


def keep_inherited(*objects: Any) -> None:
    """Keep connections (or pools) inherited from the parent alive, untouched, until exit.

    Garbage-collecting them would close them: some drivers then send a goodbye on the socket
    the parent still uses, and SQLAlchemy would roll back a checked-out one first.
    """
    _INHERITED.extend(objects)


def blind_socket(fd: int) -> None:
    """Swap this process's copy of an inherited socket for ``/dev/null``.

    The parent's copy is untouched (nothing is sent: the socket stays open there), and a stray
    use of the inherited connection in this process fails instead of talking on the parent's
    session. The descriptor number stays taken, so no new socket of ours can reuse it.
    """
    devnull = os.open(os.devnull, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        os.dup2(devnull, fd, inheritable=False)
    finally:
        os.close(devnull)


def _after_fork_in_child() -> None:
    _WATCHDOG.after_fork_in_child()
    for db in list(_DATABASES):
        try:
            db._after_fork()
        except Exception as exc:  # pragma: no cover - a broken database must not kill the child
            logger.warning("resetting %r after fork failed: %s", db, exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
