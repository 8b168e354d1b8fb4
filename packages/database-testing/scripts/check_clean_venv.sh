#!/usr/bin/env bash
# Prove that structum-database-testing works on its own: build the wheels of structum-config,
# structum-observability (stdlib only; core masks with it),
# structum-database-core and structum-database-testing, install them into a fresh virtual
# environment (pytest and typing_extensions come from the package index), check that neither
# sqlalchemy nor psycopg got installed, and run a small pytest suite that uses the plugin's
# mock fixtures, fault injection and the facade import.
#
# Usage: packages/database-testing/scripts/check_clean_venv.sh
#   PYTHON=/path/to/python   interpreter that builds the wheels and creates the venv
#                            (default: $STRUCTUM_DEV_VENV/bin/python, else python3)
#   KEEP=1                   keep the temporary directory (printed at the end)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -n "${STRUCTUM_DEV_VENV:-}" ] && [ -x "$STRUCTUM_DEV_VENV/bin/python" ]; then
    PY="$STRUCTUM_DEV_VENV/bin/python"
  else
    PY=python3
  fi
fi
started=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/structum-clean-venv.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

say() { printf '[clean-venv %ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

# 1. Wheels. Without build isolation when hatchling is already there (fast, offline); otherwise
#    pip fetches hatchling into an isolated build environment.
build_flags=(--no-deps --quiet --wheel-dir "$WORK/wheels")
if "$PY" -c "import hatchling" 2>/dev/null; then build_flags+=(--no-build-isolation); fi
for pkg in config observability database-core database-testing; do
  "$PY" -m pip wheel "${build_flags[@]}" "$ROOT/packages/$pkg"
done
say "built: $(cd "$WORK/wheels" && ls | tr '\n' ' ')"

"$PY" - "$WORK/wheels" <<'EOF'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("structum_database_testing-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [l for l in zf.read(meta).decode().splitlines() if l.startswith("Requires-Dist:")]
    entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
assert "structum_lab/plugins/database/testing/py.typed" in names, "py.typed missing"
for shared in ("structum_lab/__init__.py", "structum_lab/plugins/__init__.py",
               "structum_lab/plugins/database/__init__.py"):
    assert shared not in names, f"{shared} must not be in the testing wheel"
hard = [r for r in requires if "extra ==" not in r]
assert not any(d in r.lower() for r in hard for d in ("sqlalchemy", "psycopg")), hard
assert "structum_database = structum_lab.plugins.database.testing.pytest_plugin" in entry, entry
print("wheel ok:", "; ".join(r.split(":", 1)[1].strip() for r in hard))
EOF

# 2. A fresh virtual environment with only the testing distribution (and what it needs).
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -qq --disable-pip-version-check \
  --find-links "$WORK/wheels" structum-database-testing
say "installed: $("$VPY" -m pip list --format=freeze --disable-pip-version-check | tr '\n' ' ')"

# 3. No database driver came along.
for absent in sqlalchemy psycopg psycopg2 asyncpg pytest_asyncio; do
  if "$VPY" -c "import $absent" 2>/dev/null; then
    echo "FAIL: '$absent' is importable in the clean venv; structum-database-testing must not pull it in" >&2
    exit 1
  fi
done
say "sqlalchemy, psycopg, psycopg2, asyncpg and pytest-asyncio are absent"

# 4. The plugin, through its entry point, in a real pytest run.
mkdir "$WORK/suite"
cat > "$WORK/suite/test_clean_venv.py" <<'EOF'
import asyncio

import pytest

from structum_lab.plugins.database import (
    DatabaseUnavailableError, HealthStatus, MockDatabase, SerializationError,
)


def create_user(db, name):
    """Application code under test: retries once on a serialization failure."""
    for attempt in (1, 2):
        try:
            with db.transaction() as conn:
                return conn.execute(
                    "INSERT INTO users (name) VALUES (:name) RETURNING id", {"name": name}
                ).scalar()
        except SerializationError:
            if attempt == 2:
                raise


def test_mock_db_records_and_answers(mock_db):
    assert isinstance(mock_db, MockDatabase)
    mock_db.on("INSERT INTO users (name) VALUES (:name) RETURNING id", rows=[{"id": 7}])
    with mock_db.transaction() as conn:
        conn.execute("SELECT * FROM users")
    assert len(mock_db.queries) == 1
    mock_db.fail_next(error="serialization")
    assert create_user(mock_db, "ann") == 7
    assert [tx.status for tx in mock_db.transactions] == ["committed", "rolled_back", "committed"]
    mock_db.assert_executed_with(
        "INSERT INTO users (name) VALUES (:name) RETURNING id", {"name": "ann"}
    )


def test_outage_and_health(mock_db):
    mock_db.offline = True
    assert mock_db.health_check().status is HealthStatus.UNHEALTHY
    with pytest.raises(DatabaseUnavailableError):
        create_user(mock_db, "bob")


def test_async_twin_without_pytest_asyncio(async_mock_db):
    async def main():
        async with async_mock_db.transaction() as conn:
            await conn.execute("SELECT 1")

    asyncio.run(main())
    async_mock_db.assert_committed()
EOF
cat > "$WORK/suite/test_needs_backend.py" <<'EOF'
def test_backend_fixture(postgres_db):
    raise AssertionError("must not get here without structum-database-postgres")
EOF
cd "$WORK/suite"
help_text=$("$VPY" -m pytest --help)
grep -q -- "--structum-db-url" <<<"$help_text" || {
  echo "FAIL: the pytest11 entry point did not register the plugin" >&2; exit 1; }
"$VPY" -m pytest -p no:cacheprovider -W error -q test_clean_venv.py
set +e
out=$("$VPY" -m pytest -p no:cacheprovider -q test_needs_backend.py \
  --structum-db-url=postgresql://nobody@127.0.0.1:9/none 2>&1)
set -e
grep -q 'pip install "structum-database\[postgres\]"' <<<"$out" || {
  echo "FAIL: a backend fixture without its backend must fail with the install command:" >&2
  echo "$out" >&2; exit 1; }
say "ok: the plugin works with neither sqlalchemy nor psycopg installed"
