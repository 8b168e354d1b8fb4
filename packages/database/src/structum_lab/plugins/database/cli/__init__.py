"""``structum-db``: check, inspect and try a Structum database from the command line.

Commands::

    structum-db health [--json]        exit 0 healthy, 1 degraded, 2 unhealthy
    structum-db info [--json]          resolved settings (secrets masked), backend, pool
    structum-db exec "SQL" [--param name=value ...] [--json]
    structum-db demo                   the Quick Start end to end (SQLite if nothing configured)

Common options: ``--namespace`` (default ``database``), ``--url`` (use this URL, ignore the
configuration), ``--backend {auto,sqlalchemy,postgres}``, ``--root`` (the folder holding
``config/``; default the current directory). Backends are imported only when a command needs one,
so ``structum-db --help`` works with none installed.
"""

from __future__ import annotations

from ._app import build_parser, main
from ._version import __version__

__all__ = ["__version__", "build_parser", "main"]
