"""Keeping secrets out of everything Structum Lab shows: log lines, reprs, errors, health output.

This is the one masking implementation of Structum Lab. It lives in this stdlib-only
distribution because the logger here needs it and so do the database packages
(``structum-database-core`` depends on this package and re-exports it as
``structum_lab.plugins.database.secrets``); a logging package must not depend on a database one.

Three entry points, from most to least knowledge about the input:

- :func:`mask_url` takes a value known to be a connection string (a URL or a libpq keyword
  string) and masks it structurally. It never needs the string to be valid: a URL that does not
  parse has everything that could be a credential masked.
- :func:`mask_text` takes free text (an error message, a log line) and masks URL passwords,
  ``password=...``-style values and, when given, every known secret in the forms it may take in
  text (percent-encoded, ``repr``-escaped, JSON-escaped, ...).
- :func:`mask_value` masks a value logged or shown under a field name.

When in doubt the rules mask more, never less: a password may hold any character (spaces, a
trailing space, ``%``, ``#``, ``@``, ``/``, ``;``, ``&``, quotes, non-ASCII), so a value runs to the
next thing that is certainly not part of it (a following ``key=``, the ``@`` before the host, the
end of the line), not to the first character that merely looks like a delimiter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "MASK",
    "is_secret_key",
    "mask_text",
    "mask_url",
    "mask_value",
    "safe_str",
    "secret_forms",
    "url_secrets",
]

MASK = "***"

# Names whose values are secrets: password, passwd, passphrase, pwd, sslpassword, secret,
# client_secret, token, access_token, api_key, apikey, credential(s), private_key, authorization.
_WORDS = (
    r"pass(?:word|wd|phrase)|pwd|secret|token|api[_\-]?key|credential|private[_\-]?key"
    r"|authorization"
)
_SECRET_KEY = re.compile(_WORDS, re.IGNORECASE)

# A secret shorter than this is not searched for in free text: it would match ordinary words.
# Such passwords are still masked wherever their structure shows them (URL, key=value).
_MIN_SECRET = 3
# Where URL and keyword-string parsers cut a value.
_PIECES = re.compile(r"[@:/?#&;=,'\"\s]+")

# libpq connection keywords: in a keyword string an unquoted password runs to the next of them.
_LIBPQ_KEYWORDS = (
    "host|hostaddr|port|dbname|user|password|passfile|require_auth|channel_binding"
    "|connect_timeout|client_encoding|options|application_name|fallback_application_name"
    "|keepalives|keepalives_idle|keepalives_interval|keepalives_count|tcp_user_timeout"
    "|replication|gssencmode|sslmode|sslnegotiation|sslcompression|sslcert|sslkey|sslcertmode"
    "|sslpassword|sslrootcert|sslcrl|sslcrldir|sslsni|requirepeer|ssl_min_protocol_version"
    "|ssl_max_protocol_version|min_protocol_version|max_protocol_version|krbsrvname|gsslib"
    "|gssdelegation|service|target_session_attrs|load_balance_hosts|sslkeylogfile"
    "|oauth_issuer|oauth_client_id|oauth_client_secret|oauth_scope"
)
_NEXT_LIBPQ_KEY = re.compile(rf"\s+(?:{_LIBPQ_KEYWORDS})\s*=", re.IGNORECASE)
_DSN_START = re.compile(r"\s*[A-Za-z_][\w.\-]*\s*=")
_DSN_KEY = re.compile(r"([^\s=]+)\s*=\s*")

# scheme: then up to three slashes; also "scheme//" (a forgotten colon).
# At most two slashes: in "sqlite:///x.db" the third one starts the path (an empty authority).
_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*(?P<sep>:/{0,2}|//)")
# host[:port] items of a URL authority (IPv6 in brackets; libpq allows host1:p1,host2:p2).
_HOST_PORT = re.compile(r"(?:\[[^\]/]*\]|[A-Za-z0-9_.\-%~]*)(?::\d*)?\Z")
# What may follow the "@" of a userinfo: hosts (names, IPv4, [IPv6], lists), ports, then a path.
_HOST_ITEM = r"(?:\[[^\]/]*\]|[A-Za-z0-9_.\-%]*)(?::\d*)?"
_HOST_AFTER_AT = re.compile(rf"{_HOST_ITEM}(?:,{_HOST_ITEM})*(?:[/?#]|\Z)")
# ?password=... &sslpassword=... in a URL query string: the value runs to the next "&key=" of a
# known connection parameter (an unencoded password may itself hold "&x=").
_QUERY_KEYS = (
    rf"{_LIBPQ_KEYWORDS}|charset|collation|ssl[\w]*|read_timeout|write_timeout|autocommit"
    r"|local_infile|unix_socket|init_command|program_name|client_flag|timeout|mode|cache|uri"
    r"|check_same_thread|driver|database|username|port|server|trusted_connection"
)
_QUERY_SECRET = re.compile(
    rf"[?&;][\w.\-]*(?:{_WORDS})[\w.\-]*=(?P<value>(?:(?!&(?:{_QUERY_KEYS})=).)*)",
    re.IGNORECASE | re.DOTALL,
)

# Free text: "scheme://" (not preceded by a scheme character).
_TEXT_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://")
_TEXT_USER = re.compile(r"[^\s:/@\[\]'\"<>]*:")
# After "host:" in free text: a port, then the end of the URL or its path.
_PORT_END = re.compile(r"\d*(?:[/?#\s'\"),;>\]]|\Z)")
# Free text: password=..., 'password': '...', "api_token": "..." and the like.
_TEXT_KEY_VALUE = re.compile(
    rf"(?<![\w.\-])(?:(?P<q>['\"])[\w.\-]*(?:{_WORDS})[\w.\-]*(?P=q)\s*[:=]"
    rf"|[\w.\-]*(?:{_WORDS})[\w.\-]*\s*=)[ \t]*",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[bBrRuU]{0,2}(?P<q>['\"])(?:(?!(?P=q))[^\\\n]|\\.)*(?P=q)?")
# Where an unquoted value in free text certainly ends: the next key=, &key=, 'key': or the line.
_VALUE_END = re.compile(r"\s+[\w.\-]+\s*=|&[\w.\-]+=|,\s*['\"][\w.\-]+['\"]\s*:|\n")


def is_secret_key(key: str) -> bool:
    """Return whether a field or option named ``key`` holds a secret (``password``, ``*_token``)."""
    return _SECRET_KEY.search(key) is not None


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when the object cannot render itself.

    Masking must never raise into the caller because some object's ``__str__`` fails.
    """
    try:
        return str(value)
    except Exception:  # any failure of foreign code becomes a placeholder
        return f"<unprintable {type(value).__name__}>"


# -- connection strings ---------------------------------------------------------------------------


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _apply(text: str, spans: list[tuple[int, int]]) -> str:
    out: list[str] = []
    last = 0
    for start, end in _merge(spans):
        out += [text[last:start], MASK]
        last = end
    out.append(text[last:])
    return "".join(out)


def _dsn_spans(text: str) -> list[tuple[int, int]]:
    """Spans of secret values in a libpq keyword string (``host=h password='a b'``)."""
    spans: list[tuple[int, int]] = []
    pos, size = 0, len(text)
    while pos < size:
        while pos < size and text[pos].isspace():
            pos += 1
        match = _DSN_KEY.match(text, pos)
        if match is None:  # not key=value: skip the word (libpq would refuse the string)
            while pos < size and not text[pos].isspace():
                pos += 1
            continue
        start = pos = match.end()
        if pos < size and text[pos] == "'":
            pos += 1
            while pos < size and text[pos] != "'":
                pos += 2 if text[pos] == "\\" else 1
            pos = min(pos + 1, size)
        secret = is_secret_key(match.group(1))
        if secret:
            # Unquoted (or trailing after a quote): libpq ends the value at whitespace, but a
            # pasted password may hold spaces; run to the next libpq keyword to be safe.
            following = _NEXT_LIBPQ_KEY.search(text, pos)
            pos = following.start() if following else size
            spans.append((start, pos))
        else:
            while pos < size and not text[pos].isspace():
                pos += 1
    return spans


def _url_spans(text: str) -> list[tuple[int, int]]:
    """Spans of credentials in a URL, valid or not (``scheme://user:password@host/db?...``)."""
    scheme = _SCHEME.match(text)
    start = scheme.end() if scheme else 0
    rest = text[start:]
    spans = [
        (start + m.start("value"), start + m.end("value")) for m in _QUERY_SECRET.finditer(rest)
    ]
    at = rest.rfind("@")
    separator = scheme.group("sep") if scheme else ""
    authority_form = separator.startswith(":") and separator.count("/") >= 2
    if at >= 0 and (not authority_form or not _HOST_AFTER_AT.match(rest, at + 1)):
        # "postgresql:/app:PW@host", "notascheme:PW@host", "app:pw@host", or a last "@" not
        # followed by a host: nothing says where the password ends, so it runs to the end.
        # After a bare "name:" the name may be the user ("app:pw@host"): mask all of the rest.
        colon = rest.find(":") if separator != ":" else -1
        spans.append((start + colon + 1 if 0 <= colon < at else start, len(text)))
        return spans
    if at >= 0:
        # The userinfo ends at the LAST "@": a password may hold unencoded "@", "/", "#", "?".
        colon = rest.find(":", 0, at)
        if colon >= 0:
            spans.append((start + colon + 1, start + at))
        return spans
    if not authority_form and separator:
        # "notascheme:PW", "postgresql:/app:PW": no host to tell a password from; mask it all.
        spans.append((start, len(text)))
        return spans
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    if all(_HOST_PORT.match(item) for item in rest[:end].split(",")):
        return spans  # host:port, no userinfo
    # Does not parse ("postgresql://app:PW/db" without a host): everything after the first
    # colon may be a password.
    colon = rest.find(":")
    spans.append((start + colon + 1 if colon >= 0 else start, len(text)))
    return spans


def _connection_spans(text: str) -> list[tuple[int, int]]:
    if "://" not in text and _DSN_START.match(text):
        return _dsn_spans(text)
    return _url_spans(text)


def _render(url: object) -> str:
    render = getattr(url, "render_as_string", None)  # a SQLAlchemy URL
    if callable(render):
        try:
            return str(render(hide_password=False))
        except Exception:  # noqa: S110 - a look-alike: fall back to its text below
            pass
    return safe_str(url)


def mask_url(url: object) -> str:
    """Return a connection string with every credential in it replaced by ``***``.

    Works on URLs (``postgresql://user:pw@host/db``, ``?password=pw``), SQLAlchemy ``URL``
    objects, libpq keyword strings (``host=h password='a b'``) and strings that are neither
    (``postgresql:/app:pw@host``, ``notascheme:pw``): whatever could be a credential is masked.

    Args:
        url: A connection string, or an object whose ``str()`` is one.

    Returns:
        The masked text.
    """
    text = _render(url)
    masked = _apply(text, _connection_spans(text))
    # A secret-named value the structure did not explain ("options='-c password=x'").
    return _mask_text_values(masked) if _SECRET_KEY.search(masked) else masked


def url_secrets(url: object) -> tuple[str, ...]:
    """Return the credentials :func:`mask_url` masks in ``url`` (raw and percent-decoded).

    Feed them to :func:`mask_text` to scrub text that quotes them without the URL around them,
    such as a driver's error message.
    """
    text = _render(url)
    found: list[str] = []
    for start, end in _connection_spans(text):
        value = text[start:end]
        found.append(value)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            found.append(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
        found.append(unquote(value))
        # A parser that splits the URL elsewhere (libpq takes the FIRST "@") may show a piece
        # of the password as a host, a port or a database name.
        found += [p for p in _PIECES.split(value) if len(p) >= _MIN_SECRET]
    return tuple(dict.fromkeys(s for s in found if s and s != MASK))


# -- free text ------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def secret_forms(secret: str) -> tuple[str, ...]:
    """The forms in which ``secret`` may show up in text, longest first.

    Raw and stripped, percent-encoded and -decoded, escaped as in a Python ``repr`` (of the
    string or of its UTF-8 bytes), in JSON, in a libpq quoted value, and those escapes applied
    twice (the ``repr`` of a message that holds a ``repr``).
    """
    forms = {secret, secret.strip(), unquote(secret)}
    forms |= {quote(secret, safe=""), quote(secret, safe="!$&'()*+,;=:"), quote_plus(secret)}
    forms.add(secret.replace("\\", "\\\\").replace("'", "\\'"))
    escaped = set()
    for form in list(forms):
        escaped.add(repr(form)[1:-1])
        escaped.add(json.dumps(form)[1:-1])
        escaped.add(json.dumps(form, ensure_ascii=False)[1:-1])
        escaped.add(repr(form.encode("utf-8", "surrogatepass"))[2:-1])
    forms |= escaped
    forms |= {repr(form)[1:-1] for form in escaped}
    return tuple(sorted((f for f in forms if len(f.strip()) >= _MIN_SECRET), key=len, reverse=True))


def _mask_known(text: str, secrets: Iterable[str | None]) -> str:
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret.strip()) >= _MIN_SECRET:
            forms.update(secret_forms(secret))
    # Every occurrence of every form is found in the original text and masked as one union:
    # replacing one secret first could cut another (overlapping) one in two halves.
    spans: list[tuple[int, int]] = []
    for form in forms:
        start = text.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = text.find(form, start + 1)
    return _apply(text, spans) if spans else text


def _mask_text_urls(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for match in _TEXT_URL.finditer(text):
        begin = match.end()
        user = _TEXT_USER.match(text, begin)
        if user is None:
            continue  # no "user:" right after "://": no password here
        pw_start = user.end()
        line_end = text.find("\n", pw_start)
        line_end = len(text) if line_end < 0 else line_end
        at = text.rfind("@", pw_start, line_end)
        if at >= 0:
            candidate = text[pw_start:at]
            # "http://host:8080/a?mail=x@y" is a port and a path, the "@" in the query string;
            # anything else before the last "@" of the line is a password.
            if not (re.match(r"\d{1,5}[/?#]", candidate) and re.search(r"[?#]", candidate)):
                spans.append((pw_start, at))
                continue
        # No "@": a port ("host:5432/db") is fine; anything else could be a password.
        if not _PORT_END.match(text, pw_start) and not text.startswith(MASK, pw_start):
            spans.append((pw_start, line_end))
    return _apply(text, spans) if spans else text


def _mask_text_values(text: str) -> str:
    spans: list[tuple[int, int]] = []
    pos = 0
    while (match := _TEXT_KEY_VALUE.search(text, pos)) is not None:
        start = pos = match.end()
        if text.startswith(MASK, start):
            pos = start + len(MASK)
            continue
        quoted = _QUOTED.match(text, start)
        if quoted is not None:
            pos = quoted.end()
            if quoted.group().strip("'\"bBrRuU") == MASK:
                continue  # already masked ("password": "***" in JSON)
        if quoted is None or (
            pos < len(text) and not text[pos].isspace() and text[pos] not in ",)}]"
        ):
            end = _VALUE_END.search(text, pos)
            pos = end.start() if end else len(text)
        spans.append((start, pos))
    return _apply(text, spans) if spans else text


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every credential it shows replaced by ``***``.

    Masks URL passwords (``scheme://user:***@host``, also when the password holds ``@``, ``/``,
    ``#``, spaces...), values of secret-named keys (``password=...``, ``?sslpassword=...``,
    ``'password': '...'``, ``api_token=...``) and every known secret in ``secrets`` in any of
    its :func:`secret_forms`.

    Args:
        text: Free text: an error message, a log line, a ``repr``.
        secrets: Known secret values (a URL's password, a ``connect_args`` password...).

    Returns:
        The masked text.
    """
    text = _mask_known(text, secrets)
    if "://" in text:
        text = _mask_text_urls(text)
    if _SECRET_KEY.search(text):
        text = _mask_text_values(text)
    return text


# -- field values ---------------------------------------------------------------------------------

# Nested containers are masked this deep; deeper ones (or cyclic ones) are masked as text.
_MAX_DEPTH = 4


def mask_value(key: str, value: object, depth: int = 0) -> object:
    """Return ``value`` as it may be logged or shown under the field name ``key``.

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
