"""Fork safety on every backend: a database opened before ``os.fork()`` works in both processes.

What ``gunicorn --preload``, Celery's prefork pool and ``multiprocessing`` do: the parent opens
the pool (and uses it), then forks. Without care both processes talk on the same sockets and read
each other's rows. Each test here runs transactions in the parent and the child at the same time,
each selecting its own value, and counts wrong rows and errors on both sides (both must be 0).

Every wait is bounded: a child that hangs is killed and the test fails, it never hangs the suite.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")

ROUNDS = 60
CHILD_LIMIT = 60  # seconds a child may take before it is killed (and the test fails)


def _work(db: Any, tag: str, rounds: int = ROUNDS) -> dict[str, Any]:
    """``rounds`` transactions, each reading back its own value; count what goes wrong."""
    wrong = errors = 0
    messages: list[str] = []
    for i in range(rounds):
        value = f"{tag}-{i}"
        try:
            with db.transaction() as conn:
                got = conn.execute("SELECT :v AS v", {"v": value}).scalar()
            wrong += got != value
        except Exception as exc:  # counted, and the first ones reported
            errors += 1
            messages.append(f"{type(exc).__name__}: {exc}"[:200])
    return {"wrong": wrong, "errors": errors, "messages": messages[:3]}


async def _awork(db: Any, tag: str, rounds: int = ROUNDS) -> dict[str, Any]:
    wrong = errors = 0
    messages: list[str] = []
    for i in range(rounds):
        value = f"{tag}-{i}"
        try:
            async with db.transaction() as conn:
                got = await (await conn.execute("SELECT :v AS v", {"v": value})).scalar()
            wrong += got != value
        except Exception as exc:
            errors += 1
            messages.append(f"{type(exc).__name__}: {exc}"[:200])
    return {"wrong": wrong, "errors": errors, "messages": messages[:3]}


def _fork(child: Callable[[], dict[str, Any]]) -> tuple[int, int]:
    """Fork; the child runs ``child()`` and writes its result to a pipe. Returns (pid, read end)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 0
        try:
            os.close(read)
            signal.alarm(CHILD_LIMIT)  # a hang in the child kills it
            result = child()
        except BaseException as exc:
            result = {"wrong": -1, "errors": -1, "messages": [f"child crashed: {exc!r}"]}
            status = 1
        try:
            os.write(write, json.dumps(result).encode())
        finally:
            os._exit(status)
    os.close(write)
    return pid, read


def _child_result(pid: int, read: int) -> dict[str, Any]:
    """Wait (bounded) for the child and read what it reported."""
    deadline = time.monotonic() + CHILD_LIMIT + 10
    try:
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the child process hung")
            time.sleep(0.01)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
    finally:
        os.close(read)
    if not chunks:
        pytest.fail("the child process died without reporting (killed by its alarm?)")
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


CLEAN = {"wrong": 0, "errors": 0, "messages": []}


@pytest.fixture
def forked_db(sync_backend: Any, backend_url: Callable[[Any], str]) -> Iterator[Any]:
    db = sync_backend.make(backend_url(sync_backend), pool_size=4)
    try:
        yield db
    finally:
        db.shutdown()


def test_parent_and_child_run_transactions_at_the_same_time(forked_db: Any) -> None:
    assert _work(forked_db, "warm-up", 5) == CLEAN  # the pool is open and has connections
    pid, read = _fork(lambda: _work(forked_db, "child"))
    parent = _work(forked_db, "parent")
    child = _child_result(pid, read)
    assert (parent, child) == (CLEAN, CLEAN)
    assert _work(forked_db, "after", 5) == CLEAN


def test_a_pool_opened_before_fork_and_used_only_after(forked_db: Any) -> None:
    forked_db.get_pool_info()  # opened (psycopg: connecting in the background), never used
    pid, read = _fork(lambda: _work(forked_db, "child"))
    parent = _work(forked_db, "parent")
    assert (parent, _child_result(pid, read)) == (CLEAN, CLEAN)


def test_fork_from_inside_a_transaction_leaves_the_parent_transaction_alone(
    forked_db: Any,
) -> None:
    table = f"structum_fork_{uuid.uuid4().hex[:8]}"
    with forked_db.transaction() as conn:
        conn.execute(f"CREATE TABLE {table} (v VARCHAR(20))")
    try:

        def child() -> dict[str, Any]:
            # The inherited block's connection is the parent's: using it here must fail, not
            # write into the parent's transaction; fresh transactions work.
            try:
                conn.execute(f"INSERT INTO {table} (v) VALUES ('from child')")
                used = True
            except Exception:
                used = False
            result = _work(forked_db, "child", 10)
            result["used inherited"] = used
            return result

        with forked_db.transaction() as conn:
            conn.execute(f"INSERT INTO {table} (v) VALUES ('parent')")
            pid, read = _fork(child)
            child_result = _child_result(pid, read)
            conn.execute(f"INSERT INTO {table} (v) VALUES ('parent again')")
        assert child_result == {**CLEAN, "used inherited": False}
        with forked_db.transaction() as conn:
            rows = conn.execute(f"SELECT v FROM {table} ORDER BY v").fetchall()
        assert [r["v"] for r in rows] == ["parent", "parent again"]
    finally:
        with forked_db.transaction() as conn:
            conn.execute(f"DROP TABLE {table}")


def test_a_connection_held_across_fork_is_not_usable_in_the_child(forked_db: Any) -> None:
    held = forked_db.get_connection()
    try:
        assert held.execute("SELECT 1 AS one").scalar() == 1

        def child() -> dict[str, Any]:
            try:
                held.execute("SELECT 1 AS one")
                used = True
            except Exception:
                used = False
            held.close()  # nothing is sent, nothing is returned to the new pool
            result = _work(forked_db, "child", 10)
            result["used inherited"] = used
            result["checked_out"] = forked_db.get_pool_info()["checked_out"]
            return result

        pid, read = _fork(child)
        assert _child_result(pid, read) == {**CLEAN, "used inherited": False, "checked_out": 0}
        # the parent's connection and session are intact
        assert held.execute("SELECT 2 AS two").scalar() == 2
    finally:
        held.close()
    assert forked_db.get_pool_info()["checked_out"] == 0


def _mp_child(db: Any, tag: str, conn: Any) -> None:
    conn.send(_work(db, tag))
    conn.close()


def test_multiprocessing_with_the_fork_start_method(forked_db: Any) -> None:
    assert _work(forked_db, "warm-up", 5) == CLEAN
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(2)]
    children = [
        context.Process(target=_mp_child, args=(forked_db, f"mp{i}", write))
        for i, (_, write) in enumerate(pipes)
    ]
    for child in children:
        child.start()
    try:
        parent = _work(forked_db, "parent")
        results = []
        for read, _ in pipes:
            if not read.poll(CHILD_LIMIT):
                pytest.fail("a multiprocessing child did not report in time")
            results.append(read.recv())
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
    assert parent == CLEAN
    assert results == [CLEAN, CLEAN]
    assert [child.exitcode for child in children] == [0, 0]


def test_async_parent_and_child_at_the_same_time(
    async_backend: Any, backend_url: Callable[[Any], str]
) -> None:
    """The parent forks from inside its event loop; the child runs its own loop (a new thread)."""
    db = async_backend.make(backend_url(async_backend), pool_size=4)

    def child() -> dict[str, Any]:
        # The inherited loop belongs to the parent: the child runs a fresh one.
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(asyncio.run(_awork(db, "child"))))
        thread.start()
        thread.join(CHILD_LIMIT)
        return box or {"wrong": -1, "errors": -1, "messages": ["the child's loop hung"]}

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            assert await _awork(db, "warm-up", 5) == CLEAN
            pid, read = _fork(child)
            parent = await _awork(db, "parent")
            return parent, await asyncio.to_thread(_child_result, pid, read)
        finally:
            await db.shutdown()

    assert asyncio.run(main()) == (CLEAN, CLEAN)
