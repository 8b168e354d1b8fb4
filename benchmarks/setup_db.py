"""The benchmark database: created on the server named by the URL, seeded once, reused.

Everything lives in a dedicated database (``structum_bench`` by default) so that pgbench's tables
and the benchmark's writes never disturb the test suites running against the ``test`` database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = [
    "DEFAULT_URL",
    "USERS",
    "BenchDatabase",
    "prepare",
    "reset_tpcb",
    "sqlalchemy_url",
]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
USERS = 10_000


@dataclass(frozen=True)
class BenchDatabase:
    """Where the benchmark runs and what it found there."""

    url: str
    server_version: str
    pgbench: str | None
    pgbench_version: str | None
    scale: int


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (same host, user, password, options)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """The same URL with SQLAlchemy's psycopg 3 driver spelled out (for the raw engines)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _seed_users(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    count = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'bench_users'"
    ).fetchone()
    if count and count[0]:
        rows = conn.execute("SELECT count(*) FROM bench_users").fetchone()
        if rows and rows[0] == USERS:
            return
        conn.execute("DROP TABLE bench_users")
    # The seed's users table (§3, §11.1), filled with USERS rows for the point-selects.
    conn.execute(
        """
        CREATE TABLE bench_users (
            id integer PRIMARY KEY,
            username varchar(50) NOT NULL,
            email varchar(255) NOT NULL,
            active boolean NOT NULL,
            created_at timestamptz NOT NULL
        )
        """
    )
    conn.execute(
        """
        INSERT INTO bench_users
        SELECT i, 'user_' || i, 'user_' || i || '@example.com', i %% 7 <> 0,
               now() - i * interval '1 minute'
        FROM generate_series(1, %s) AS i
        """,
        (USERS,),
    )
    conn.execute("VACUUM ANALYZE bench_users")


def _ensure_insert_table(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS bench_insert (
            id bigserial PRIMARY KEY,
            username varchar(50) NOT NULL,
            email varchar(255) NOT NULL,
            score double precision NOT NULL
        )
        """
    )


def _pgbench_scale(conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
    present = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename IN "
        "('pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history')"
    ).fetchone()
    if not present or present[0] != 4:
        return None
    row = conn.execute("SELECT count(*) FROM pgbench_branches").fetchone()
    return int(row[0]) if row else None


def _init_tpcb_in_sql(conn: psycopg.Connection[tuple[Any, ...]], scale: int) -> None:
    """What ``pgbench -i -s scale`` creates, for machines without the pgbench binary."""
    conn.execute(
        "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history"
    )
    conn.execute(
        "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, "
        "mtime timestamp, filler char(22))"
    )
    conn.execute(
        "CREATE TABLE pgbench_tellers (tid int not null, bid int, tbalance int, filler char(84)) "
        "WITH (fillfactor=100)"
    )
    conn.execute(
        "CREATE TABLE pgbench_accounts (aid int not null, bid int, abalance int, "
        "filler char(84)) WITH (fillfactor=100)"
    )
    conn.execute(
        "CREATE TABLE pgbench_branches (bid int not null, bbalance int, filler char(88)) "
        "WITH (fillfactor=100)"
    )
    conn.execute(
        "INSERT INTO pgbench_branches(bid, bbalance) SELECT bid, 0 FROM generate_series(1, %s) bid",
        (scale,),
    )
    conn.execute(
        "INSERT INTO pgbench_tellers(tid, bid, tbalance) "
        "SELECT tid, (tid - 1) / 10 + 1, 0 FROM generate_series(1, %s) tid",
        (10 * scale,),
    )
    conn.execute(
        "INSERT INTO pgbench_accounts(aid, bid, abalance, filler) "
        "SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, %s) aid",
        (100_000 * scale,),
    )
    conn.execute("ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid)")
    conn.execute("ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid)")
    conn.execute("ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)")
    conn.execute("VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts")


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+(?:\.\d+)+)", out)
    return match.group(1) if match else out.strip() or None


def find_pgbench() -> str | None:
    """``$STRUCTUM_BENCH_PGBENCH``, then ``pgbench`` on PATH, then the Debian/Ubuntu layout."""
    explicit = os.environ.get("STRUCTUM_BENCH_PGBENCH")
    if explicit:
        return explicit
    found = shutil.which("pgbench")
    if found:
        return found
    lib = "/usr/lib/postgresql"
    if os.path.isdir(lib):
        for version in sorted(os.listdir(lib), reverse=True):
            candidate = os.path.join(lib, version, "bin", "pgbench")
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def prepare(admin_url: str, database: str, *, scale: int) -> BenchDatabase:
    """Create (once) the benchmark database and its tables; return where it is.

    Args:
        admin_url: Any database on the server; used to ``CREATE DATABASE`` when needed.
        database: The benchmark database's name.
        scale: pgbench scale factor of the TPC-B tables (``pgbench -i -s scale``).
    """
    _ensure_database(admin_url, database)
    url = with_database(admin_url, database)
    pgbench = find_pgbench()
    with psycopg.connect(url, autocommit=True) as conn:
        server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        _seed_users(conn)
        _ensure_insert_table(conn)
        if _pgbench_scale(conn) != scale:
            if pgbench is not None:
                subprocess.run(
                    [pgbench, "-i", "-q", "-s", str(scale), url],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            else:
                _init_tpcb_in_sql(conn, scale)
    return BenchDatabase(
        url=url,
        server_version=server_version,
        pgbench=pgbench,
        pgbench_version=_version([pgbench, "--version"]) if pgbench else None,
        scale=scale,
    )


def reset_tpcb(url: str) -> None:
    """Empty the history and vacuum the small tables, as pgbench does before a run (no ``-n``)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE pgbench_history")
        conn.execute("VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts")
