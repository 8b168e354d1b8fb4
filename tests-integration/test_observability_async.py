"""Pool metrics and the slow-transaction log on every backend, against real servers.

The OpenTelemetry SDK's in-memory reader collects what the databases emit through the API. This
file is the source of ``test_observability_sync.py`` (``tools/async_to_sync.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from structum_lab.plugins.database import PoolOverloadedError, PoolTimeoutError
from structum_lab.plugins.database._acompat import asleep
from structum_lab.plugins.database.metrics import disable_metrics, enable_metrics

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
_GUARD = 60.0  # seconds: only a no-hang guard, never a speed assertion

#: Every instrument, its unit and the attribute keys of each of its points.
INSTRUMENTS = {
    "db.client.connection.count": ("{connection}", {POOL_NAME, STATE}),
    "db.client.connection.idle.max": ("{connection}", {POOL_NAME}),
    "db.client.connection.idle.min": ("{connection}", {POOL_NAME}),
    "db.client.connection.max": ("{connection}", {POOL_NAME}),
    "db.client.connection.pending_requests": ("{request}", {POOL_NAME}),
    "db.client.connection.timeouts": ("{timeout}", {POOL_NAME}),
    "db.client.connection.create_time": ("s", {POOL_NAME}),
    "db.client.connection.wait_time": ("s", {POOL_NAME}),
    "db.client.connection.use_time": ("s", {POOL_NAME}),
    "structum.db.client.connection.leaks": ("{connection}", {POOL_NAME}),
    "structum.db.client.connection.overloads": ("{request}", {POOL_NAME}),
}

if True:  # ASYNC

    def _background(call: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        return asyncio.ensure_future(call())

    async def _outcome(handle: asyncio.Future[Any]) -> Any:
        return await asyncio.wait_for(handle, _GUARD)
else:

    def _background(call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        executor = concurrent.futures.ThreadPoolExecutor(1)
        try:
            return executor.submit(call)
        finally:
            executor.shutdown(wait=False)

    def _outcome(handle: concurrent.futures.Future[Any]) -> Any:
        return handle.result(timeout=_GUARD)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _GUARD
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what} (no-hang guard)"
        await asleep(0.01)


def _figure(point: Any) -> Any:
    """A sum's or gauge's value; a histogram's count."""
    return point.value if hasattr(point, "value") else point.count


class Metrics:
    """What one collection of the in-memory reader holds: ``{name: [(attributes, value)]}``."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        self.units: dict[str, str] = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    self.units[metric.name] = metric.unit or ""
                    self.points[metric.name] = [
                        (dict(p.attributes or {}), _figure(p)) for p in metric.data.data_points
                    ]

    def value(self, name: str, pool: str, **attrs: str) -> Any:
        """The value (histograms: the count) of ``name`` for ``pool`` (0 when absent)."""
        for labels, value in self.points.get(name, []):
            if labels.get(POOL_NAME) == pool and all(labels.get(k) == v for k, v in attrs.items()):
                return value
        return 0


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An SDK meter provider with an in-memory reader, used by every database meanwhile."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    enable_metrics(provider)
    try:
        yield memory
    finally:
        disable_metrics()
        provider.shutdown()


def _value(reader: InMemoryMetricReader, name: str, pool: str, **attrs: str) -> Any:
    return Metrics(reader).value(name, pool, **attrs)


async def test_every_instrument_under_a_scripted_load(
    async_backend: Any, backend_url: Callable[[Any], str], reader: InMemoryMetricReader
) -> None:
    name = f"obs-{async_backend.id}"
    db = async_backend.make(
        backend_url(async_backend),
        pool_size=2,
        timeout=1.0,
        name=name,
        max_waiting=1,
        leak_detection_threshold=0.2,
    )

    async def one() -> int:
        async with db.transaction() as conn:
            return int(await (await conn.execute("SELECT 1 AS one")).scalar())

    try:
        assert await one() == 1
        assert await db.fetchone("SELECT 2 AS two") == {"two": 2}  # one statement, too
        metrics = Metrics(reader)
        assert metrics.value("db.client.connection.count", name, **{STATE: "used"}) == 0
        assert metrics.value("db.client.connection.wait_time", name) == 2
        assert metrics.value("db.client.connection.use_time", name) == 2
        assert metrics.value("db.client.connection.create_time", name) >= 1
        assert metrics.value("db.client.connection.max", name) == 2

        # A held connection shows as used; with both held the pool is exhausted.
        first = await db.get_connection()
        assert _value(reader, "db.client.connection.count", name, **{STATE: "used"}) == 1
        second = await db.get_connection()
        assert _value(reader, "db.client.connection.count", name, **{STATE: "used"}) == 2
        assert _value(reader, "db.client.connection.count", name, **{STATE: "idle"}) == 0

        # A waiting caller shows in pending_requests; one more is refused (max_waiting=1).
        waiter = _background(one)
        await _until(
            lambda: _value(reader, "db.client.connection.pending_requests", name) == 1,
            "pending_requests == 1",
        )
        with pytest.raises(PoolOverloadedError):
            await one()
        assert _value(reader, "structum.db.client.connection.overloads", name) == 1

        # The waiter times out: one timeout.
        with pytest.raises(PoolTimeoutError):
            await _outcome(waiter)
        assert _value(reader, "db.client.connection.timeouts", name) == 1
        await _until(
            lambda: _value(reader, "db.client.connection.pending_requests", name) == 0,
            "pending_requests == 0",
        )

        # Held past leak_detection_threshold: both are counted as leaks.
        await _until(
            lambda: _value(reader, "structum.db.client.connection.leaks", name) == 2, "2 leaks"
        )
        await first.close()
        await second.close()
        metrics = Metrics(reader)
        assert metrics.value("db.client.connection.count", name, **{STATE: "used"}) == 0
        assert metrics.value("db.client.connection.count", name, **{STATE: "idle"}) >= 1
        assert metrics.value("db.client.connection.use_time", name) == 4  # 2 + 2 held

        # Every instrument, with its unit, and the pool name on every point of this database.
        for instrument, (unit, keys) in INSTRUMENTS.items():
            assert instrument in metrics.points, f"{instrument} missing"
            assert metrics.units[instrument] == unit, instrument
            ours = [p for p, _ in metrics.points[instrument] if p.get(POOL_NAME) == name]
            assert ours, f"{instrument} has no point for {name}"
            assert all(set(p) == keys for p in ours), (instrument, ours)
        counts = metrics.points["db.client.connection.count"]
        states = {p[STATE] for p, _ in counts if p[POOL_NAME] == name}
        assert states == {"idle", "used"}
    finally:
        await db.shutdown()


async def test_a_shut_down_database_is_not_reported(
    async_backend: Any, backend_url: Callable[[Any], str], reader: InMemoryMetricReader
) -> None:
    name = f"obs-closed-{async_backend.id}"
    db = async_backend.make(backend_url(async_backend), name=name)
    async with db.transaction() as conn:
        await conn.execute("SELECT 1")
    assert _value(reader, "db.client.connection.max", name) > 0
    await db.shutdown()
    metrics = Metrics(reader)
    assert all(
        p.get(POOL_NAME) != name for p, _ in metrics.points.get("db.client.connection.max", [])
    )


def _slow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "structum_event", None) == "slow_transaction"]


async def test_slow_transaction_log(
    async_backend: Any, backend_url: Callable[[Any], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="structum_lab.plugins.database")
    # An hour: no transaction here is that slow, whatever the machine's load.
    db = async_backend.make(backend_url(async_backend), slow_transaction_threshold=3600)
    try:
        async with db.transaction() as conn:  # under the threshold: nothing logged
            await conn.execute("SELECT 1 AS one")
        assert _slow_records(caplog) == []

        db.slow_transaction_threshold = 0.2  # and the sleeps below last longer

        async with db.transaction() as conn:
            frame = inspect.currentframe()
            assert frame is not None
            opened_line = frame.f_lineno - 3
            await conn.execute("SELECT :value AS v", {"value": "param-value-not-shown"})
            await conn.execute("SELECT 'password=hunter2' AS secret")
            await asleep(0.3)
        [record] = _slow_records(caplog)
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert "slow transaction" in message
        assert "slow_transaction_threshold=0.2s" in message
        assert record.structum_duration > 0.2  # type: ignore[attr-defined]
        opened = record.structum_opened_at  # type: ignore[attr-defined]
        assert __file__ in opened
        assert f"line {opened_line}" in opened
        statements = record.structum_statements  # type: ignore[attr-defined]
        assert statements[0] == "SELECT :value AS v"
        assert "hunter2" not in statements[1]
        assert "hunter2" not in message
        assert "param-value-not-shown" not in message
        assert "SELECT :value AS v" in message

        # A failed (rolled back) slow transaction is logged too.
        caplog.clear()

        async def failing() -> None:
            async with db.transaction() as conn:
                await conn.execute("SELECT 2 AS two")
                await asleep(0.3)
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await failing()
        [record] = _slow_records(caplog)
        assert record.structum_statements == ["SELECT 2 AS two"]  # type: ignore[attr-defined]
    finally:
        await db.shutdown()


async def test_slow_transaction_threshold_is_checked(
    async_backend: Any, backend_url: Callable[[Any], str]
) -> None:
    from structum_lab.plugins.database import ConfigurationError

    for bad in (0, -1, "1", True):
        with pytest.raises(ConfigurationError, match="slow_transaction_threshold"):
            async_backend.make(backend_url(async_backend), slow_transaction_threshold=bad)
