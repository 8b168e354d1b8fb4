"""Shared fixtures of the CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """The run's PostgreSQL, from the testing plugin (see tests-integration/conftest.py)."""
    return postgres_url
