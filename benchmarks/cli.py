"""``python -m benchmarks``: run the scenarios, print the table, write the JSON."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from .context import Context
from .harness import Comparison, SideResult, interleave, profile
from .report import format_comparison, markdown, summary, write_json
from .scenarios import SCENARIOS, Scenario, select
from .setup_db import DEFAULT_URL, BenchDatabase, prepare

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
URL_ENVS = ("STRUCTUM_BENCH_URL", "STRUCTUM_TEST_POSTGRES_URL")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Structum Database against the raw drivers, interleaved in one run "
            "(see benchmarks/README.md)."
        ),
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few hundred iterations per side, targets not evaluated (CI: the code still runs)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this scenario or group (repeatable, or comma-separated); see --list",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="length of one side's slice per round (default 0.25; smoke 0.05)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="interleaved rounds per comparison (default 15; smoke 2)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="threads (sync) or tasks (async) of the concurrent point-select (default 4)",
    )
    parser.add_argument(
        "--rows", type=int, metavar="N", help="rows per executemany (default 10000; smoke 200)"
    )
    parser.add_argument(
        "--memory-transactions",
        type=int,
        metavar="N",
        help="transactions watched for RSS growth (default 100000; smoke 300)",
    )
    parser.add_argument(
        "--url",
        help=(
            "any database on the PostgreSQL server to use (default: $STRUCTUM_BENCH_URL, "
            f"$STRUCTUM_TEST_POSTGRES_URL, else {DEFAULT_URL})"
        ),
    )
    parser.add_argument(
        "--database",
        default="structum_bench",
        help="database the benchmark creates and uses on that server (default structum_bench)",
    )
    parser.add_argument(
        "--scale", type=int, default=2, help="pgbench scale factor of the TPC-B tables (default 2)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS,
        metavar="PATH",
        help=f"JSON output (default {RESULTS})",
    )
    parser.add_argument(
        "--profile",
        metavar="TEXT",
        help=(
            "after each comparison, run every side whose name contains TEXT once more under "
            "cProfile and print its top functions by own time (find a wrapper's hot spots)"
        ),
    )
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown tables")
    return parser


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(db: BenchDatabase) -> dict[str, Any]:
    """Machine and versions, printed above the table and stored in the JSON."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "psycopg": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
        "libpq": psycopg.pq.version(),
        "psycopg_pool": _version("psycopg-pool"),
        "sqlalchemy": _version("SQLAlchemy"),
        "postgresql": db.server_version,
        "pgbench": db.pgbench_version,
        "structum_database_core": _version("structum-database-core"),
        "structum_database_postgres": _version("structum-database-postgres"),
        "structum_database_sqlalchemy": _version("structum-database-sqlalchemy"),
        "git_commit": _git_commit(),
    }


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 unless a side failed to run (missed targets never fail)."""
    args = _parser().parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            doc = (scenario.run.__doc__ or "").strip().splitlines()
            print(f"{scenario.name:32} {doc[0] if doc else ''}")
        return 0
    try:
        chosen = select([n for item in args.only for n in item.split(",") if n.strip()])
    except ValueError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("python -m benchmarks: --workers must be at least 1", file=sys.stderr)
        return 2

    explicit = args.url or next((os.environ[e] for e in URL_ENVS if os.environ.get(e)), None)
    provisioned: Any = None
    try:
        db = prepare(explicit or DEFAULT_URL, args.database, scale=args.scale)
    except psycopg.OperationalError as exc:
        provisioned = None if explicit else _provision()
        if provisioned is None:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(
                f"python -m benchmarks: cannot reach PostgreSQL ({reason}); start it, or pass "
                "--url / set STRUCTUM_BENCH_URL to a server where the user may CREATE DATABASE",
                file=sys.stderr,
            )
            return 2
    try:
        if provisioned is not None:
            db = prepare(provisioned.url, args.database, scale=args.scale)
        return _run(args, chosen, db, argv)
    finally:
        if provisioned is not None:
            provisioned.close()


def _provision() -> Any:
    """No server at the default URL: a throwaway one from the testing package, if installed."""
    try:
        from structum_lab.plugins.database.testing.provision import provision_postgres
    except ImportError:
        return None
    try:
        server = provision_postgres(mode="auto")
    except Exception as exc:
        print(f"python -m benchmarks: no throwaway PostgreSQL either: {exc}", file=sys.stderr)
        return None
    print(
        f"no PostgreSQL at {DEFAULT_URL}; using a throwaway server ({server.description}); "
        "its settings (fsync off) differ from a real one",
        flush=True,
    )
    return server


def _run(
    args: argparse.Namespace, chosen: list[Scenario], db: BenchDatabase, argv: list[str] | None
) -> int:
    smoke = bool(args.smoke)
    slice_seconds = args.duration if args.duration is not None else (0.05 if smoke else 0.25)
    ctx = Context(
        db=db,
        smoke=smoke,
        workers=args.workers,
        slice_seconds=slice_seconds,
        rounds=args.rounds if args.rounds is not None else (2 if smoke else 15),
        warmup_seconds=min(0.3, slice_seconds),
        executemany_rows=args.rows if args.rows is not None else (200 if smoke else 10_000),
        memory_transactions=(
            args.memory_transactions
            if args.memory_transactions is not None
            else (300 if smoke else 100_000)
        ),
    )
    env = environment(db)
    print(
        f"Structum Database benchmarks{' (smoke: targets not evaluated)' if smoke else ''}\n"
        f"  machine: {env['cpus']} CPUs, {env['cpu']}; {env['platform']}\n"
        f"  Python {env['python']}, psycopg {env['psycopg']} ({env['psycopg_impl']}, "
        f"libpq {env['libpq']}), psycopg_pool {env['psycopg_pool']}, "
        f"SQLAlchemy {env['sqlalchemy']}, PostgreSQL {env['postgresql']}, "
        f"pgbench {env['pgbench'] or 'not found'}\n"
        f"  database {args.database!r}, {ctx.rounds} rounds x {ctx.slice_seconds:g} s slices, "
        f"{ctx.workers} workers",
        flush=True,
    )

    started = time.time()
    load_before = _loadavg()
    blocks: list[tuple[Comparison, list[SideResult]]] = []
    everything: list[SideResult] = []
    for scenario in chosen:
        runs = scenario.run(ctx)
        try:
            for comparison in runs:
                results = interleave(
                    comparison, warmup_seconds=ctx.warmup_seconds, on_progress=_progress
                )
                _progress("")
                print("\n" + format_comparison(comparison, results, smoke), flush=True)
                if args.profile:
                    for side in comparison.sides:
                        if args.profile.lower() in side.name.lower():
                            print(f"\ncProfile of {side.name!r} ({comparison.id}):", flush=True)
                            print(profile(side, comparison.slice_seconds * 4), flush=True)
                blocks.append((comparison, results))
                everything += results
        except Exception as exc:
            # A scenario that cannot even set up (a pool that cannot open) is one error row.
            everything.append(
                SideResult(
                    comparison=scenario.name,
                    title=scenario.name,
                    unit="",
                    side="(setup)",
                    per_round=[],
                    median=None,
                    ratios=[],
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            print(f"\n{scenario.name}: setup failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            runs.close()

    meta = {
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "smoke": smoke,
        "command": " ".join(
            ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "scenarios": [s.name for s in chosen],
        "workers": ctx.workers,
        "slice_seconds": ctx.slice_seconds,
        "rounds": ctx.rounds,
        "executemany_rows": ctx.executemany_rows,
        "memory_transactions": ctx.memory_transactions,
        "pgbench_scale": db.scale,
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "environment": env,
    }
    write_json(args.json, meta, everything)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(blocks, smoke), encoding="utf-8")

    lines = summary(everything, smoke)
    print()
    for line in lines:
        print(line)
    errors = sum(1 for r in everything if r.error is not None)
    misses = sum(1 for line in lines if line.startswith("MISS"))
    verdict = "smoke run: targets not evaluated" if smoke else f"{misses} target(s) missed"
    print(
        f"{verdict}; {errors} error(s); {meta['seconds']} s; JSON: {args.json}"
        + (f"; Markdown: {args.markdown}" if args.markdown else ""),
        flush=True,
    )
    return 1 if errors else 0
