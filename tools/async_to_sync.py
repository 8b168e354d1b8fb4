#!/usr/bin/env python3
"""Generate the synchronous twins from their asyncio sources (psycopg's ``async_to_sync.py`` role).

The async file is the only one written by hand; its sync twin is derived from it here and checked in
CI, so a fix made in the async source lands in both twins by construction.

    python3 tools/async_to_sync.py           # regenerate every sync twin
    python3 tools/async_to_sync.py --check   # fail when a twin is stale or was edited by hand

The conversion is textual, in this order:

1. Marked blocks keep the real differences in the async source, as psycopg does::

       if True:  # ASYNC
           <async-only statements>
       else:
           <sync-only statements>

   The sync twin gets the ``else`` body (dedented), or nothing when there is no ``else``.
2. The imports in :data:`IMPORTS` are replaced whole; keywords go (``async def`` → ``def``,
   ``async with`` → ``with``, ``await x`` → ``x``); the names in :data:`NAMES` are mapped
   (``__aenter__`` → ``__enter__``...); then every remaining ``Async`` prefix of a CamelCase name
   is dropped (``AsyncConnectionPool`` → ``ConnectionPool``). Docstrings and comments are
   converted too, so they are written once, in the async source, in words true of both twins.
3. ``ruff`` sorts the imports, drops the ones the sync twin no longer uses, joins nested ``with``
   statements (they could not be joined while one was ``async with``) and formats the result,
   so the twin passes the same lint as hand-written code.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CORE = "packages/database-core/src/structum_lab/plugins/database"
_PG = "packages/database-postgres/src/structum_lab/plugins/database/postgres"
_SA = "packages/database-sqlalchemy/src/structum_lab/plugins/database/sqlalchemy"
_TESTING = "packages/database-testing/src/structum_lab/plugins/database/testing"

# Names whose sync twin is not the name without ``Async``; each is one entry here instead of one
# special case in code.
NAMES: dict[str, str] = {
    "AsyncDatabaseBase": "SyncDatabaseBase",
    "SQLAlchemyAsyncResult": "SQLAlchemyResult",
    "AsyncSession": "Session",
    "AsyncEngine": "Engine",
    "SAAsyncConnection": "SAConnection",
    "asynccontextmanager": "contextmanager",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "aclose": "close",
    "current_task": "get_ident",
    "asleep": "sleep",
    "aacquire": "acquire",
}

# Imports whose sync partner lives in another module: the whole line is replaced.
IMPORTS: dict[str, str] = {
    "from ._replicas_async import AsyncReplicaRouter": (
        "from ._replicas_sync import ReplicaRouter"
    ),
    "from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection": (
        "from sqlalchemy import Connection as SAConnection"
    ),
    "from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession": (
        "from sqlalchemy import Engine\nfrom sqlalchemy.orm import Session"
    ),
}


@dataclass(frozen=True)
class Twin:
    """One async source and the sync file generated from it."""

    source: str
    target: str
    names: dict[str, str] = field(default_factory=dict)


TWINS: list[Twin] = [
    Twin(f"{_CORE}/_interfaces_async.py", f"{_CORE}/_interfaces_sync.py"),
    Twin(f"{_CORE}/_base_async.py", f"{_CORE}/_base_sync.py"),
    Twin(f"{_CORE}/_replicas_async.py", f"{_CORE}/_replicas_sync.py"),
    Twin(f"{_PG}/_async.py", f"{_PG}/_sync.py"),
    Twin(f"{_SA}/_async.py", f"{_SA}/_sync.py"),
    Twin(f"{_TESTING}/_mock_async.py", f"{_TESTING}/_mock_sync.py"),
    Twin(
        "tests-integration/faults/test_deadlines_async.py",
        "tests-integration/faults/test_deadlines_sync.py",
        {"async_postgres_backend": "sync_postgres_backend"},
    ),
    Twin(
        "tests-integration/replicas/test_replicas_async.py",
        "tests-integration/replicas/test_replicas_sync.py",
        {"async_postgres_backend": "sync_postgres_backend"},
    ),
    Twin(
        "tests-integration/test_portable_async.py",
        "tests-integration/test_portable_sync.py",
        {
            "async_db": "sync_db",
            "async_backend": "sync_backend",
            "async_postgres_backend": "sync_postgres_backend",
            "ASYNC_BACKENDS": "SYNC_BACKENDS",
        },
    ),
    Twin(
        "tests-integration/faults/test_health_async.py",
        "tests-integration/faults/test_health_sync.py",
        {"async_postgres_backend": "sync_postgres_backend"},
    ),
    Twin(
        "tests-integration/faults/test_recovery_async.py",
        "tests-integration/faults/test_recovery_sync.py",
        {"async_postgres_backend": "sync_postgres_backend"},
    ),
    Twin(
        "tests-integration/faults/test_fairness_async.py",
        "tests-integration/faults/test_fairness_sync.py",
        {"async_postgres_backend": "sync_postgres_backend"},
    ),
    Twin(
        "tests-integration/faults/test_mariadb_deadlines_async.py",
        "tests-integration/faults/test_mariadb_deadlines_sync.py",
    ),
    Twin(
        "tests-integration/faults/test_killed_async.py",
        "tests-integration/faults/test_killed_sync.py",
        {"async_postgres_backend": "sync_postgres_backend"},
    ),
    Twin(
        "tests-integration/test_observability_async.py",
        "tests-integration/test_observability_sync.py",
        {"async_backend": "sync_backend"},
    ),
]

_MARK = re.compile(r"^(?P<indent>[ \t]*)if True:\s*#\s*ASYNC\b.*$")
_KEYWORDS = [
    # ``await (await conn.execute(q)).scalar()`` reads ``conn.execute(q).scalar()`` when sync.
    (re.compile(r"\bawait \(await ([\w.]+\((?:[^()]|\([^()]*\))*\))\)"), r"\1"),
    (re.compile(r"\basync (def|with|for)\b"), r"\1"),
    (re.compile(r"\bawait\s+"), ""),
]
_ASYNC_PREFIX = re.compile(r"\b(_?)Async(?=[A-Z])")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _block(lines: list[str], start: int, indent: int) -> int:
    """Index just past the indented body that starts at ``start`` (blank lines included)."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent_of(lines[end]) > indent):
        end += 1
    # Trailing blank lines belong to what follows the block.
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end


def resolve_marked_blocks(text: str) -> str:
    """Replace each ``if True:  # ASYNC ... else: ...`` by the dedented ``else`` body."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MARK.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = len(match["indent"])
        body_end = _block(lines, i + 1, indent)
        i = body_end
        if i < len(lines) and _indent_of(lines[i]) == indent and lines[i].strip() == "else:":
            else_end = _block(lines, i + 1, indent)
            else_body = lines[i + 1 : else_end]
            if not else_body:
                raise ValueError(f"empty else branch of a marked block at line {i + 1}")
            step = _indent_of(next(line for line in else_body if line.strip())) - indent
            out.extend(line[step:] if line.strip() else "" for line in else_body)
            i = else_end
    return "\n".join(out)


def convert_text(text: str, names: dict[str, str] | None = None) -> str:
    """The sync form of an async module's text (before formatting)."""
    text = resolve_marked_blocks(text)
    for line, replacement in IMPORTS.items():
        text = text.replace(line, replacement)
    for pattern, replacement in _KEYWORDS:
        text = pattern.sub(replacement, text)
    mapping = {**NAMES, **(names or {})}
    word = re.compile(r"\b(" + "|".join(map(re.escape, sorted(mapping, key=len)[::-1])) + r")\b")
    text = word.sub(lambda m: mapping[m.group(1)], text)
    return _ASYNC_PREFIX.sub(r"\1", text)


def _header(twin: Twin) -> str:
    source = Path(twin.source).name
    return (
        f"# WARNING: generated by tools/async_to_sync.py from {source}.\n"
        f"# DO NOT EDIT: change {source} and run `python3 tools/async_to_sync.py`.\n"
    )


def _ruff(args: list[str], text: str, filename: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", filename, "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    # ``ruff check --fix`` exits 1 when problems remain; the lint step reports those itself.
    if done.returncode not in (0, 1) or not done.stdout:
        raise RuntimeError(f"ruff {' '.join(args)} failed on {filename}:\n{done.stderr}")
    return done.stdout


def generate(twin: Twin) -> str:
    """The full text of ``twin.target`` as generated from ``twin.source``."""
    text = convert_text((ROOT / twin.source).read_text(), twin.names)
    text = _header(twin) + text
    text = _ruff(["check", "--fix", "--select", "I,F401,SIM117", "--quiet"], text, twin.target)
    return _ruff(["format", "--quiet"], text, twin.target)


def main(argv: list[str] | None = None) -> int:
    """Regenerate (or, with ``--check``, verify) every sync twin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a twin is out of date")
    args = parser.parse_args(argv)
    stale = []
    for twin in TWINS:
        expected = generate(twin)
        path = ROOT / twin.target
        current = path.read_text() if path.exists() else ""
        if current == expected:
            continue
        if args.check:
            stale.append(twin.target)
            diff = difflib.unified_diff(
                expected.splitlines(keepends=True),
                current.splitlines(keepends=True),
                f"{twin.target} (generated)",
                f"{twin.target} (on disk)",
            )
            sys.stdout.writelines(list(diff)[:60])
        else:
            path.write_text(expected)
            print(f"generated {twin.target} from {twin.source}")
    if stale:
        print(
            f"\n{len(stale)} sync twin(s) out of date: {', '.join(stale)}\n"
            "edit the async source, then run: python3 tools/async_to_sync.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
