"""The scenarios, in the order they run. ``--only NAME`` selects by name or name prefix."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from ..context import Context
from ..harness import Comparison
from . import deterministic, executemany, health, memory, point_select, tpcb

__all__ = ["SCENARIOS", "Scenario", "select"]


@dataclass(frozen=True)
class Scenario:
    """A named generator of comparisons; it opens its pools and closes them when exhausted."""

    name: str
    run: Callable[[Context], Generator[Comparison, None, None]]


SCENARIOS = [
    Scenario("round-trips", deterministic.round_trips),
    Scenario("instructions", deterministic.instructions),
    Scenario("point-select/psycopg", point_select.psycopg_sync),
    Scenario("point-select/psycopg-async", point_select.psycopg_async),
    Scenario("point-select/sqlalchemy", point_select.sqlalchemy_sync),
    Scenario("point-select/sqlalchemy-async", point_select.sqlalchemy_async),
    Scenario("tpcb", tpcb.tpcb),
    Scenario("executemany/sync", executemany.executemany_sync),
    Scenario("executemany/async", executemany.executemany_async),
    Scenario("health/sync", health.health_sync),
    Scenario("health/async", health.health_async),
    Scenario("memory", memory.memory),
]


def select(names: list[str]) -> list[Scenario]:
    """The scenarios named (exactly, or as a ``/``-separated prefix) by ``names``; all if none.

    Raises:
        ValueError: A name matches no scenario (the message lists the valid ones).
    """
    if not names:
        return list(SCENARIOS)
    chosen: list[Scenario] = []
    for name in names:
        key = name.strip().strip("/")
        found = [s for s in SCENARIOS if s.name == key or s.name.startswith(key + "/")]
        if not found:
            valid = ", ".join(s.name for s in SCENARIOS)
            raise ValueError(f"no scenario named {name!r}; choose from: {valid}")
        chosen += [s for s in found if s not in chosen]
    return [s for s in SCENARIOS if s in chosen]
