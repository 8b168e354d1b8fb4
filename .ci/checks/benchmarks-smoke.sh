#!/usr/bin/env bash
# CI: run the benchmarks in smoke mode (a few hundred iterations per side, targets not evaluated)
# so that the benchmark code cannot rot. Speed never fails CI; a side that cannot run does.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY="${STRUCTUM_DEV_VENV:-$ROOT/.venv}/bin/python"
[ -x "$PY" ] || { echo "no $PY: run python3 tools/dev.py test (or .ci/run) first" >&2; exit 1; }
# The benchmark finds its server as documented in benchmarks/README.md (STRUCTUM_BENCH_URL or
# STRUCTUM_TEST_POSTGRES_URL if set, else the local service, else a throwaway cluster) and creates
# its own database (structum_bench) there, so the test database is left alone.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PY" -m benchmarks --smoke --json "$out/smoke.json"
