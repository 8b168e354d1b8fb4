"""The logging lines of the user's document (§6.2, §8.3, §12.4), run as written."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

import pytest


class HealthStatus(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class FakeHealthResult:
    status: HealthStatus
    message: str
    latency_ms: float


def test_pool_status_line_from_section_6_2(caplog: pytest.LogCaptureFixture) -> None:
    info = {"checked_out": 2, "available": 8, "total": 10, "overflow": 0}
    caplog.set_level(logging.DEBUG)

    from structum_lab.plugins.observability import get_logger

    logger = get_logger(__name__)
    logger.info("Database pool status", **info)

    (record,) = caplog.records
    assert record.name == __name__
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "Database pool status checked_out=2 available=8 total=10 overflow=0"
    )
    assert record.fields == info  # type: ignore[attr-defined]


def test_unhealthy_and_healthy_lines_from_section_8_3(caplog: pytest.LogCaptureFixture) -> None:
    from structum_lab.plugins.observability import get_logger

    logger = get_logger(__name__)
    caplog.set_level(logging.DEBUG)

    result = FakeHealthResult(HealthStatus.UNHEALTHY, "Connection refused", 12.5)
    logger.error(
        "Database unhealthy",
        status=result.status.value,
        message=result.message,
        latency_ms=result.latency_ms,
    )
    result = FakeHealthResult(HealthStatus.HEALTHY, "Database connection OK", 1.25)
    logger.debug(f"Database healthy - latency: {result.latency_ms}ms")

    unhealthy, healthy = caplog.records
    assert unhealthy.levelno == logging.ERROR
    assert unhealthy.getMessage() == (
        "Database unhealthy status=unhealthy message='Connection refused' latency_ms=12.5"
    )
    assert unhealthy.fields == {  # type: ignore[attr-defined]
        "status": "unhealthy",
        "message": "Connection refused",
        "latency_ms": 12.5,
    }
    assert healthy.levelno == logging.DEBUG
    assert healthy.getMessage() == "Database healthy - latency: 1.25ms"
    assert healthy.fields == {}  # type: ignore[attr-defined]


def test_leak_warning_from_section_12_4(caplog: pytest.LogCaptureFixture) -> None:
    from structum_lab.plugins.observability import get_logger

    logger = get_logger(__name__)
    info = {"checked_out": 3}
    logger.warning(f"Connection leak detected: {info['checked_out']} connections not returned")

    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "Connection leak detected: 3 connections not returned"
