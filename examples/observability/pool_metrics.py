"""Pool metrics under a small load: exported by OpenTelemetry, and plotted.

    pip install "structum-database[sqlalchemy,otel]" -r examples/observability/requirements.txt
    python examples/observability/pool_metrics.py                       # SQLite file, console
    python examples/observability/pool_metrics.py --exporter prometheus # http://localhost:9464/
    python examples/observability/pool_metrics.py --url postgresql://app@127.0.0.1/app --psycopg
    python examples/observability/pool_metrics.py --plot pool_use.png   # the picture (matplotlib)

A pool of 4 connections serves 1, then up to 10, then 1 worker again, each holding its
connection 50-300 ms per transaction. The database reports the OpenTelemetry
``db.client.connection.*`` metrics on its own once an SDK meter provider is set; this script
sets one with the chosen exporter, and samples the figures every 100 ms for the plot.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)

from structum_lab.plugins.database import DatabaseInterface, PoolTimeoutError

POOL = "db.client.connection.pool.name"
SERIES = ("used", "idle", "pending_requests", "max", "timeouts")


def _reader(exporter: str) -> MetricReader | None:
    if exporter == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=5000)
    if exporter == "prometheus":
        # pip install opentelemetry-exporter-prometheus (it brings prometheus_client)
        from opentelemetry.exporter.prometheus import (  # type: ignore[import-not-found, unused-ignore]
            PrometheusMetricReader,
        )
        from prometheus_client import (  # type: ignore[import-not-found, unused-ignore]
            start_http_server,
        )

        start_http_server(9464)
        print("Prometheus metrics on http://localhost:9464/metrics", file=sys.stderr)
        reader: MetricReader = PrometheusMetricReader()
        return reader
    return None


def _database(url: str, psycopg: bool) -> DatabaseInterface:
    options: dict[str, Any] = {"name": "example", "slow_transaction_threshold": 1.0}
    if psycopg:
        from structum_lab.plugins.database.postgres import PostgresDatabase

        return PostgresDatabase(url, pool_size=4, min_size=2, timeout=1.0, **options)
    from structum_lab.plugins.database.sqlalchemy import SQLAlchemyDatabase

    return SQLAlchemyDatabase(url, pool_size=4, max_overflow=0, pool_timeout=1.0, **options)


def _sample(reader: InMemoryMetricReader, name: str) -> dict[str, float]:
    """The current figures of pool ``name`` from one collection."""
    figures = dict.fromkeys(SERIES, 0.0)
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                short = metric.name.removeprefix("db.client.connection.")
                for point in metric.data.data_points:
                    attributes = dict(point.attributes or {})
                    if attributes.get(POOL) != name or not hasattr(point, "value"):
                        continue
                    if short == "count":
                        figures[str(attributes["db.client.connection.state"])] = point.value
                    elif short in figures:
                        figures[short] = point.value
    return figures


def _worker(db: DatabaseInterface, stop: threading.Event, active: threading.Event) -> None:
    rng = random.Random()
    while not stop.is_set():
        if not active.wait(0.05):
            continue
        try:
            with db.transaction() as conn:
                conn.execute("SELECT 1 AS one")
                time.sleep(rng.uniform(0.05, 0.3))  # the application's work, connection held
        except PoolTimeoutError:
            pass  # counted in db.client.connection.timeouts


def _workers_at(t: float, seconds: float, peak: int) -> int:
    """1 worker, up to ``peak`` at half time, back to 1: a triangle."""
    half = seconds / 2
    return max(1, round(1 + (peak - 1) * (1 - abs(t - half) / half)))


def run(args: argparse.Namespace) -> list[tuple[float, dict[str, float]]]:
    sampler = InMemoryMetricReader()
    readers: list[MetricReader] = [sampler]
    exported = _reader(args.exporter)
    if exported is not None:
        readers.append(exported)
    provider = MeterProvider(metric_readers=readers)
    metrics.set_meter_provider(provider)  # before the database: it records from the start

    db = _database(args.url, args.psycopg)
    stop = threading.Event()
    switches = [threading.Event() for _ in range(args.peak)]
    threads = [
        threading.Thread(target=_worker, args=(db, stop, switch), daemon=True)
        for switch in switches
    ]
    for thread in threads:
        thread.start()
    samples: list[tuple[float, dict[str, float]]] = []
    start = time.monotonic()
    try:
        while (t := time.monotonic() - start) < args.seconds:
            n = _workers_at(t, args.seconds, args.peak)
            for i, switch in enumerate(switches):
                (switch.set if i < n else switch.clear)()
            samples.append((t, {**_sample(sampler, "example"), "workers": float(n)}))
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        provider.force_flush()  # one last export while the pool is still open
        db.shutdown()
        provider.shutdown()
    return samples


def plot(samples: list[tuple[float, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [t for t, _ in samples]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.stackplot(
        times,
        [s["used"] for _, s in samples],
        [s["idle"] for _, s in samples],
        labels=["count{state=used}", "count{state=idle}"],
        colors=["#d95f02", "#a6cee3"],
        alpha=0.85,
    )
    top.plot(times, [s["max"] for _, s in samples], "k--", label="max")
    top.plot(
        times,
        [s["pending_requests"] for _, s in samples],
        color="#7570b3",
        lw=2,
        label="pending_requests",
    )
    top.plot(
        times,
        [s["workers"] for _, s in samples],
        color="#666666",
        lw=1,
        ls=":",
        label="workers (load)",
    )
    top.set_ylabel("connections / requests")
    top.legend(loc="upper left", fontsize=8, ncol=2)
    top.set_title("db.client.connection.* of one pool (pool_size=4) under a rising, falling load")
    bottom.plot(times, [s["timeouts"] for _, s in samples], color="#e7298a", lw=2)
    bottom.set_ylabel("timeouts (total)")
    bottom.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temp folder)")
    parser.add_argument("--psycopg", action="store_true", help="PostgresDatabase for the URL")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the load")
    parser.add_argument("--peak", type=int, default=10, help="workers at the peak")
    parser.add_argument("--exporter", choices=["console", "prometheus", "none"], default="console")
    parser.add_argument("--plot", type=Path, help="write a PNG of pool use over time here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        if args.url is None:
            args.url = f"sqlite:///{Path(tmp) / 'example.db'}"
        samples = run(args)
    peak_used = max(s["used"] for _, s in samples)
    peak_pending = max(s["pending_requests"] for _, s in samples)
    print(
        f"samples={len(samples)} peak used={peak_used:g} peak pending_requests={peak_pending:g} "
        f"timeouts={samples[-1][1]['timeouts']:g}",
        file=sys.stderr,
    )
    if args.plot is not None:
        plot(samples, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
