"""The error raised for a configuration file or key problem."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration source could not be read or holds an invalid value.

    The message is complete on its own (it names the file and line when known);
    `source` and `line` repeat them for programs that want to point at the spot.

    Attributes:
        source: The file (or other source) at fault, or None when unknown.
        line: The 1-based line number in `source`, or None when unknown.
    """

    __module__ = "structum_lab.config"

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        super().__init__(message)
        self.source = source
        self.line = line
