#!/usr/bin/env python3
"""Run the fault-injection suite and print the README's reliability table from what it measured.

    python3 tools/fault_figures.py                  # run tests-integration/faults, print the table
    python3 tools/fault_figures.py --readme         # ... and write it into README.md
    python3 tools/fault_figures.py --json rows.json # print the table of an earlier run's rows
    python3 tools/fault_figures.py -- -k killed     # extra pytest arguments after ``--``

Each fault test states what it measured with the ``figure`` fixture (tests-integration/faults/
conftest.py); with ``STRUCTUM_FAULT_FIGURES=<file>`` the session writes those rows as JSON. Rows
that say the same thing (fault, what the caller saw, data lost) for several backends become one
row naming them all, with the longest time to recover. In README.md the table sits between
``<!-- fault-table -->`` and ``<!-- /fault-table -->``.

The suite needs the databases of the integration suite (a PostgreSQL from which it makes its own
throwaway cluster, the MariaDB service for the MariaDB cases): see tests-integration/conftest.py.
Without STRUCTUM_TEST_REQUIRE_DB=1 a missing server skips its tests, and their rows are missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- fault-table -->", "<!-- /fault-table -->"
HEADER = (
    "| fault | backend | what the caller saw | time to recover | data lost |\n"
    "|---|---|---|---:|---|"
)


def _python() -> str:
    venv = ROOT / ".venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
    return str(venv) if venv.exists() else sys.executable


def run_suite(pytest_args: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """Run the fault suite with figures on; return pytest's exit code and the rows."""
    with tempfile.TemporaryDirectory(prefix="structum-faults-") as tmp:
        path = Path(tmp) / "figures.json"
        env = dict(os.environ, STRUCTUM_FAULT_FIGURES=str(path))
        cmd = [
            _python(),
            "-m",
            "pytest",
            "tests-integration/faults",
            "-q",
            "-p",
            "no:cacheprovider",
            *pytest_args,
        ]
        status = subprocess.call(cmd, cwd=ROOT, env=env)
        rows = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    return status, rows


def _seconds(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):  # never recovered
        return "never"
    return f"{number:.2f} s" if number >= 0.01 or number == 0 else f"{number * 1000:.1f} ms"


def _lost(row: dict[str, Any]) -> str:
    lost, doubled = row.get("lost"), row.get("doubled")
    if lost is None and doubled is None:
        return "—"
    if not lost and not doubled:
        return "none" if "doubled" in row else "0 lost"
    return f"{lost or 0} lost, {doubled or 0} doubled"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: one line per (fault, what was seen, data lost), grouped by fault."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (str(row.get("fault", row.get("test", "?"))), str(row.get("saw", "")), _lost(row))
        entry = merged.setdefault(key, {"backends": [], "recover": []})
        backend = str(row.get("backend", ""))
        if backend and backend not in entry["backends"]:
            entry["backends"].append(backend)
        entry["recover"].append(row.get("recover_s"))
    # Rows of one fault together, faults in the order the suite first met them.
    first: dict[str, int] = {}
    for fault, _, _ in merged:
        first.setdefault(fault, len(first))
    lines = [HEADER]
    for (fault, saw, lost), entry in sorted(merged.items(), key=lambda item: first[item[0][0]]):
        times = [t for t in entry["recover"] if isinstance(t, (int, float))]
        recover = _seconds(max(times)) if times else _seconds(entry["recover"][0])
        lines.append(
            f"| {_cell(fault)} | {_cell(', '.join(entry['backends']) or '—')} | {_cell(saw)} "
            f"| {recover} | {_cell(lost)} |"
        )
    return "\n".join(lines)


def write_readme(text: str) -> None:
    """Put ``text`` between the table markers of README.md (added at the end if missing)."""
    readme = README.read_text(encoding="utf-8")
    block = f"{START}\n{text}\n{END}"
    if START in readme and END in readme:
        head, _, rest = readme.partition(START)
        _, _, tail = rest.partition(END)
        readme = head + block + tail
    else:
        readme = readme.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(readme, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run (or read) the figures, print the table, write it into README.md with ``--readme``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="print the table of these rows (no run)")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--save", type=Path, help="also save the rows to this JSON file")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    status = 0
    if args.json is not None:
        rows = json.loads(args.json.read_text(encoding="utf-8"))
    else:
        status, rows = run_suite(args.pytest_args)
    if args.save is not None:
        args.save.write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    if not rows:
        print("no figures were recorded (did the fault suite run?)", file=sys.stderr)
        return status or 1
    text = table(rows)
    print(text)
    if args.readme:
        if status:
            print("the fault suite failed: README.md left as it was", file=sys.stderr)
        else:
            write_readme(text)
            print(f"written into {README.relative_to(ROOT)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
