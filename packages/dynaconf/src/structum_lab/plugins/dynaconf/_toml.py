"""Read a TOML file into a dict, failing with the file and line on bad syntax."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

from structum_lab.config import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["find_key_line", "read_toml"]

logger = logging.getLogger("structum_lab.plugins.dynaconf")

# tomllib before 3.14 puts the position only in the message.
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")
_JSON_STYLE_PAIR = "Expected '=' after a key in a key/value pair"
_MAX_REPAIRS = 100


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file.

    One JSON habit is accepted: ``{ "key": value }`` in an inline table is read as
    ``{ "key" = value }`` (with a logged warning), because the user's own example
    configuration is written that way.

    Raises:
        ConfigError: The file cannot be read, is not UTF-8 or is not valid TOML.
    """
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}", source=source) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"{source}, line {line}: not valid UTF-8 (TOML files must be UTF-8)"
        raise ConfigError(message, source=source, line=line) from exc

    for _ in range(_MAX_REPAIRS + 1):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            reason, line, column, pos = _describe(exc, text)
            if not _is_json_style_pair(reason, text, pos):
                message = f"invalid TOML in {source}, line {line}, column {column}: {reason}"
                raise ConfigError(message, source=source, line=line) from exc
            logger.warning(
                "%s, line %d: read ':' in an inline table as '='; TOML writes { key = value }",
                source,
                line,
            )
            text = f"{text[:pos]}={text[pos + 1 :]}"
    raise ConfigError(f"invalid TOML in {source}: too many errors", source=source)


def find_key_line(path: Path, key: str) -> int | None:
    """Return the first line that assigns `key` at the start of a line, for messages."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", re.IGNORECASE)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for number, line in enumerate(lines, start=1):
        if pattern.match(line):
            return number
    return None


def _describe(exc: Exception, text: str) -> tuple[str, int, int, int]:
    """Return (reason, line, column, offset) of a TOMLDecodeError."""
    lineno = getattr(exc, "lineno", None)
    colno = getattr(exc, "colno", None)
    pos = getattr(exc, "pos", None)
    if isinstance(lineno, int) and isinstance(colno, int) and isinstance(pos, int):
        return str(getattr(exc, "msg", exc)), lineno, colno, pos

    message = str(exc)
    if match := _POSITION.search(message):
        line, column = int(match[1]), int(match[2])
        offset = sum(len(item) + 1 for item in text.split("\n")[: line - 1]) + column - 1
        return message[: match.start()], line, column, offset
    lines = text.split("\n")
    line, column = len(lines), len(lines[-1]) + 1
    return _AT_END.sub("", message), line, column, len(text)


def _is_json_style_pair(reason: str, text: str, pos: int) -> bool:
    if reason != _JSON_STYLE_PAIR or text[pos : pos + 1] != ":":
        return False
    # Inline tables are single-line in TOML 1.0, so the brace is on this line.
    return "{" in text[text.rfind("\n", 0, pos) + 1 : pos]
