"""Health that tells the truth: a saturated pool, a stopped server, a frozen postmaster.

``health_check()`` must answer within ``health_timeout`` whatever the server does, must not queue
behind the pool (a saturated pool is DEGRADED, not UNHEALTHY), and must say UNHEALTHY when no
connection can be made. Source of ``test_health_sync.py`` (``tools/async_to_sync.py``).
"""

from __future__ import annotations

import time
from typing import Any

from structum_lab.plugins.database import HealthStatus

# What a bound may exceed by: scheduling on a loaded 2-core CI machine, not the probe's work.
SLACK = 1.0
HEALTH_TIMEOUT = 1.0


async def test_saturated_pool_is_degraded_within_the_probe_timeout(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(
        faults.url, pool_size=2, timeout=30.0, health_timeout=HEALTH_TIMEOUT
    )
    held = []
    try:
        held = [await db.get_connection() for _ in range(2)]
        for conn in held:
            await conn.execute("SELECT 1")
        began = time.monotonic()
        result = await db.health_check()
        took = time.monotonic() - began
    finally:
        for conn in held:
            await conn.close()
        await db.shutdown()
    assert result.status is HealthStatus.DEGRADED, result
    assert "saturated" in result.message
    assert result.details["pool"]["checked_out"] == 2
    assert took < HEALTH_TIMEOUT + SLACK
    figure(
        fault="pool saturated (2/2 busy, pool timeout 30 s)",
        backend=async_postgres_backend.id,
        saw=f"health DEGRADED in {took:.2f} s",
        recover_s=0.0,
        lost=0,
        doubled=0,
    )


async def test_stopped_server_is_unhealthy_at_once(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(
        faults.url, pool_size=2, timeout=30.0, health_timeout=HEALTH_TIMEOUT
    )
    try:
        assert (await db.health_check()).status is HealthStatus.HEALTHY
        faults.stop("fast")
        began = time.monotonic()
        result = await db.health_check()
        took = time.monotonic() - began
        faults.start()
        back = await db.health_check()
    finally:
        await db.shutdown()
    assert result.status is HealthStatus.UNHEALTHY, result
    assert took < HEALTH_TIMEOUT + SLACK
    assert back.status is not HealthStatus.UNHEALTHY, back
    figure(
        fault="server stopped (fast), health probe",
        backend=async_postgres_backend.id,
        saw=f"health UNHEALTHY in {took:.2f} s",
        recover_s=0.0,
        lost=0,
        doubled=0,
    )


async def test_frozen_postmaster_is_unhealthy_within_the_probe_timeout(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    # A cold pool: with pooled sessions the server still serves (their backends are not
    # frozen) and health says so; without one, only a new connection can tell.
    with faults.paused(faults.cluster.postmaster_pid):
        db = async_postgres_backend.make(
            faults.url, pool_size=2, timeout=30.0, health_timeout=HEALTH_TIMEOUT
        )
        began = time.monotonic()
        result = await db.health_check()
        took = time.monotonic() - began
    try:
        assert result.status is HealthStatus.UNHEALTHY, result
        assert "health_timeout" in result.message
        assert took < HEALTH_TIMEOUT + SLACK
    finally:
        await db.shutdown()
    figure(
        fault="postmaster frozen (SIGSTOP), cold pool, health probe",
        backend=async_postgres_backend.id,
        saw=f"health UNHEALTHY in {took:.2f} s",
        recover_s=0.0,
        lost=0,
        doubled=0,
    )


async def test_latency_excludes_connect_time(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(faults.url, pool_size=2, health_timeout=HEALTH_TIMEOUT)
    try:
        began = time.monotonic()
        cold = await db.health_check()
        cold_wall = (time.monotonic() - began) * 1000.0
        warm = await db.health_check()
    finally:
        await db.shutdown()
    assert cold.status is HealthStatus.HEALTHY, cold
    assert warm.status is HealthStatus.HEALTHY, warm
    assert cold.latency_ms <= cold_wall
    figure(
        fault="first health probe on a cold pool",
        backend=async_postgres_backend.id,
        saw=f"latency {cold.latency_ms:.2f} ms cold (wall {cold_wall:.1f} ms), "
        f"{warm.latency_ms:.2f} ms warm",
        recover_s=0.0,
        lost=0,
        doubled=0,
    )


async def test_frozen_server_process_of_the_idle_connection_does_not_hold_the_probe(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(
        faults.url, pool_size=2, timeout=30.0, health_timeout=HEALTH_TIMEOUT
    )
    try:
        async with db.transaction() as conn:  # one idle pooled connection afterwards
            await conn.execute("SELECT 1")
        frozen = faults.backend_pids()
        for pid in frozen:
            faults.pause(pid)
        began = time.monotonic()
        result = await db.health_check()
        took = time.monotonic() - began
        for pid in frozen:
            faults.resume(pid)
    finally:
        await db.shutdown()
    # The server itself accepts connections: the probe's own connection says so in time.
    assert result.status is not HealthStatus.UNHEALTHY, result
    assert took < HEALTH_TIMEOUT + SLACK
    figure(
        fault="server process of the idle pooled connection frozen (SIGSTOP), health probe",
        backend=async_postgres_backend.id,
        saw=f"health {result.status.value.upper()} in {took:.2f} s (probe on its own connection)",
        recover_s=0.0,
        lost=0,
        doubled=0,
    )
