# mypy: allow-untyped-defs, allow-untyped-calls
# The seed's transaction(self) drops the typed keywords of DatabaseInterface.transaction(): mypy
# reports that override (a caller passing read_only=True through the interface would get a
# TypeError). It runs as written; tests-integration/typing/seed_examples.py has the typed form.
# mypy: disable-error-code="override"
"""Seed §11.3, as written: an application's own ``MockDatabase(DatabaseInterface)``.

The seed leaves ``MockConnection`` to the reader; structum-database-testing provides it: built
on any object with a ``queries`` list, it records every statement there.
"""

import pytest

from structum_lab.plugins.database import DatabaseInterface, HealthResult, HealthStatus
from structum_lab.plugins.database.testing import MockConnection

# --- seed §11.3, verbatim ---
# fmt: off

class MockDatabase(DatabaseInterface):
    """Mock database for testing."""

    def __init__(self):
        self.data = {}
        self.queries = []

    def transaction(self):
        return MockConnection(self)

    def health_check(self):
        return HealthResult(
            status=HealthStatus.HEALTHY,
            message="Mock OK",
            latency_ms=0.1
        )

@pytest.fixture
def mock_db():
    return MockDatabase()

def test_with_mock(mock_db):
    """Test using mock database."""
    with mock_db.transaction() as conn:
        conn.execute("SELECT * FROM users")

    assert len(mock_db.queries) == 1

# fmt: on
# --- end of the seed ---


def test_the_seed_class_is_a_working_database(mock_db: MockDatabase) -> None:
    assert mock_db.health_check() == HealthResult(HealthStatus.HEALTHY, "Mock OK", 0.1)
    assert mock_db.get_pool_info()["checked_out"] == 0
    with mock_db.transaction() as conn:
        assert conn.execute("SELECT 1").fetchall() == []
    assert [q.sql for q in mock_db.queries] == ["SELECT 1"]
