"""Test databases: ``CREATE DATABASE ... TEMPLATE`` against loading the schema into each.

Run from the repository root (needs a PostgreSQL server where the user may ``CREATE DATABASE``;
``--url``, else ``$STRUCTUM_BENCH_URL``, else ``$STRUCTUM_TEST_POSTGRES_URL``)::

    python -m benchmarks.template_clone --tables 40 --runs 5

The schema is synthetic but shaped like an application's: ``--tables`` tables with a primary key,
a foreign key to the previous table, two indexes, a check constraint, plus a view and a function
per table. Each run times (a) ``CREATE DATABASE`` + loading the schema, what a fixture without a
template does per test database, and (b) one clone of a :class:`TemplateDatabase` that loaded it
once. Medians are printed; nothing is asserted (the numbers depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from structum_lab.plugins.database.testing.provision import _admin
from structum_lab.plugins.database.testing.template import TemplateDatabase, _database_url


def schema_sql(tables: int) -> str:
    parts = []
    for i in range(tables):
        ref = f", parent_id BIGINT REFERENCES t{i - 1}(id)" if i else ""
        parts.append(
            f"CREATE TABLE t{i} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
            f"qty INTEGER NOT NULL DEFAULT 0 CHECK (qty >= 0), created TIMESTAMPTZ DEFAULT now()"
            f"{ref});\n"
            f"CREATE INDEX t{i}_name ON t{i} (name);\n"
            f"CREATE INDEX t{i}_created ON t{i} (created);\n"
            f"CREATE VIEW v{i} AS SELECT id, name FROM t{i} WHERE qty > 0;\n"
            f"CREATE FUNCTION f{i}(x INTEGER) RETURNS INTEGER LANGUAGE sql\n"
            f"    AS $$ SELECT x + {i} $$;\n"
        )
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--tables", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    url = (
        args.url
        or os.environ.get("STRUCTUM_BENCH_URL")
        or os.environ.get("STRUCTUM_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/test"
    )
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.sql"
        schema.write_text(schema_sql(args.tables))
        loads: list[float] = []
        for _ in range(args.runs):
            name = f"structum_load_{uuid.uuid4().hex[:8]}"
            began = time.perf_counter()
            _admin(url, [f'CREATE DATABASE "{name}"'])
            _admin(_database_url(url, name), [schema.read_text()])
            loads.append(time.perf_counter() - began)
            _admin(url, [f'DROP DATABASE "{name}"'])
        with TemplateDatabase(url, [schema]) as template:
            for _ in range(args.runs):
                template.drop_clone(template.clone())
            clones = template.clone_seconds
            load_once = template.load_seconds
    load_ms = statistics.median(loads) * 1000
    clone_ms = statistics.median(clones) * 1000
    print(
        f"schema: {args.tables} tables (+ 2 indexes, a view and a function each), {args.runs} runs"
    )
    print(f"CREATE DATABASE + load schema: median {load_ms:.0f} ms per test database")
    print(f"template clone:                median {clone_ms:.0f} ms per test database")
    print(
        f"(template built once: schema load {load_once * 1000:.0f} ms); "
        f"speed-up {load_ms / clone_ms:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
