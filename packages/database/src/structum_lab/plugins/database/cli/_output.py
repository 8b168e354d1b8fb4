"""Everything the command prints goes through here: masking, tables and JSON."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from structum_lab.plugins.database.secrets import MASK, mask_url, redact, url_password

__all__ = ["Printer", "format_table", "is_secret_key", "mask_settings", "to_json"]

# A setting whose name contains one of these is shown as *** whatever its value.
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "api_key", "apikey")


def is_secret_key(key: str) -> bool:
    """Return whether a setting named ``key`` holds a secret (``password``, ``*_token``...)."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def mask_settings(value: Any, *, key: str = "") -> Any:
    """Return a JSON-ready copy of ``value`` with secrets masked.

    Keys containing ``password``/``secret``/``token`` are replaced by ``***``; every string runs
    through :func:`mask_url` (URLs and ``password=`` DSN fragments); other objects are shown by
    their ``repr`` so that a non-JSON value (a ``HealthThresholds``) stays readable.
    """
    if key and is_secret_key(key):
        return MASK if value not in (None, "") else value
    if isinstance(value, Mapping):
        return {str(k): mask_settings(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_settings(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return mask_url(value)
    return mask_url(repr(value))


def secrets_in(value: Any, *, key: str = "") -> list[str]:
    """Collect the secret strings inside settings: URL passwords and secret-named values."""
    found: list[str] = []
    if key and is_secret_key(key) and isinstance(value, str) and value:
        found.append(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            found += secrets_in(v, key=str(k))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += secrets_in(item)
    elif isinstance(value, str) and (password := url_password(value)):
        found.append(password)
    return found


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        # A string keeps every digit; a float would round money.
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def to_json(value: Any) -> str:
    """Serialise command output; datetimes, decimals, UUIDs and bytes become strings."""
    return json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    text = str(value)
    # One row per line: escape what would break the alignment.
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Render rows as an aligned text table (psql style), numbers right-aligned.

    Args:
        rows: The rows, each a mapping of column name to value.
        columns: Column order; default: the keys of the rows in first-seen order.

    Returns:
        Header, separator and one line per row, without a trailing newline.
    """
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    if not columns:
        return ""
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)]
    # Right-align a column of numbers (NULLs allowed), as psql does; an all-NULL column is text.
    numeric = [
        any(_is_number(row.get(col)) for row in rows)
        and all(_is_number(row.get(col)) or row.get(col) is None for row in rows)
        for col in columns
    ]
    header = " | ".join(col.center(width) for col, width in zip(columns, widths, strict=True))
    rule = "-+-".join("-" * width for width in widths)
    lines = [header.rstrip(), rule]
    for line in cells:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(line, widths, numeric, strict=True)
        ]
        lines.append(" | ".join(parts).rstrip())
    return "\n".join(lines)


class Printer:
    """Writes to stdout/stderr, masking every known secret on the way out.

    The backends already mask passwords in their messages; this is the last line of defence for
    driver text or settings that slip through (a password set under an unusual key).
    """

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._secrets: list[str] = []

    def add_secrets(self, secrets: Iterable[str | None]) -> None:
        """Remember values that must never be printed."""
        self._secrets += [s for s in secrets if s]

    def clean(self, text: str) -> str:
        """``text`` with URL passwords and every remembered secret masked."""
        return redact(text, self._secrets)

    def out(self, text: str = "") -> None:
        """Print a line on stdout."""
        print(self.clean(text), file=self._stdout or sys.stdout)

    def err(self, text: str) -> None:
        """Print a line on stderr, prefixed with the command name."""
        print(f"structum-db: {self.clean(text)}", file=self._stderr or sys.stderr)
