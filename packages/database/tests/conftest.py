"""Shared fixtures of the CLI tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """The integration suite's PostgreSQL: ``STRUCTUM_TEST_POSTGRES_URL``, else the testing
    plugin's provisioning chain (which skips, or fails under ``STRUCTUM_TEST_REQUIRE_DB=1``)."""
    url = os.environ.get("STRUCTUM_TEST_POSTGRES_URL")
    return url or str(request.getfixturevalue("postgres_url"))
