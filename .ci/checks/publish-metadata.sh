#!/usr/bin/env bash
# Every distribution is ready to publish: build each wheel and sdist, list what the wheels hold,
# and check their metadata (the Apache-2.0 LICENSE inside, license expression, project URLs,
# classifiers that exist, supported Python versions, psycopg's implementation left to extras).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY="${STRUCTUM_DEV_VENV:-$ROOT/.venv}/bin/python"
[ -x "$PY" ] || { echo "no $PY: run python3 tools/dev.py test (or .ci/run) first" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/structum-publish.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for license in packages/*/LICENSE; do
  cmp -s LICENSE "$license" || { echo "$license differs from LICENSE" >&2; exit 1; }
done

"$PY" -m pip install --quiet --disable-pip-version-check build trove-classifiers
for pkg in packages/*/; do
  # No isolation: hatchling is in the dev venv, and the build must not depend on the network.
  "$PY" -m build --no-isolation --wheel --sdist --outdir "$WORK/dist" "$pkg" >"$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; exit 1; }
done

"$PY" - "$WORK/dist" <<'PYEOF'
import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from trove_classifiers import classifiers as known

dist = Path(sys.argv[1])
wheels = sorted(dist.glob("*.whl"))
assert len(wheels) == 9, [w.name for w in wheels]
license_text = Path("LICENSE").read_bytes()
for wheel in wheels:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        licenses = [n for n in names if re.search(r"\.dist-info/licenses/LICENSE$", n)]
        assert licenses, f"{wheel.name}: no LICENSE in {names}"
        assert zf.read(licenses[0]) == license_text, f"{wheel.name}: LICENSE is not Apache-2.0"
    name = meta["Name"]
    assert meta["License-Expression"] == "Apache-2.0", (name, meta["License-Expression"])
    assert meta.get_all("License-File") == ["LICENSE"], (name, meta.get_all("License-File"))
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    for label in ("Homepage", "Documentation", "Repository", "Issues", "Changelog"):
        assert label in urls, f"{name}: no {label} URL in {urls}"
    classifiers = meta.get_all("Classifier") or []
    unknown = [c for c in classifiers if c not in known]
    assert not unknown, f"{name}: unknown classifiers {unknown}"
    for wanted in (
        "Typing :: Typed",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.13",
    ):
        assert wanted in classifiers, f"{name}: no {wanted!r}"
    assert any(c.startswith("Development Status ::") for c in classifiers), name
    assert meta["Requires-Python"] == ">=3.10", (name, meta["Requires-Python"])
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]

    def needs(extra: str | None, requires: list[Requirement] = requires) -> list[Requirement]:
        """What installing the distribution (with ``extra``) brings."""
        env = {"extra": extra or ""}
        return [r for r in requires if r.marker is None or r.marker.evaluate(env)]

    if name == "structum-database-postgres":
        psycopg = [r for r in needs(None) if r.name == "psycopg"]
        assert psycopg and not any(r.extras for r in psycopg), (
            f"psycopg's implementation must be chosen by an extra, not required: {psycopg}"
        )
        assert {"psycopg", "psycopg-pool"} <= {r.name for r in needs(None)}
        for extra in ("binary", "c"):
            assert any(r.name == "psycopg" and extra in r.extras for r in needs(extra)), extra
    if name == "structum-database":
        for extra in ("postgres", "all"):
            backend = [r for r in needs(extra) if r.name == "structum-database-postgres"]
            assert backend and "binary" in backend[0].extras, (extra, backend)
    print(f"{wheel.name}: LICENSE, {len(urls)} URLs, {len(classifiers)} classifiers")
    for entry in names:
        print(f"    {entry}")
sdists = sorted(dist.glob("*.tar.gz"))
assert len(sdists) == 9, [s.name for s in sdists]
for sdist in sdists:
    with tarfile.open(sdist) as tf:
        assert any(m.name.endswith("/LICENSE") for m in tf.getmembers()), f"{sdist.name}: no LICENSE"
print(f"{len(wheels)} wheels and {len(sdists)} sdists ship the Apache-2.0 LICENSE")
PYEOF
