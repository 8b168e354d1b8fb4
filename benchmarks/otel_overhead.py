"""What the pool metrics cost per transaction: callgrind instructions, with and without OTel.

    python -m benchmarks.otel_overhead                    # every backend's transaction(), 3 modes
    python -m benchmarks.otel_overhead --base /tmp/main   # also a source tree without metrics

Each side is one of ``benchmarks.workloads``' transaction workloads run in a child process under
valgrind's callgrind (only the measured loop is counted, as in ``--only instructions``), in one
of these modes:

- ``no-api``: ``opentelemetry`` cannot be imported (``sys.modules["opentelemetry"] = None``);
- ``api``: the OpenTelemetry API is installed, no SDK is configured (its proxy meter provider);
- ``sdk``: an SDK ``MeterProvider`` with an in-memory reader is the global provider before the
  database is created, so every transaction records ``wait_time`` and ``use_time``;
- ``sdk-untimed``: the same with ``enable_metrics(timings=False)`` (every instrument but those
  two histograms);
- ``base``: with ``--base DIR``, the ``packages/*/src`` of another checkout (e.g. ``git archive
  main``) come first on ``PYTHONPATH``, ``no-api``: the code before the metrics existed.

Needs valgrind and the benchmark database (``benchmarks.setup_db``), like ``--only instructions``.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from benchmarks.callgrind import instructions_per_operation

ROOT = Path(__file__).resolve().parent.parent
SIDES = [
    "PostgresDatabase.transaction()",
    "AsyncPostgresDatabase.transaction()",
    "SQLAlchemyDatabase.transaction()",
    "AsyncSQLAlchemyDatabase.transaction()",
]
MODES = ["no-api", "api", "sdk", "sdk-untimed"]


def _child(argv: list[str]) -> int:
    """``python -m benchmarks.otel_overhead --child MODE NAME URL WARMUP N``."""
    mode, rest = argv[0], argv[1:]
    if mode in ("no-api", "base"):
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    elif mode.startswith("sdk"):
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from structum_lab.plugins.database.metrics import enable_metrics

        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        enable_metrics(timings=mode == "sdk")
    from benchmarks.workloads import _child as run_workload

    return run_workload(rest)


def callgrind(mode: str, name: str, url: str, n: int, base: Path | None) -> float:
    """Client instructions per transaction of workload ``name`` in ``mode``."""
    env: dict[str, str] = {}
    if mode == "base":
        assert base is not None
        sources = [str(p) for p in sorted(base.glob("packages/*/src"))]
        env["PYTHONPATH"] = os.pathsep.join([*sources, str(ROOT)])
    return instructions_per_operation(
        "benchmarks.otel_overhead", ["--child", mode, name, url, "50", str(n)], n, env=env
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_url = os.environ.get(
        "STRUCTUM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--url", default=default_url, help="a database on the server")
    parser.add_argument("--database", default="structum_bench", help="the benchmark database")
    parser.add_argument("--n", type=int, default=400, help="measured transactions per side")
    parser.add_argument("--base", type=Path, help="a checkout without metrics, for comparison")
    parser.add_argument("--only", help="sides whose name starts with this text")
    args = parser.parse_args(argv)

    from benchmarks.setup_db import prepare

    url = prepare(args.url, args.database, scale=1).url
    modes = [*MODES, *(["base"] if args.base else [])]
    sides = [s for s in SIDES if not args.only or s.startswith(args.only)]
    jobs = [(side, mode) for side in sides for mode in modes]
    figures: dict[tuple[str, str], float] = {}
    with ThreadPoolExecutor(2) as pool:
        futures = {
            pool.submit(callgrind, job[1], job[0], url, args.n, args.base): job for job in jobs
        }
        for future in as_completed(futures):
            figures[futures[future]] = future.result()
            print(
                f"{futures[future][0]} [{futures[future][1]}]: {figures[futures[future]]:,.0f}",
                file=sys.stderr,
                flush=True,
            )
    header = "| transaction() of | " + " | ".join(modes) + " | sdk vs api |"
    print(header)
    print("|---|" + "---:|" * (len(modes) + 1))
    for side in sides:
        row = [f"{figures[(side, mode)]:,.0f}" for mode in modes]
        ratio = figures[(side, "sdk")] / figures[(side, "api")]
        print(f"| `{side}` | " + " | ".join(row) + f" | {ratio:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
