"""The fault harness itself: faults are injected and healed, and the ledger catches a loss."""

from __future__ import annotations

from typing import Any

import pytest


def test_terminate_pause_and_heal(faults: Any) -> None:
    import psycopg

    with psycopg.connect(faults.url, autocommit=True) as conn:
        pid = conn.info.backend_pid
        assert pid in faults.backend_pids()
        faults.terminate([pid])
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    faults.stop("immediate")
    assert not faults.cluster.server_running
    faults.heal()
    with psycopg.connect(faults.url, autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_ledger_detects_a_lost_transfer(ledger: Any) -> None:
    assert ledger.check([])["lost"] == 0
    with pytest.raises(AssertionError, match="'lost': 1"):
        ledger.check(["never-stored"])
