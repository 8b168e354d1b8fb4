"""A structured logger on top of :mod:`logging`: an event text plus key/value fields."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from types import TracebackType
from typing import cast

from ._masking import mask_text, mask_value, safe_str

__all__ = ["StructuredLogger", "get_logger", "render_fields"]

# What stdlib accepts for ``exc_info`` (typeshed's private ``_ExcInfoType``).
_ExcInfo = (
    bool
    | BaseException
    | tuple[type[BaseException], BaseException, TracebackType | None]
    | tuple[None, None, None]
    | None
)

# A string value is quoted (repr) when printing it bare would make the line ambiguous.
_NEEDS_QUOTES = re.compile(r"[\s\"'=]")


def _render_value(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if not value or _NEEDS_QUOTES.search(value) else value
    return safe_str(value)


def render_fields(fields: Mapping[str, object]) -> str:
    """Render fields as ``key=value`` pairs separated by spaces, in the given order.

    Strings that are empty or hold spaces, quotes or ``=`` are shown as ``repr()``; other values
    as ``str()``. No masking happens here: pass values already masked.

    Args:
        fields: The fields to render.

    Returns:
        The rendered text, e.g. ``checked_out=2 status=degraded message='Slow response'``.
    """
    return " ".join(f"{key}={_render_value(value)}" for key, value in fields.items())


class StructuredLogger:
    """A :class:`logging.Logger` wrapper whose calls take key/value fields.

    ``logger.info("Database pool status", checked_out=2, available=8)`` logs the text
    ``Database pool status checked_out=2 available=8`` through the wrapped stdlib logger, and
    attaches the fields to the :class:`logging.LogRecord` as ``record.fields`` (a dict), so a JSON
    handler can emit them as data. The stdlib logger's level, handlers, filters and propagation
    apply unchanged.

    Field names are free: ``message=``, ``name=``, ``args=`` and other ``LogRecord`` attribute
    names are ordinary fields (they live in ``record.fields``, never as record attributes). Only
    ``exc_info``, ``stack_info`` and ``stacklevel`` are reserved; they keep their stdlib meaning,
    and file/line/function on the record are those of the code calling this logger.

    Positional ``*args`` keep stdlib's lazy ``%`` formatting of the event text. Values under
    secret-looking names (``password``, ``secret``, ``token``, ``api_key``, ``credential``) and
    passwords inside URLs or ``password=...`` text are replaced by ``***``, in the event text, in
    string and exception arguments, in the rendered fields and in ``record.fields``.

    Create instances with :func:`get_logger`; :meth:`bind` derives one with fields attached to
    every call.
    """

    __slots__ = ("_context", "_logger")

    def __init__(self, logger: logging.Logger, context: Mapping[str, object] | None = None) -> None:
        self._logger = logger
        self._context: dict[str, object] = dict(context) if context else {}

    @property
    def name(self) -> str:
        """The wrapped stdlib logger's name."""
        return self._logger.name

    @property
    def stdlib_logger(self) -> logging.Logger:
        """The wrapped :class:`logging.Logger` (for levels, handlers and filters)."""
        return self._logger

    @property
    def context(self) -> Mapping[str, object]:
        """The fields bound with :meth:`bind` (a copy)."""
        return dict(self._context)

    def __repr__(self) -> str:
        # Keys only: bound values may be secrets.
        return f"<StructuredLogger name={self.name!r} bound={sorted(self._context)}>"

    def bind(self, **fields: object) -> StructuredLogger:
        """Return a logger that adds ``fields`` to every call (call fields win on conflict).

        Args:
            **fields: Fields to attach, e.g. ``request_id="a1b2"``.

        Returns:
            A new logger over the same stdlib logger; this one is unchanged.
        """
        return StructuredLogger(self._logger, {**self._context, **fields})

    def isEnabledFor(self, level: int) -> bool:
        """Return whether a call at ``level`` would be emitted, as in :mod:`logging`."""
        return self._logger.isEnabledFor(level)

    def debug(
        self,
        event: str,
        *args: object,
        exc_info: object = None,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` with ``fields`` at DEBUG level (arguments as in :meth:`log`)."""
        self._emit(logging.DEBUG, event, args, fields, exc_info, stack_info, stacklevel)

    def info(
        self,
        event: str,
        *args: object,
        exc_info: object = None,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` with ``fields`` at INFO level (arguments as in :meth:`log`)."""
        self._emit(logging.INFO, event, args, fields, exc_info, stack_info, stacklevel)

    def warning(
        self,
        event: str,
        *args: object,
        exc_info: object = None,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` with ``fields`` at WARNING level (arguments as in :meth:`log`)."""
        self._emit(logging.WARNING, event, args, fields, exc_info, stack_info, stacklevel)

    def error(
        self,
        event: str,
        *args: object,
        exc_info: object = None,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` with ``fields`` at ERROR level (arguments as in :meth:`log`)."""
        self._emit(logging.ERROR, event, args, fields, exc_info, stack_info, stacklevel)

    def critical(
        self,
        event: str,
        *args: object,
        exc_info: object = None,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` with ``fields`` at CRITICAL level (arguments as in :meth:`log`)."""
        self._emit(logging.CRITICAL, event, args, fields, exc_info, stack_info, stacklevel)

    def exception(
        self,
        event: str,
        *args: object,
        exc_info: object = True,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` at ERROR level with the exception being handled (call it in ``except``)."""
        self._emit(logging.ERROR, event, args, fields, exc_info, stack_info, stacklevel)

    def log(
        self,
        level: int,
        event: str,
        *args: object,
        exc_info: object = None,
        stack_info: object = False,
        stacklevel: object = 1,
        **fields: object,
    ) -> None:
        """Log ``event`` with ``fields`` at ``level``.

        Args:
            level: A :mod:`logging` level such as ``logging.INFO``.
            event: What happened. With ``args`` it is a ``%`` format, applied only if the record
                is emitted (stdlib's lazy formatting).
            *args: Arguments for the ``%`` placeholders in ``event``.
            exc_info: As in :mod:`logging`: ``True`` adds the exception being handled.
            stack_info: As in :mod:`logging`: adds the current stack.
            stacklevel: As in :mod:`logging`: 1 is the code calling this method; raise it in
                your own logging helpers so records point at their callers.
            **fields: Key/value data, rendered after the event and attached as
                ``record.fields``.
        """
        self._emit(level, event, args, fields, exc_info, stack_info, stacklevel)

    def _emit(  # noqa: PLR0917 - private; one call shape shared by every public method
        self,
        level: int,
        event: str,
        args: tuple[object, ...],
        fields: Mapping[str, object],
        exc_info: object,
        stack_info: object,
        stacklevel: object,
    ) -> None:
        # Checked even for disabled levels, so a wrong call fails in development too.
        if not isinstance(stacklevel, int) or isinstance(stacklevel, bool) or stacklevel < 1:
            raise TypeError(f"stacklevel must be an int >= 1, got {stacklevel!r}")
        # Rendering and masking are not free: skip them for disabled levels, as stdlib would.
        if not self._logger.isEnabledFor(level):
            return
        merged = {**self._context, **fields} if self._context else dict(fields)
        masked = {key: mask_value(key, value) for key, value in merged.items()}
        msg = mask_text(event)
        if masked:
            rendered = render_fields(masked)
            if args:
                # The whole text is %-formatted when args are present: escape field values.
                rendered = rendered.replace("%", "%%")
            msg = f"{msg} {rendered}" if msg else rendered
        self._logger.log(
            level,
            msg,
            *_mask_args(args),
            exc_info=_exc_info(exc_info),
            stack_info=bool(stack_info),
            # +2 skips this method and the public one that called it, on every Python >= 3.10:
            # the stdlib counts from the first frame outside the logging module.
            stacklevel=stacklevel + 2,
            extra={"fields": masked},
        )


def _exc_info(value: object) -> _ExcInfo:
    """Narrow ``exc_info`` to what stdlib accepts; any other value counts as true or false."""
    if value is None or isinstance(value, (bool, BaseException)):
        return value
    if isinstance(value, tuple) and len(value) == 3:
        return cast("_ExcInfo", value)
    return bool(value)


def _mask_args(args: tuple[object, ...]) -> tuple[object, ...]:
    """Mask the ``%`` arguments that are text or exceptions (their ``%s`` form is their text)."""
    out: list[object] = []
    for arg in args:
        if isinstance(arg, str):
            arg = mask_text(arg)  # noqa: PLW2901 - replacing the item is the point
        elif isinstance(arg, BaseException):
            text = safe_str(arg)
            masked = mask_text(text)
            if masked != text:
                arg = masked  # noqa: PLW2901
        out.append(arg)
    return tuple(out)


def get_logger(name: str | None = None) -> StructuredLogger:
    """Return a structured logger over ``logging.getLogger(name)``.

    Args:
        name: The stdlib logger name, usually ``__name__``; ``None`` means the root logger.

    Returns:
        A :class:`StructuredLogger`. Configure levels and handlers on the stdlib logger as usual.

    Example:
        >>> logger = get_logger(__name__)
        >>> logger.info("Database pool status", checked_out=2, available=8)
    """
    return StructuredLogger(logging.getLogger(name), None)
