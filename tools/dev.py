#!/usr/bin/env python3
"""One entry point for working on the monorepo, needing nothing but Python >= 3.10.

    python3 tools/dev.py demo        # install into .venv, then run the Quick Start demo
    python3 tools/dev.py test        # install into .venv, then run every package's tests
    python3 tools/dev.py lint        # ruff check + ruff format --check + generated twins up to date
    python3 tools/dev.py twins       # regenerate the sync twins from their async sources
    python3 tools/dev.py typecheck   # mypy --strict over every package
    python3 tools/dev.py bench       # benchmarks (see benchmarks/README.md)
    python3 tools/dev.py docs        # build the documentation site into site/ (mkdocs --strict)

The virtual environment is made (or refreshed, when a pyproject or requirements file changed) on
each call: every package is installed editable with all its extras, plus requirements-dev.txt.
The same scripts exist as Hatch workspace scripts (``hatch run test``), see hatch.toml.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("STRUCTUM_DEV_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"

# Installed in dependency order, with the extras that pull in every driver the tests use.
PACKAGES = [
    "packages/config",
    "packages/dynaconf",
    "packages/observability",
    "packages/database-core",
    "packages/database-sqlalchemy[all,alembic]",
    "packages/database-postgres[binary]",
    "packages/database-testing",
    "packages/database-fastapi",
    "packages/database[all]",
]
TEST_PATHS = ["packages", "tests-integration"]
SOURCE_PATHS = ["packages", "tests-integration", "tools", "benchmarks", "examples", "docs"]


def _existing(specs: list[str]) -> list[str]:
    return [s for s in specs if (ROOT / s.split("[")[0] / "pyproject.toml").exists()]


def _fingerprint() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in [*sorted(ROOT.glob("packages/*/pyproject.toml")), ROOT / "requirements-dev.txt"]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> int:
    """Run a command from the repository root and return its exit code."""
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


def ensure_venv() -> None:
    """Create or refresh .venv so that it holds every package (editable) and the dev tools."""
    stamp = VENV / ".structum-installed"
    fingerprint = _fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip"], cwd=ROOT)
    editables = [arg for spec in _existing(PACKAGES) for arg in ("-e", spec)]
    print("installing the packages (editable) and the dev tools", flush=True)
    subprocess.check_call([*pip, "-r", "requirements-dev.txt", *editables], cwd=ROOT)
    stamp.write_text(fingerprint)


def _parallel(args: list[str]) -> list[str]:
    """pytest-xdist options, unless the caller chose (``-n``, ``-p no:xdist``, a debugger).

    Most of the suite waits on servers, sockets and timeouts, so one worker more than the
    cores keeps them busy; ``--dist loadgroup`` keeps each ``xdist_group`` (the fault suite, which
    stops and freezes its own server) on one worker.
    """
    chosen = ("-n", "--numprocesses", "--pdb", "--trace", "no:xdist", "xdist")
    if any(arg.startswith(flag) or arg.endswith(flag) for arg in args for flag in chosen):
        return []
    workers = min(4, (os.cpu_count() or 1) + 1)
    return ["-n", str(workers), "--dist", "loadgroup"]


def cmd_test(args: list[str]) -> int:
    """Run every package's unit tests and the integration suite in one pytest session.

    In parallel (pytest-xdist, see :func:`_parallel`); ``-n 0`` runs it in one process.
    """
    return run(PY, "-m", "pytest", *TEST_PATHS, *_parallel(args), *args)


def cmd_demo(args: list[str]) -> int:
    """Run the Quick Start end to end (embedded SQLite unless a database is configured)."""
    return run(BIN / "structum-db", "demo", *args)


def cmd_lint(args: list[str]) -> int:
    """Ruff lint and format check, and the check that every generated sync twin is up to date."""
    paths = [p for p in SOURCE_PATHS if (ROOT / p).exists()]
    return (
        run(PY, "-m", "ruff", "check", *paths, *args)
        or run(PY, "-m", "ruff", "format", "--check", *paths)
        or run(PY, "tools/async_to_sync.py", "--check")
    )


def cmd_twins(args: list[str]) -> int:
    """Regenerate the sync twins from their async sources (tools/async_to_sync.py)."""
    return run(PY, "tools/async_to_sync.py", *args)


def cmd_typecheck(args: list[str]) -> int:
    """Mypy --strict over every package's sources, then each test folder on its own.

    Test folders are separate runs because each may have its own ``conftest.py`` (one module name).
    """
    sources = [str(p) for p in sorted(ROOT.glob("packages/*/src"))]
    status = run(PY, "-m", "mypy", *sources, *args)
    tests = [*sorted(ROOT.glob("packages/*/tests")), ROOT / "tests-integration"]
    while tests:
        folder = tests.pop(0)
        # A subfolder with a conftest.py of its own (tests-integration/faults) is a run of its own.
        nested = sorted(p.parent for p in folder.glob("*/conftest.py"))
        tests[:0] = nested
        excluded = [a for n in nested for a in ("--exclude", f"^{n.relative_to(ROOT).as_posix()}/")]
        status = run(PY, "-m", "mypy", str(folder.relative_to(ROOT)), *excluded, *args) or status
    return status


def cmd_bench(args: list[str]) -> int:
    """The benchmark suite (ratios against the raw drivers, in one run)."""
    return run(PY, "-m", "benchmarks", *args)


def cmd_docs(args: list[str]) -> int:
    """Install the documentation tools (docs/requirements.txt), then build the site, strictly.

    ``--strict`` turns every warning (a broken link, a docstring that does not match its
    signature) into a failure; ``mkdocs serve`` instead of ``build`` previews the site.
    """
    pip = [PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    status = run(*pip, "-r", "docs/requirements.txt")
    if status:
        return status
    # Material prints a banner about its successor on every build; it is not a warning of ours.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = args[0] if args and args[0] in ("build", "serve") else "build"
    rest = args[1:] if args and args[0] in ("build", "serve") else args
    strict = ["--strict"] if command == "build" else []
    return run(PY, "-m", "mkdocs", command, *strict, *rest, env=env)


COMMANDS = {
    "test": cmd_test,
    "demo": cmd_demo,
    "lint": cmd_lint,
    "twins": cmd_twins,
    "typecheck": cmd_typecheck,
    "bench": cmd_bench,
    "docs": cmd_docs,
}


def main(argv: list[str]) -> int:
    """Install what is needed, then run the named command with the remaining arguments."""
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may be started by an older Python
        print("Structum Database needs Python >= 3.10", file=sys.stderr)
        return 2
    ensure_venv()
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
