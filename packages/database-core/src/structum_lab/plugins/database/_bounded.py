"""Blocking calls bounded by a deadline, for the sync twins (the async ones use ``wait_for``).

``health_check()`` opens a short-lived connection when the pool has none free; a connect to a
frozen server blocks in the driver until its own ``connect_timeout``, which may exceed
``health_timeout`` (libpq's smallest is 2 s, SQLAlchemy's drivers have their own). The connect
runs on a daemon thread instead, and the caller stops waiting at the deadline; a connection that
arrives after it is closed by ``discard``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["call_within"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("abandoned", "discard", "done", "error", "fn", "lock", "result")

    def __init__(self, fn: Callable[[], T], discard: Callable[[T], Any]) -> None:
        self.fn = fn
        self.discard = discard
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:
            self.error = exc
            result = None
        with self.lock:
            late = self.abandoned
            self.result = result
            self.done.set()
        if late and result is not None:
            with contextlib.suppress(Exception):  # nobody is left to tell
                self.discard(result)


def call_within(fn: Callable[[], T], timeout: float, discard: Callable[[T], Any]) -> T:
    """Return ``fn()``, run on a daemon thread, or raise ``TimeoutError`` after ``timeout`` s.

    Args:
        fn: The blocking call.
        timeout: Seconds to wait for it.
        discard: Called with a result that arrives after the caller gave up (closes it).

    Raises:
        TimeoutError: ``fn()`` did not return in time (it goes on; its result is discarded).
        BaseException: Whatever ``fn()`` raised.
    """
    call = _Call(fn, discard)
    thread = threading.Thread(target=call.run, name="structum-bounded-call", daemon=True)
    thread.start()
    if not call.done.wait(max(timeout, 0.0)):
        with call.lock:
            if not call.done.is_set():
                call.abandoned = True
                raise TimeoutError(f"no answer within {timeout:g}s")
    if call.error is not None:
        error = call.error
        call.error = None  # no reference cycle through the traceback
        raise error
    assert call.result is not None
    return call.result
