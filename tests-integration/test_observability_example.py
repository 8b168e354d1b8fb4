"""examples/observability/pool_metrics.py runs (SQLite, no exporter, a short load)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "observability" / "pool_metrics.py"


def test_the_example_reports_the_pool_under_load() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE), "--seconds", "2", "--peak", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = re.search(r"samples=(\d+) peak used=(\d+)", done.stderr)
    assert summary is not None, done.stderr
    assert int(summary.group(1)) > 0
    assert 1 <= int(summary.group(2)) <= 4  # never more than the pool holds
    assert '"name": "db.client.connection.count"' in done.stdout  # the console exporter
