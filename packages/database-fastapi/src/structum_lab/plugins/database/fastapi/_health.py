"""Readiness and liveness endpoints in the IETF ``application/health+json`` shape."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from structum_lab.plugins.database import ConfigurationError, HealthResult, HealthStatus

from ._state import is_async_database, logger, resolve_database

__all__ = ["HEALTH_MEDIA_TYPE", "HealthDetail", "HealthJSONResponse", "health_router"]

#: What the readiness body shows: ``"status"`` (status and latency per database, the default)
#: or ``"full"`` (also the message, with host, database and the server's error text, and the
#: pool statistics).
HealthDetail: TypeAlias = Literal["status", "full"]

HEALTH_MEDIA_TYPE = "application/health+json"

_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
_HEADERS = {"Cache-Control": "no-store"}


class HealthJSONResponse(JSONResponse):
    """JSON with the ``application/health+json`` media type."""

    media_type = HEALTH_MEDIA_TYPE


def _component(name: str) -> str:
    return "database" if name == "default" else name


async def _check(request: Request, name: str, limit: float | None) -> HealthResult:
    try:
        db = resolve_database(request, name)
    except ConfigurationError as exc:
        return HealthResult(HealthStatus.UNHEALTHY, str(exc), 0.0)
    start = time.perf_counter()
    result: HealthResult | None = None
    with anyio.move_on_after(limit):
        try:
            if is_async_database(db):
                result = await db.health_check()
            else:
                # abandon_on_cancel: a probe stuck in a blocking connect must not hold the
                # answer past the timeout (the thread finishes on its own).
                result = await anyio.to_thread.run_sync(
                    db.health_check, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
                )
        except Exception as exc:
            # health_check() promises not to raise; a look-alike might. Its text is not shown:
            # it could carry a URL with a password.
            return HealthResult(
                HealthStatus.UNHEALTHY,
                f"health check raised {type(exc).__name__}",
                (time.perf_counter() - start) * 1000.0,
            )
    if result is None:
        return HealthResult(
            HealthStatus.UNHEALTHY,
            f"health check did not answer within {limit:g}s",
            (time.perf_counter() - start) * 1000.0,
        )
    return result


def _check_json(component: str, result: HealthResult, detail: HealthDetail) -> dict[str, Any]:
    document = result.to_health_json(component=component)
    if detail == "full":
        return document
    # Status and latency only: the message names the host, user and database and may quote the
    # server's authentication error; the pool statistics describe the deployment.
    check = document["checks"][f"{component}:responseTime"][0]
    return {
        "status": document["status"],
        "checks": {
            f"{component}:responseTime": [
                {k: check[k] for k in ("componentType", "observedValue", "observedUnit", "status")}
            ]
        },
    }


def render_health(
    results: Sequence[tuple[str, HealthResult]], *, detail: HealthDetail = "full"
) -> dict[str, Any]:
    """One health+json document for one or several databases (the worst status wins).

    Args:
        results: ``(name, result)`` per database.
        detail: ``"full"`` keeps each result's message and pool statistics; ``"status"`` keeps
            status and latency only.
    """
    if len(results) == 1:
        name, result = results[0]
        return _check_json(_component(name), result, detail)
    worst = max((result.status for _, result in results), key=_SEVERITY.__getitem__)
    checks: dict[str, Any] = {}
    for name, result in results:
        checks.update(_check_json(_component(name), result, detail)["checks"])
    document: dict[str, Any] = {"status": worst.ietf}
    if detail == "full":
        document["description"] = "; ".join(f"{name}: {result.message}" for name, result in results)
    document["checks"] = checks
    return document


class _HealthLog:
    """Logs what the readiness body may leave out: each change of a database's state, once."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[HealthStatus, str]] = {}

    def record(self, name: str, result: HealthResult) -> None:
        state = (result.status, result.message)
        changed = self._last.get(name) != state
        self._last[name] = state
        if not changed:
            level = logging.DEBUG
        elif result.status is HealthStatus.HEALTHY:
            level = logging.INFO
        else:
            level = logging.WARNING
        logger.log(
            level,
            "readiness: database %r is %s in %.1f ms: %s %s",
            name,
            result.status.value,
            result.latency_ms,
            result.message,
            {k: v for k, v in result.details.items() if k != "pool"},
        )


def health_router(
    *names: str,
    prefix: str = "/health",
    readiness_path: str = "/ready",
    liveness_path: str = "/live",
    timeout: float | None = 5.0,
    include_in_schema: bool = True,
    tags: Sequence[str] = ("health",),
    detail: HealthDetail = "status",
) -> APIRouter:
    """An ``APIRouter`` with a readiness and a liveness endpoint.

    - ``GET {prefix}{readiness_path}`` runs ``health_check()`` on each database (concurrently)
      and answers 200 when all are HEALTHY or DEGRADED, 503 when one is UNHEALTHY, not
      registered, or did not answer within ``timeout``. The body is an IETF health+json
      document, media type ``application/health+json``, with the status and latency of each
      database (``detail="status"``, the default: the endpoint is usually unauthenticated) or
      the whole ``HealthResult.to_health_json()`` (``detail="full"``). Every change of a
      database's state is logged with its message and details either way.
    - ``GET {prefix}{liveness_path}`` answers 200 ``{"status": "pass"}`` without touching any
      database: a database outage must make the instance unready, not get it restarted.

    Args:
        *names: The databases to check (registry or lifespan names); default ``default``.
        prefix: Path prefix of both endpoints.
        readiness_path: Path of the readiness endpoint under ``prefix``.
        liveness_path: Path of the liveness endpoint under ``prefix``.
        timeout: Seconds a check may take before it counts as UNHEALTHY; None waits.
        include_in_schema: Show the endpoints in the OpenAPI schema.
        tags: OpenAPI tags.
        detail: ``"status"`` (default) or ``"full"``: see above.

    Returns:
        The router, for ``app.include_router(health_router())``.
    """
    if detail not in ("status", "full"):
        raise ValueError(f"detail must be 'status' or 'full', got {detail!r}")
    checked = names or ("default",)
    health_log = _HealthLog()
    router = APIRouter(prefix=prefix, tags=list(tags), include_in_schema=include_in_schema)
    documented = {
        "content": {HEALTH_MEDIA_TYPE: {"schema": {"type": "object"}}},
    }

    @router.get(
        readiness_path,
        response_class=HealthJSONResponse,
        responses={
            200: {"description": "Every database is healthy or degraded", **documented},
            503: {"description": "A database is unhealthy", **documented},
        },
        summary="Readiness: can this instance serve requests?",
    )
    async def readiness(request: Request) -> HealthJSONResponse:
        results: list[HealthResult | None] = [None] * len(checked)

        async def run(index: int, name: str) -> None:
            results[index] = await _check(request, name, timeout)

        async with anyio.create_task_group() as group:
            for index, name in enumerate(checked):
                group.start_soon(run, index, name)
        done = [
            (name, result)
            for name, result in zip(checked, results, strict=True)
            if result is not None
        ]
        for name, result in done:
            health_log.record(name, result)
        unhealthy = any(result.status is HealthStatus.UNHEALTHY for _, result in done)
        return HealthJSONResponse(
            render_health(done, detail=detail),
            status_code=503 if unhealthy else 200,
            headers=_HEADERS,
        )

    @router.get(
        liveness_path,
        response_class=HealthJSONResponse,
        responses={200: {"description": "The process is running", **documented}},
        summary="Liveness: is the process running? (never touches a database)",
    )
    async def liveness() -> HealthJSONResponse:
        return HealthJSONResponse(
            {"status": "pass", "description": "the process is running"}, headers=_HEADERS
        )

    return router
