"""Keeping secrets out of structured log lines.

A deliberately small copy of the rules in ``structum_lab.plugins.database.secrets``: this
distribution must not depend on the database packages, and a logger has to mask values whose
meaning it does not know, so it works from field names and from URL syntax alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MASK", "is_secret_key", "mask_text", "mask_value"]

MASK = "***"

# Field names whose values are never printed, whatever they hold.
_SECRET_KEY = re.compile(r"password|passwd|secret|token|api_?key|credential", re.IGNORECASE)

# scheme://user:password@host. The userinfo cannot hold an unencoded '/', '?' or '#', so stopping
# there keeps "http://host:8080/a?mail=x@y" intact, while the greedy run still reaches the last
# '@' of a password that holds an unencoded '@'.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@?#\s]*:)[^\s/?#]*(?=@)")

# password=..., api_token=... in free text: query strings, libpq DSNs, messages that embed them.
_KEY_VALUE = re.compile(
    r"(?P<head>\b[\w.\-]*(?:password|passwd|secret|token|api_?key|credential)[\w.\-]*\s*=\s*)"
    r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,]+)",
    re.IGNORECASE,
)

# Nested containers are masked this deep; deeper ones (or cyclic ones) are masked as text.
_MAX_DEPTH = 4


def is_secret_key(key: str) -> bool:
    """Return whether a field named ``key`` must have its value masked."""
    return _SECRET_KEY.search(key) is not None


def mask_text(text: str) -> str:
    """Return ``text`` with URL passwords and ``password=...``-style values replaced by ``***``."""
    # Both patterns need one of these characters; most log text has neither shape.
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _KEY_VALUE.sub(lambda m: m.group("head") + MASK, text)


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when the object cannot render itself.

    A log call must never raise into the application because some object's ``__str__`` fails.
    """
    try:
        return str(value)
    except Exception:  # any failure of foreign code becomes a placeholder
        return f"<unprintable {type(value).__name__}>"


def mask_value(key: str, value: object, depth: int = 0) -> object:
    """Return ``value`` as it may be logged under the field name ``key``.

    Values under a secret-looking name become ``***`` (``None`` and ``""`` are kept: they reveal
    nothing and say that no secret was set). Strings are masked as text; dicts, lists and tuples
    are masked item by item; any other object whose text shows a secret is replaced by its
    masked text. Objects with nothing to mask are returned unchanged, so handlers still get the
    original types.

    Args:
        key: The field name (for a nested mapping, the nested key).
        value: The value to log.
        depth: Current nesting depth (internal).

    Returns:
        The value, or a masked replacement.
    """
    if is_secret_key(key) and value is not None and value != "":
        return MASK
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return mask_text(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            masked = {k: mask_value(str(k), v, depth + 1) for k, v in value.items()}
            changed = any(masked[k] is not v for k, v in value.items())
            return masked if changed else value
        if isinstance(value, (list, tuple)):
            items = [mask_value(key, v, depth + 1) for v in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items if isinstance(value, list) else tuple(items)
    text = safe_str(value)
    masked_text = mask_text(text)
    return value if masked_text == text else masked_text
