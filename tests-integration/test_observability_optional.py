"""OpenTelemetry is optional: no API, an API without SDK, an SDK set late; tracing instrumentations.

The first tests run in child processes where part of OpenTelemetry is made unimportable
(``sys.modules[name] = None``), with warnings as errors: no metric, no error, no timing. The
tracing tests check that OpenTelemetry's own psycopg and SQLAlchemy instrumentations see the
statements of our backends (with the SDK's in-memory span exporter).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_PRELUDE = """
import sys, warnings
warnings.simplefilter("error")
for name in {blocked!r}:
    sys.modules[name] = None
from structum_lab.plugins.database import _observe
from structum_lab.plugins.database.metrics import enable_metrics, metrics_enabled
from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

def load(db):
    for _ in range(3):
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    held = db.get_connection()
    held.close()
"""


def _run(tmp_path: Path, blocked: list[str], body: str) -> str:
    script = textwrap.dedent(_PRELUDE).format(blocked=blocked) + textwrap.dedent(body)
    url = f"sqlite:///{tmp_path / 'obs.db'}"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_the_api_nothing_is_timed_and_enable_metrics_names_the_extra(
    tmp_path: Path,
) -> None:
    out = _run(
        tmp_path,
        ["opentelemetry"],
        """
        db = SQLAlchemyDatabase(sys.argv[1])
        _observe.Watch = None  # a timed transaction would fail now
        load(db)
        assert _observe._STATE.instruments is None
        assert not metrics_enabled() and not db._observed
        try:
            enable_metrics()
        except ImportError as exc:
            print(exc)
        db.shutdown()
        """,
    )
    assert 'pip install "structum-database[otel]"' in out


def test_with_the_api_and_no_sdk_nothing_is_timed(tmp_path: Path) -> None:
    _run(
        tmp_path,
        ["opentelemetry.sdk"],
        """
        db = SQLAlchemyDatabase(sys.argv[1], name="no-sdk")
        _observe.Watch = None
        load(db)
        assert _observe._STATE.instruments is not None  # on the API's proxy provider
        assert not metrics_enabled() and not db._observed
        db.shutdown()
        """,
    )


def test_an_sdk_set_before_the_database_records_at_once(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        [],
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        db = SQLAlchemyDatabase(sys.argv[1], name="early")
        assert metrics_enabled() and db._observed
        load(db)
        names = {
            m.name: m for r in reader.get_metrics_data().resource_metrics
            for s in r.scope_metrics for m in s.metrics
        }
        print(names["db.client.connection.wait_time"].data.data_points[0].count)
        db.shutdown()
        """,
    )
    assert out.split() == ["4"]  # 3 transactions + 1 get_connection()


def test_an_sdk_set_later_starts_recording_at_its_first_collection(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        [],
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        db = SQLAlchemyDatabase(sys.argv[1], name="late")
        load(db)
        assert not db._observed
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        reader.get_metrics_data()  # the observable callbacks run: recording starts
        assert metrics_enabled() and db._observed
        load(db)
        names = {
            m.name: m for r in reader.get_metrics_data().resource_metrics
            for s in r.scope_metrics for m in s.metrics
        }
        print(names["db.client.connection.wait_time"].data.data_points[0].count)
        print(names["db.client.connection.max"].data.data_points[0].attributes)
        db.shutdown()
        """,
    )
    count, attributes = out.splitlines()
    assert count == "4"
    assert "'db.client.connection.pool.name': 'late'" in attributes


# -- tracing ---------------------------------------------------------------------------------------
@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _statements(exporter: InMemorySpanExporter) -> list[str]:
    found = []
    for span in exporter.get_finished_spans():
        attributes: Any = span.attributes or {}
        text = attributes.get("db.statement") or attributes.get("db.query.text")
        if text:
            found.append(str(text))
    return found


def test_psycopg_instrumentation_traces_our_connections(
    postgres_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    from structum_lab.plugins.database.postgres import PostgresDatabase

    provider, exporter = spans
    instrumentor = PsycopgInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with PostgresDatabase(postgres_url, min_size=1) as db:
            with db.transaction() as conn:
                conn.execute("SELECT 41 + :n AS answer", {"n": 1})
            assert db.fetchone("SELECT 'one statement' AS s") == {"s": "one statement"}
    finally:
        instrumentor.uninstrument()
    statements = _statements(exporter)
    assert any("SELECT 41 + %s AS answer" in s for s in statements), statements
    assert any("one statement" in s for s in statements), statements


async def test_psycopg_instrumentation_traces_our_async_connections(
    postgres_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    from structum_lab.plugins.database.postgres import AsyncPostgresDatabase

    provider, exporter = spans
    instrumentor = PsycopgInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with (
            AsyncPostgresDatabase(postgres_url, min_size=1) as db,
            db.transaction() as conn,
        ):
            await conn.execute("SELECT 41 + :n AS answer", {"n": 1})
    finally:
        instrumentor.uninstrument()
    assert any("SELECT 41 + %s AS answer" in s for s in _statements(exporter))


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_sqlalchemy_instrumentation_with_skip_dep_check(
    postgres_url: str, spans: tuple[TracerProvider, InMemorySpanExporter], is_async: bool
) -> None:
    # opentelemetry-instrumentation-sqlalchemy declares "sqlalchemy < 2.1" and, without
    # skip_dep_check=True, logs an error and instruments nothing on the SQLAlchemy 2.1 we
    # install. With it, every engine created afterwards is traced (README, "Observability").
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    from structum_lab.plugins.database.sqlalchemy import (
        AsyncSQLAlchemyDatabase,
        SQLAlchemyDatabase,
    )

    provider, exporter = spans
    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        if is_async:
            adb = AsyncSQLAlchemyDatabase(postgres_url)
            try:
                async with adb.transaction() as aconn:
                    await aconn.execute("SELECT 41 + :n AS answer", {"n": 1})
            finally:
                await adb.shutdown()
        else:
            db = SQLAlchemyDatabase(postgres_url)
            try:
                with db.transaction() as conn:
                    conn.execute("SELECT 41 + :n AS answer", {"n": 1})
            finally:
                db.shutdown()
    finally:
        instrumentor.uninstrument()
    assert any("SELECT 41 +" in s for s in _statements(exporter)), _statements(exporter)


def test_timings_off_keeps_every_other_instrument_and_times_nothing(tmp_path: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from structum_lab.plugins.database import _observe
    from structum_lab.plugins.database.metrics import disable_metrics, enable_metrics
    from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    enable_metrics(provider, timings=False)
    db = SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'untimed.db'}", name="untimed")
    try:
        assert not db._observed
        with db.transaction() as conn:
            conn.execute("SELECT 1")
            data = reader.get_metrics_data()
        assert data is not None
        names = {
            m.name: m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
        }
        assert "db.client.connection.wait_time" not in names
        assert "db.client.connection.use_time" not in names
        assert "db.client.connection.create_time" in names  # per new connection only
        used = [
            p.value  # type: ignore[union-attr]
            for p in names["db.client.connection.count"].data.data_points
            if dict(p.attributes or {}).get(_observe.STATE) == "used"
            and dict(p.attributes or {}).get(_observe.POOL_NAME) == "untimed"
        ]
        assert used == [1]
    finally:
        db.shutdown()
        disable_metrics()
        provider.shutdown()
