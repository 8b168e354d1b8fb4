"""Client-side deadlines (``_deadlines.py``): fire on time, never after cancel, cheap to disarm."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from structum_lab.plugins.database import ConfigurationError
from structum_lab.plugins.database._deadlines import _WATCHDOG, GRACE, arm
from structum_lab.plugins.database._state import DatabaseState


def test_a_deadline_shuts_the_socket_down_so_a_blocked_read_returns() -> None:
    ours, server = socket.socketpair()
    try:
        deadline = arm(0.05, fd=ours.fileno())
        began = time.monotonic()
        assert ours.recv(1) == b""  # blocked until the watchdog shut the socket down
        took = time.monotonic() - began
        assert deadline.fired
        assert deadline.cancel() is True  # cancel after firing reports it
        assert took >= 0.05
    finally:
        ours.close()
        server.close()


def test_a_cancelled_deadline_never_fires_and_releases_its_descriptor() -> None:
    ours, server = socket.socketpair()
    try:
        deadline = arm(0.05, fd=ours.fileno())
        assert deadline._fd >= 0  # our own duplicate of the socket
        assert deadline.cancel() is False
        assert deadline._fd == -1  # closed at once
        time.sleep(0.05 + GRACE + 0.1)
        assert not deadline.fired
        server.sendall(b"x")
        assert ours.recv(1) == b"x"  # the socket still works
    finally:
        ours.close()
        server.close()


def test_interrupt_is_called_when_there_is_no_socket() -> None:
    called = threading.Event()
    deadline = arm(0.01, interrupt=called.set)
    assert called.wait(2.0)
    assert deadline.fired


def test_cancelled_deadlines_are_compacted() -> None:
    deadlines = [arm(3600.0) for _ in range(500)]
    for deadline in deadlines:
        deadline.cancel()
    with _WATCHDOG.lock:
        live = sum(1 for entry in _WATCHDOG.heap if not entry[2].state)
        assert len(_WATCHDOG.heap) - live <= 64 or len(_WATCHDOG.heap) < 2 * 64 + 2 * live


def test_an_earlier_deadline_wakes_the_watchdog() -> None:
    late = arm(3600.0)
    called = threading.Event()
    early = arm(0.01, interrupt=called.set)
    try:
        assert called.wait(2.0)
        assert early.fired
        assert not late.fired
    finally:
        late.cancel()


@pytest.mark.parametrize("value", [0, -1, "1", True, float("nan")])
def test_transaction_timeout_is_checked(value: object) -> None:
    with pytest.raises(ConfigurationError, match="transaction_timeout"):
        DatabaseState("sqlite://", transaction_timeout=value)  # type: ignore[arg-type]


def test_transaction_timeout_defaults_to_off() -> None:
    assert DatabaseState("sqlite://").transaction_timeout is None
    assert DatabaseState("sqlite://", transaction_timeout=2).transaction_timeout == 2.0
