"""Is an idle pooled connection already dead? Answered locally, without a round trip.

A server that ends an idle session (``pg_terminate_backend``, ``idle_session_timeout``, a
restart, MariaDB's ``KILL``) writes its last words and closes the socket; both arrive at the
client at once on any working network. An idle pooled connection has nothing to read: if its
socket is readable, the server has spoken out of turn (almost always to hang up). Asking the
kernel costs one ``poll()`` system call and no round trip, where a validation ping costs one.

Backends use this at checkout and ping (or discard) only the connections it flags; a connection
that dies in the instant between this check and the first statement is replaced at that
statement (each backend's ``execute()``), which is safe while nothing of the transaction ran.
"""

from __future__ import annotations

import select

__all__ = ["socket_readable"]

if hasattr(select, "poll"):
    _POLLIN = select.POLLIN | getattr(select, "POLLRDHUP", 0)
    _poll = select.poll

    def socket_readable(fd: int) -> bool:
        """True when ``fd`` has something to read or was closed by the peer (never blocks)."""
        poller = _poll()
        poller.register(fd, _POLLIN)
        return bool(poller.poll(0))

else:  # pragma: no cover - Windows: select() takes sockets only, which is what we pass

    def socket_readable(fd: int) -> bool:
        """True when ``fd`` has something to read or was closed by the peer (never blocks)."""
        return bool(select.select([fd], [], [], 0)[0])
