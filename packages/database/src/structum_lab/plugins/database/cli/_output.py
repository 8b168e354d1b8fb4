"""Everything the command prints goes through here: masking, tables and JSON."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from structum_lab.plugins.database.secrets import (
    MASK,
    is_secret_key,
    mask_text,
    mask_url,
    redact,
    secrets_in,
)

__all__ = [
    "Printer",
    "escape_controls",
    "format_table",
    "is_secret_key",
    "mask_settings",
    "secrets_in",
    "to_json",
]

# Settings whose value is a whole connection string (masked structurally, even when malformed).
_URL_KEYS = frozenset({"url", "dsn", "conninfo", "database_url"})

# Characters a terminal may act on: C0 and C1 controls and DEL, and the Unicode bidirectional
# overrides and isolates that reorder what is shown ("Trojan Source"), and the line/paragraph
# separators that would break one row per line.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    r"""``text`` with every control character shown as an escape (``\x1b``), newlines and tabs kept.

    Whatever comes from the database (values, column names, error messages) is printed through
    this, so a stored ``ESC [ 2 J`` cannot clear or rewrite the user's terminal.
    """
    return _CONTROLS.sub(_escape, text)


def mask_settings(value: Any, *, key: str = "") -> Any:
    """Return a JSON-ready copy of ``value`` with secrets masked.

    Keys naming a secret (``password``, ``*_token``, ``sslpassword``...) are replaced by ``***``;
    ``url``-like keys are masked as connection strings, every other string as free text; other
    objects are shown by their ``repr`` so that a non-JSON value (a ``HealthThresholds``) stays
    readable.
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
        return mask_url(value) if key.lower() in _URL_KEYS else mask_text(value)
    return mask_text(repr(value))


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
    r"""Serialise command output; datetimes, decimals, UUIDs and bytes become strings.

    JSON escapes C0 controls itself; C1 controls, DEL and bidirectional overrides are escaped
    as ``\u`` sequences too, so the output is safe to print on a terminal and still valid JSON.
    """
    text = json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
    # One row per line: escape what would break the alignment, then every other control.
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return escape_controls(text)


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
    titles = [_cell(col) for col in columns]  # column names come from the database too
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(titles)]
    # Right-align a column of numbers (NULLs allowed), as psql does; an all-NULL column is text.
    numeric = [
        any(_is_number(row.get(col)) for row in rows)
        and all(_is_number(row.get(col)) or row.get(col) is None for row in rows)
        for col in columns
    ]
    header = " | ".join(col.center(width) for col, width in zip(titles, widths, strict=True))
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
        """``text`` with credentials and every remembered secret masked, controls escaped."""
        return escape_controls(redact(text, self._secrets))

    def out(self, text: str = "") -> None:
        """Print a line on stdout."""
        print(self.clean(text), file=self._stdout or sys.stdout)

    def err(self, text: str) -> None:
        """Print a line on stderr, prefixed with the command name."""
        print(f"structum-db: {self.clean(text)}", file=self._stderr or sys.stderr)
