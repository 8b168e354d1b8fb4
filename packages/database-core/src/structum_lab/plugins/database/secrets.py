"""Keeping passwords out of every repr, log line, exception and health message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["MASK", "mask_url", "redact", "url_password"]

MASK = "***"

# scheme://user:password@host  — the password may contain anything but '@' is the last one.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@?#\s]*:)(?P<pw>[^\s]*)(?=@)")
# password=secret in a URL query string or a libpq keyword/value DSN.
_KEY_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&;]+)", re.I)


def mask_url(url: object) -> str:
    """Return ``url`` as text with its password replaced by ``***``.

    Works on URLs (``postgresql://user:pw@host/db``, ``?password=pw``) and on libpq keyword DSNs
    (``host=h password=pw``). Anything else is returned unchanged.

    Args:
        url: A URL string, or an object whose ``str()`` is one (e.g. a SQLAlchemy ``URL``).

    Returns:
        The masked text.
    """
    text = (
        url.render_as_string(hide_password=True) if hasattr(url, "render_as_string") else str(url)
    )
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _KEY_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def url_password(url: str) -> str | None:
    """Return the password embedded in ``url``, if any (used to scrub driver messages)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        return unquote(password)
    match = _KEY_PASSWORD.search(url)
    if match:
        return match.group("pw").strip("'")
    return None


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove passwords from free text such as a driver's error message.

    Args:
        text: The text to clean.
        secrets: Known secret values (e.g. the URL's password) to replace wherever they occur.

    Returns:
        ``text`` with URL passwords, ``password=`` values and every known secret masked.
    """
    cleaned = mask_url(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            cleaned = cleaned.replace(secret, MASK)
    return cleaned
