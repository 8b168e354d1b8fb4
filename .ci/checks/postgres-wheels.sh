#!/usr/bin/env bash
# Issue #3's promise, from built wheels in a fresh virtual environment:
# `pip install "structum-database[postgres]"` runs a transaction and installs no SQLAlchemy, with
# psycopg's binary implementation (chosen by that extra, not required by the backend).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY="${STRUCTUM_DEV_VENV:-$ROOT/.venv}/bin/python"
URL="${STRUCTUM_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/structum-pg-wheels.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

flags=(--no-deps --quiet --wheel-dir "$WORK/wheels")
if "$PY" -c "import hatchling" 2>/dev/null; then flags+=(--no-build-isolation); fi
for pkg in config dynaconf observability database-core database-postgres database; do
  "$PY" -m pip wheel "${flags[@]}" "packages/$pkg"
done
echo "built: $(cd "$WORK/wheels" && ls | tr '\n' ' ')"

"$PY" -m venv "$WORK/venv"
# Our names are not on the index: --find-links serves them, the index serves psycopg & co.
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check \
  --find-links "$WORK/wheels" "structum-database[postgres]"

cd "$WORK"  # away from the source tree, so only the installed wheels are imported
"$WORK/venv/bin/python" - "$URL" <<'PYEOF'
import asyncio
import importlib.util
import sys

url = sys.argv[1]
assert importlib.util.find_spec("sqlalchemy") is None, "sqlalchemy must not be installed"
import psycopg

# structum-database-postgres leaves psycopg's implementation to extras; the meta package's
# `postgres` extra picks the self-contained binary one, so nothing else is needed.
assert psycopg.pq.__impl__ == "binary", psycopg.pq.__impl__
from structum_lab.plugins.database import AsyncPostgresDatabase, PostgresDatabase

try:
    from structum_lab.plugins.database import SQLAlchemyDatabase  # noqa: F401
except ImportError as exc:
    assert 'pip install "structum-database[sqlalchemy]"' in str(exc), exc
else:
    raise AssertionError("SQLAlchemyDatabase should not be importable")

with PostgresDatabase(url, pool_size=2, min_size=1) as db:
    with db.transaction() as conn:
        assert conn.execute("SELECT :n + 1 AS answer", {"n": 41}).fetchone() == {"answer": 42}
    assert db.get_pool_info()["checked_out"] == 0


async def main() -> None:
    db = AsyncPostgresDatabase(url, pool_size=2, min_size=1)
    async with db.transaction() as conn:
        result = await conn.execute("SELECT $1::int * 2 AS twice", [21])
        assert await result.fetchone() == {"twice": 42}
    await db.shutdown()


asyncio.run(main())
print("structum-database[postgres] from wheels: psycopg binary, transaction ok, no sqlalchemy")
PYEOF
