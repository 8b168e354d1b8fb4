#!/usr/bin/env bash
# structum-database-testing installs and works without SQLAlchemy or psycopg (fresh venv, wheels).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${STRUCTUM_DEV_VENV:-.venv}/bin/python" bash packages/database-testing/scripts/check_clean_venv.sh
