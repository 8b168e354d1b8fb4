"""Keeping passwords out of every repr, log line, exception, exception chain and health message.

The masking rules themselves are Structum Lab's single implementation in
``structum_lab.plugins.observability`` (a stdlib-only distribution this one depends on, so the
structured logger and the database packages mask the same way); this module re-exports them and
adds what only a database layer needs: collecting the secrets of a configuration, and scrubbing
the driver exceptions a translated error carries in its chain.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from structum_lab.plugins.observability import (
    MASK,
    is_secret_key,
    mask_text,
    mask_url,
    safe_str,
    secret_forms,
    url_secrets,
)

__all__ = [
    "MASK",
    "MaskingFilter",
    "is_secret_key",
    "mask_text",
    "mask_url",
    "redact",
    "remember",
    "scrub_exception",
    "scrub_handled",
    "secret_forms",
    "secrets_in",
    "url_secrets",
]

# Chains longer than this are not followed (they are never that long; cycles are cut anyway).
_MAX_CHAIN = 32


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove passwords from free text such as a driver's error message.

    Args:
        text: The text to clean.
        secrets: Known secret values (e.g. the URL's password) to replace wherever they occur,
            in any form (percent-encoded, ``repr``- or JSON-escaped, ...).

    Returns:
        ``text`` with URL passwords, ``password=``-style values and every known secret masked.
    """
    return mask_text(text, secrets)


def secrets_in(value: Any, *, key: str = "", depth: int = 0) -> list[str]:
    """Collect the secrets inside settings: URL credentials and values of secret-named keys.

    Args:
        value: A URL, or a mapping/list of settings (``connect_args``, a whole namespace).
        key: The name ``value`` was found under.
        depth: Nesting depth (internal).

    Returns:
        The secret strings, to hand to :func:`redact`.
    """
    found: list[str] = []
    if depth > 8:
        return found
    if key and is_secret_key(key) and isinstance(value, (str, bytes)) and value:
        found.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            found += secrets_in(v, key=str(k), depth=depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += secrets_in(item, key=key, depth=depth + 1)
    elif isinstance(value, str) and value:
        found += url_secrets(value)
    return found


# Secrets of the database objects alive in this process, for MaskingFilter (log records carry no
# reference to the database they are about). Keyed weakly: a database that is gone stops adding
# its secrets, so the set neither grows for ever (rotating passwords) nor masks words that were
# the password of a long-gone database.
_KNOWN: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()


def remember(owner: object, secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in every record :class:`MaskingFilter` sees while ``owner`` is alive."""
    _KNOWN[owner] = tuple(s for s in secrets if s)


def _known() -> tuple[str, ...]:
    return tuple({secret for secrets in list(_KNOWN.values()) for secret in secrets})


class MaskingFilter(logging.Filter):
    """A logging filter that masks credentials in every record of the logger it is added to.

    The database packages build their messages from masked URLs already; this is the last line of
    defence for driver text passed as a ``%s`` argument (and it is added to ``psycopg.pool``,
    whose connection errors quote the host, which may be a piece of a mistyped URL's password).
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - see the class
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        masked = mask_text(message, _known())
        if masked != message:
            record.msg, record.args = masked, ()
        return True


# -- exception chains -----------------------------------------------------------------------------


def _clean(value: Any, secrets: tuple[str, ...], depth: int = 0) -> Any:
    """``value`` with secrets masked, or None for an object that shows one (or a connection)."""
    if value is None or isinstance(value, (bool, int, float, BaseException)):
        return value
    if isinstance(value, str):
        return mask_text(value, secrets)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        masked = mask_text(text, secrets)
        return value if masked == text else masked.encode("utf-8")
    if depth < 4 and isinstance(value, (list, tuple)):
        items = [_clean(item, secrets, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if depth < 4 and isinstance(value, dict):
        return {
            k: MASK if is_secret_key(str(k)) and v else _clean(v, secrets, depth + 1)
            for k, v in value.items()
        }
    shown = safe_str(repr(value)) if not isinstance(value, type) else ""
    return value if mask_text(shown, secrets) == shown else None


def _scrub_one(exc: BaseException, secrets: tuple[str, ...]) -> None:
    # An exception class that refuses new args keeps its own.
    with contextlib.suppress(Exception):
        exc.args = tuple(_clean(arg, secrets) for arg in exc.args)
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if isinstance(value, BaseException):
            continue  # followed by the caller
        # Connection objects are dropped whatever their repr: they hold the connection
        # parameters (psycopg's ``_pgconn`` shows the password in its repr once it has failed).
        cleaned = None if "conn" in name.lower() and not _plain(value) else _clean(value, secrets)
        if cleaned is not value:
            with contextlib.suppress(Exception):  # a read-only attribute: nothing better to do
                setattr(exc, name, cleaned)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [_clean(note, secrets) for note in notes]
    # The driver's frames hold the connection parameters (conninfo strings, connect() keyword
    # arguments) in their local variables, which error trackers serialise: drop them.
    exc.__traceback__ = None


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, bytes))


def scrub_exception(exc: BaseException | None, secrets: Iterable[str | None] = ()) -> None:
    """Make the exceptions chained to a translated error safe to show, log and serialise.

    Structum keeps the driver's exception as ``__cause__`` (and Python keeps the one being
    handled as ``__context__``). Before an error is raised, every exception of its chain that is
    not a :class:`~structum_lab.plugins.database.DatabaseError` (those are built masked) is
    scrubbed **in place**: text in ``args``, attributes and notes is masked, attributes holding
    a connection or an object whose ``repr`` shows a secret are set to None, and the traceback
    (whose frames' local variables hold the connection parameters) is dropped. The type, the
    masked message and plain attributes such as ``sqlstate`` stay.

    Args:
        exc: The first exception of the chain (the driver's error), or None.
        secrets: Known secrets to mask wherever they appear.
    """
    from .errors import DatabaseError  # noqa: PLC0415 - errors imports nothing from here

    known = tuple(s for s in secrets if s)
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if not isinstance(current, DatabaseError):
            # Scrubbing must never replace the error being reported.
            with contextlib.suppress(Exception):
                _scrub_one(current, known)
        pending += [current.__cause__, current.__context__]
        pending += [
            v for v in getattr(current, "__dict__", {}).values() if isinstance(v, BaseException)
        ]


def scrub_handled(exc: BaseException | None, secrets: Iterable[str | None] = ()) -> None:
    """:func:`scrub_exception` on ``exc`` and on the exception being handled right now.

    An error raised inside an ``except`` block gets the handled exception as its
    ``__context__``; with SQLAlchemy that is the wrapper around the driver's error, whose
    message repeats the driver's text.
    """
    known = tuple(s for s in secrets if s)
    scrub_exception(exc, known)
    handled = sys.exc_info()[1]
    if handled is not None and handled is not exc:
        scrub_exception(handled, known)
