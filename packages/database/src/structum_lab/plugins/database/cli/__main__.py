"""``python -m structum_lab.plugins.database.cli``: the ``structum-db`` command."""

from . import main

raise SystemExit(main())
