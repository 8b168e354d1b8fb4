"""Recovery: the first transaction succeeds within a second of the server accepting again.

psycopg_pool reconnects in the background with a growing delay (1, 2, 4, 8 s ...): after an outage
of a few seconds its next attempt could come seconds after the server was back, and every caller
waited for it. Source of ``test_recovery_sync.py`` (``tools/async_to_sync.py``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from structum_lab.plugins.database import DatabaseError
from structum_lab.plugins.database._acompat import asleep

# Long enough for psycopg_pool's backoff to reach 4 s (attempts at +0, +1, +3, +7 s).
OUTAGE = 4.0
RECOVERY_BOUND = 1.0


async def test_first_transaction_within_a_second_of_the_server_accepting_again(
    faults: Any, async_postgres_backend: Any, figure: Any
) -> None:
    db = async_postgres_backend.make(faults.url, pool_size=2, timeout=2.0)
    back: dict[str, float] = {}

    def outage() -> None:
        time.sleep(OUTAGE)
        faults.start()  # returns once the server accepts connections
        back["at"] = time.monotonic()

    errors = 0
    recovered_at = None
    try:
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
        faults.stop("fast")
        thread = threading.Thread(target=outage, daemon=True)
        thread.start()
        give_up = time.monotonic() + OUTAGE + 30.0
        while time.monotonic() < give_up:
            try:
                async with db.transaction() as conn:
                    await conn.execute("SELECT 1")
            except DatabaseError:
                errors += 1
                await asleep(0.02)
                continue
            recovered_at = time.monotonic()
            break
        thread.join()
    finally:
        await db.shutdown()
    assert recovered_at is not None, "no transaction succeeded after the outage"
    lag = max(0.0, recovered_at - back["at"])
    assert lag <= RECOVERY_BOUND, f"first transaction {lag:.2f}s after the server was back"
    figure(
        fault=f"server stopped {OUTAGE:g} s, then started",
        backend=async_postgres_backend.id,
        saw=f"DatabaseUnavailableError x{errors} during the outage",
        recover_s=round(lag, 2),
        lost=0,
        doubled=0,
    )
