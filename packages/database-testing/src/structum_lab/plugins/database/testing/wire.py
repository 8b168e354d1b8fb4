"""Round trips on the wire: a TCP proxy on loopback that counts them.

A client that waits for the server's answer before it goes on (every PostgreSQL driver outside
a pipeline, and a pipeline between its flushes) makes one *round trip* each time it sends
something after the server last spoke. The proxy sits between the client and the server,
relays bytes unchanged, and counts, per connection, every change of direction from "server
spoke last" to "client sends": that count is exact whatever the timing, and the same for every
driver (psycopg, SQLAlchemy over psycopg, asyncpg, pgbench's libpq).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

__all__ = ["RoundTripProxy", "counting_proxy"]


class _Pair:
    """One proxied connection: who spoke last, and the client's sends that followed the server."""

    __slots__ = ("lock", "server_spoke")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server_spoke = True  # the connection's first bytes are the client's: one round trip


class RoundTripProxy:
    """Listens on ``127.0.0.1`` (a free port) and forwards to ``host:port``; counts round trips."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._round_trips = 0
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="round-trip-proxy", daemon=True).start()

    @property
    def round_trips(self) -> int:
        """Round trips so far, over every connection made through the proxy."""
        with self._lock:
            return self._round_trips

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            pair = _Pair()
            for src, dst, from_client in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair, from_client), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: _Pair, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                # Counted before forwarding: the answer cannot overtake the count.
                with pair.lock:
                    if from_client and pair.server_spoke:
                        with self._lock:
                            self._round_trips += 1
                    pair.server_spoke = not from_client
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def url(self, url: str) -> str:
        """``url`` (``postgresql://…``) pointing at the proxy instead of the server."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def close(self) -> None:
        """Stop listening and cut every proxied connection."""
        if self._closed:
            return
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with suppress(OSError):
                sock.close()


@contextmanager
def counting_proxy(url: str) -> Iterator[RoundTripProxy]:
    """A :class:`RoundTripProxy` in front of the server of ``url`` for the ``with`` block."""
    parts = urlsplit(url)
    proxy = RoundTripProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        yield proxy
    finally:
        proxy.close()
