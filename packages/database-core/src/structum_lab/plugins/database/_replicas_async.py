"""The replica router's watchers (``_replicas_sync.py`` is generated from this file).

The async twin watches with one task per node on the event loop that first needs the router; the
sync twin with one daemon thread per node. Each watcher runs one cheap query per
``replica_check_interval``; nothing is measured per transaction. See ``_replicas.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from ._acompat import asleep
from ._replicas import PRIMARY_SQL, REPLICA_SQL, Node, ReplicaState
from .health import HealthResult

if True:  # ASYNC
    pass
else:
    import threading

__all__ = ["AsyncReplicaRouter"]


class AsyncReplicaRouter(ReplicaState):
    """Routes reads to replicas (see ``ReplicaState``) and runs their watchers."""

    def __init__(self, primary: Any, replicas: list[Any], *, max_lag: float, interval: float):
        super().__init__(primary, replicas, max_lag=max_lag, interval=interval)
        self._pid = 0
        if True:  # ASYNC
            self._tasks: list[asyncio.Task[None]] = []
        else:
            self._lock = threading.Lock()

    def ensure_watching(self) -> None:
        """Start the watchers if they are not running (first use, new event loop, fork)."""
        if True:  # ASYNC
            tasks = self._tasks
            if tasks and not tasks[0].done() and self._pid == os.getpid():
                return
            if self.stopped:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # not in the event loop: the next read from inside it starts them
            self._pid = os.getpid()
            self._tasks = [loop.create_task(self._watch_primary())]
            self._tasks += [loop.create_task(self._watch_replica(n)) for n in self.nodes]
        else:
            if self._pid == os.getpid() or self.stopped:
                return
            with self._lock:
                if self._pid == os.getpid():
                    return
                self._pid = os.getpid()
                name = f"structum-replicas-{self.primary.name}"
                targets: list[Any] = [(self._watch_primary, ())]
                targets += [(self._watch_replica, (n,)) for n in self.nodes]
                for target, args in targets:
                    threading.Thread(target=target, args=args, name=name, daemon=True).start()

    def pick_watched(self) -> Any:
        """:meth:`pick`, starting the watchers first if needed."""
        self.ensure_watching()
        return self.pick()

    def _watching(self, pid: int) -> bool:
        """Whether a watcher started in process ``pid`` goes on (not after shutdown or fork)."""
        return not self.stopped and pid == os.getpid()

    async def _watch_primary(self) -> None:
        pid = os.getpid()
        while self._watching(pid):
            taken = time.monotonic()
            try:
                row = await self._query(self.primary, PRIMARY_SQL)
            except Exception as exc:
                if not self._watching(pid):
                    return  # shut down while asking
                self.primary_failed(exc)
            else:
                self.observe_primary(taken, None if row is None else row["lsn"])
            await asleep(max(0.0, self.interval - (time.monotonic() - taken)))

    async def _watch_replica(self, node: Node) -> None:
        pid = os.getpid()
        while self._watching(pid):
            taken = time.monotonic()
            try:
                row = await self._query(node.db, REPLICA_SQL)
            except Exception as exc:
                if not self._watching(pid):
                    return  # shut down while asking
                self.replica_failed(node, exc)
            else:
                if row is None:
                    self.observe_replica(node, False, None)
                else:
                    self.observe_replica(node, bool(row["standby"]), row["replay"])
            await asleep(max(0.0, self.interval - (time.monotonic() - taken)))

    async def _query(self, db: Any, sql: str) -> Any:
        if db.closed:
            self.stopped = True
            raise RuntimeError("shut down")
        if True:  # ASYNC: a node that does not answer must not stall its watcher forever
            return await asyncio.wait_for(db.fetchone(sql), timeout=max(5.0, 4 * self.interval))
        else:
            return db.fetchone(sql)

    def health(self, primary: HealthResult) -> HealthResult:
        """``primary``'s result graded with what the replica watchers see."""
        self.ensure_watching()
        return self.grade(primary)

    async def shutdown(self) -> None:
        """Stop the watchers and shut every replica's pool down."""
        self.stopped = True
        if True:  # ASYNC
            for task in self._tasks:
                task.cancel()
            self._tasks = []
        for node in self.nodes:
            await node.db.shutdown()
