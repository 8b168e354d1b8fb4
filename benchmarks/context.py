"""Run-wide settings every scenario reads."""

from __future__ import annotations

from dataclasses import dataclass

from .setup_db import BenchDatabase

__all__ = ["Context"]


@dataclass(frozen=True)
class Context:
    """What the command line chose, and the prepared database.

    Attributes:
        db: The benchmark database (URL, server and pgbench versions, TPC-B scale).
        smoke: Few iterations, no targets: only proves that the benchmark code still runs.
        workers: Concurrent threads (sync) or tasks (async) of the "N workers" scenarios.
        slice_seconds: Length of one side's slice in one round.
        rounds: Rounds of interleaved slices per comparison.
        warmup_seconds: Discarded slice per side before the first round.
        executemany_rows: Rows inserted by one ``executemany``.
        memory_transactions: Transactions run while watching RSS.
    """

    db: BenchDatabase
    smoke: bool
    workers: int
    slice_seconds: float
    rounds: int
    warmup_seconds: float
    executemany_rows: int
    memory_transactions: int

    @property
    def url(self) -> str:
        """URL of the benchmark database (libpq form, ``postgresql://``)."""
        return self.db.url
