from __future__ import annotations

import json

from structum_lab.plugins.database import HealthResult, HealthStatus, HealthThresholds
from structum_lab.plugins.database.health import evaluate_health


def test_user_constructible_result() -> None:
    result = HealthResult(status=HealthStatus.HEALTHY, message="Mock OK", latency_ms=0.1)
    assert result.details == {}
    assert str(result.status) == "HealthStatus.HEALTHY"
    assert result.status.value == "healthy"


def test_healthy_and_degraded_by_latency() -> None:
    pool = {"checked_out": 1, "available": 4, "total": 5, "overflow": 0, "max": 10}
    thresholds = HealthThresholds(degraded_latency_ms=50)
    assert evaluate_health(2.0, pool, thresholds).status is HealthStatus.HEALTHY
    slow = evaluate_health(80.0, pool, thresholds)
    assert slow.status is HealthStatus.DEGRADED
    assert "latency" in slow.message


def test_degraded_by_saturation_and_waiters() -> None:
    thresholds = HealthThresholds()
    full = {"checked_out": 10, "available": 0, "total": 10, "overflow": 0, "max": 10}
    assert evaluate_health(1.0, full, thresholds).status is HealthStatus.DEGRADED
    waiting = {"checked_out": 1, "total": 5, "max": 10, "waiting": 3}
    assert "waiting" in evaluate_health(1.0, waiting, thresholds).message


def test_health_json_shape() -> None:
    result = HealthResult(HealthStatus.DEGRADED, "slow", 12.3456, {"pool": {"checked_out": 1}})
    body = result.to_health_json(component="primary_db")
    assert body["status"] == "warn"
    check = body["checks"]["primary_db:responseTime"][0]
    assert check["observedValue"] == 12.346
    assert check["observedUnit"] == "ms"
    assert check["pool"] == {"checked_out": 1}
    json.dumps(body)
    assert HealthStatus.UNHEALTHY.ietf == "fail"
