"""Client instructions of a benchmark child process, counted by valgrind's callgrind.

One runner for every deterministic instruction figure (``scenarios/deterministic.py``,
``otel_overhead.py``, ``replica_routing.py``): the child is ``python -m <module> <args>`` and
brackets the operations it measures with ``sys_call_tracing`` toggles, so start-up and set-up are
not counted; the result is the instructions between the toggles divided by the operations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["instructions_per_operation"]


def instructions_per_operation(
    module: str, args: list[str], operations: int, *, env: Mapping[str, str] | None = None
) -> float:
    """Run ``python -m module *args`` under callgrind; return its instructions per operation.

    Args:
        module: The child module (``benchmarks.workloads`` ...), run from the repository root.
        args: Its arguments.
        operations: How many operations the child runs between its collection toggles.
        env: Extra environment of the child (``PYTHONHASHSEED=0`` is always set, so dict and set
            layouts, and hence the counts, repeat from run to run).

    Raises:
        RuntimeError: valgrind is missing, the child failed, or callgrind wrote no totals.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=sys_call_tracing",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                module,
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {}), "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise RuntimeError(f"callgrind run of {module} {' '.join(args[:2])} failed: {tail}")
        found = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError("no totals in callgrind's output")
    return int(found.group(1)) / operations
