"""Health model: a tri-state status with latency, and its IETF health+json rendering."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from .errors import ConfigurationError

__all__ = ["HealthResult", "HealthStatus", "HealthThresholds", "evaluate_health"]


class HealthStatus(str, Enum):
    """How a database is doing."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    __module__ = "structum_lab.plugins.database"

    def __str__(self) -> str:
        return f"HealthStatus.{self.name}"

    @property
    def ietf(self) -> str:
        """The IETF health+json status word: ``pass``, ``warn`` or ``fail``."""
        return {"healthy": "pass", "degraded": "warn", "unhealthy": "fail"}[self.value]


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one health check.

    Attributes:
        status: HEALTHY, DEGRADED or UNHEALTHY.
        message: A short human-readable explanation; never contains a password.
        latency_ms: Round-trip time of the probe in milliseconds (0.0 when no probe ran).
        details: Extra facts (backend, masked URL, pool info, server version, ...).
    """

    status: HealthStatus
    message: str
    latency_ms: float
    details: dict[str, Any] = field(default_factory=dict)

    __module__ = "structum_lab.plugins.database"

    @property
    def is_healthy(self) -> bool:
        """True unless UNHEALTHY (a DEGRADED database still serves requests)."""
        return self.status is not HealthStatus.UNHEALTHY

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form."""
        return {
            "status": self.status.value,
            "message": self.message,
            "latency_ms": round(self.latency_ms, 3),
            "details": dict(self.details),
        }

    def to_health_json(self, *, component: str = "database") -> dict[str, Any]:
        """Render in the IETF ``application/health+json`` shape (draft-inadarei-api-health-check).

        Args:
            component: Name of the check, e.g. ``database`` or the configuration namespace.

        Returns:
            ``{"status": "pass"|"warn"|"fail", "checks": {"<component>:responseTime": [...]}}``.
        """
        check: dict[str, Any] = {
            "componentType": "datastore",
            "observedValue": round(self.latency_ms, 3),
            "observedUnit": "ms",
            "status": self.status.ietf,
            "output": self.message,
        }
        pool = self.details.get("pool")
        if isinstance(pool, Mapping):
            check["pool"] = dict(pool)
        return {
            "status": self.status.ietf,
            "description": self.message,
            "checks": {f"{component}:responseTime": [check]},
        }


@dataclass(frozen=True)
class HealthThresholds:
    """When a reachable database counts as DEGRADED.

    Attributes:
        degraded_latency_ms: A probe slower than this is DEGRADED.
        degraded_pool_usage: Fraction of the pool's maximum checked out (0-1) above which the pool
            is saturated and the database DEGRADED; waiting requests also make it DEGRADED.
    """

    degraded_latency_ms: float = 250.0
    degraded_pool_usage: float = 0.9

    __module__ = "structum_lab.plugins.database"

    def __post_init__(self) -> None:
        checks = (
            ("degraded_latency_ms", self.degraded_latency_ms, 0.0, 86_400_000.0, "milliseconds"),
            ("degraded_pool_usage", self.degraded_pool_usage, 0.0, 1.0, "a fraction"),
        )
        for name, value, low, high, unit in checks:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or not low <= value <= high:
                raise ConfigurationError(
                    f"health_thresholds.{name} must be {unit} from {low:g} to {high:g}, "
                    f"got {value!r}",
                    key=f"health_thresholds.{name}",
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> HealthThresholds:
        """Build thresholds from a table (configuration), checking its keys and values.

        Raises:
            ConfigurationError: An unknown key, or a value that is not a number in range.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ConfigurationError(
                f"health_thresholds has no key {', '.join(map(repr, unknown))}; "
                f"its keys are {', '.join(known)}",
                key="health_thresholds",
            )
        converted = {str(key): _number(value) for key, value in values.items()}
        return cls(**converted)


def _number(value: Any) -> Any:
    """An environment variable's text as a float; anything else as it is (checked later)."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value  # reported by HealthThresholds.__post_init__ with the key's name
    return value


def evaluate_health(
    latency_ms: float,
    pool_info: Mapping[str, Any],
    thresholds: HealthThresholds,
    *,
    details: Mapping[str, Any] | None = None,
) -> HealthResult:
    """Turn a successful probe into HEALTHY or DEGRADED.

    Args:
        latency_ms: The probe's round trip.
        pool_info: The backend's ``get_pool_info()`` snapshot.
        thresholds: Limits beyond which the database is DEGRADED.
        details: Extra facts to carry in the result.

    Returns:
        The health result; never UNHEALTHY (a failed probe is the caller's business).
    """
    reasons: list[str] = []
    if latency_ms > thresholds.degraded_latency_ms:
        reasons.append(f"latency {latency_ms:.1f}ms above {thresholds.degraded_latency_ms:g}ms")
    capacity = pool_info.get("max") or pool_info.get("total") or 0
    checked_out = pool_info.get("checked_out", 0) or 0
    if capacity and checked_out / capacity > thresholds.degraded_pool_usage:
        reasons.append(f"pool saturated ({checked_out}/{capacity} checked out)")
    waiting = pool_info.get("waiting", 0) or 0
    if waiting:
        reasons.append(f"{waiting} requests waiting for a connection")
    all_details = {**(details or {}), "pool": dict(pool_info)}
    if reasons:
        return HealthResult(HealthStatus.DEGRADED, "; ".join(reasons), latency_ms, all_details)
    return HealthResult(HealthStatus.HEALTHY, "Database connection OK", latency_ms, all_details)
