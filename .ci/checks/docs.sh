#!/usr/bin/env bash
# The documentation site builds with `mkdocs build --strict`: every README page included, every
# link resolved, an API reference generated from the docstrings of every distribution.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 tools/dev.py docs build --site-dir "$out/site"
pages=$(find "$out/site/packages" -name index.html | wc -l)
[ "$pages" -eq 9 ] || { echo "expected a page per distribution (9), found $pages" >&2; exit 1; }
grep -q 'id="structum_lab.plugins.database.HealthThresholds"' "$out/site/packages/database-core/index.html" \
  || { echo "the API reference of structum-database-core is missing" >&2; exit 1; }
echo "documentation site: $(find "$out/site" -name '*.html' | wc -l) HTML files, built strictly"
