"""Per-connection hooks of every backend: ``configure=`` and callable passwords.

Both run once for each new physical connection, inside the pool's connect step (psycopg_pool's
connection class, SQLAlchemy's ``do_connect``/``connect`` events), so a connection is never handed
out before its setup ran, and a connection whose setup failed is closed instead of pooled. This
module checks the arguments and words the errors; each backend sequences the calls (the async
twins await what the callables return).

It also holds the one resolver of import paths given by configuration (``configure =
"myapp.db:setup"``, ``session_class = "sqlmodel:Session"``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from .errors import ConfigurationError

__all__ = [
    "ConfigureHook",
    "ConnectionHooks",
    "ConnectionSetupError",
    "PasswordSource",
    "import_dotted",
]

#: ``configure=``: called with the new driver connection; may return an awaitable (async twins).
ConfigureHook: TypeAlias = Callable[[Any], Any]
#: ``password=``: the password, or a callable returning it (or an awaitable of it, async twins).
PasswordSource: TypeAlias = str | Callable[[], str | Awaitable[str]]


class ConnectionSetupError(Exception):
    """A new connection's setup (``configure=`` or the password callable) failed.

    Internal: the backends turn it into ``DatabaseUnavailableError`` with this message (masked).
    """


def import_dotted(path: str, *, key: str, example: str) -> Any:
    """Import ``"package.module:name"`` (or ``"package.module.name"``) and return ``name``.

    Args:
        path: The import path, as configuration gives it.
        key: The setting it came from (``configure``, ``session_class``), for the message.
        example: A well-formed path for that setting, shown when ``path`` is malformed.

    Raises:
        ConfigurationError: The path is malformed, the module cannot be imported or has no such
            attribute; the message names the path and what to do.
    """
    text = path.strip()
    if ":" in text:
        module_name, _, attr = text.partition(":")
    else:
        module_name, _, attr = text.rpartition(".")
    if not module_name or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ConfigurationError(
            f"{key} {path!r} is not an import path; write it as 'package.module:name' "
            f"(e.g. {example!r})",
            key=key,
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"{key} {path!r}: cannot import module {module_name!r} ({exc}); install the "
            "package that provides it or fix the path",
            key=key,
        ) from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"{key} {path!r}: module {module_name!r} has no attribute {attr!r}",
                key=key,
            ) from None
    return target


def _describe(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}:{name}" if module else str(name)


class ConnectionHooks:
    """A database's ``configure=`` and password callable, checked once at construction.

    Args:
        configure: A callable taking the new driver connection, or its import path.
        password: The password, or a callable returning it for each new connection.
        owner: The database class name, for messages.
        is_async: The async twins may be given coroutine functions; the sync ones may not.

    Raises:
        ConfigurationError: ``configure`` is not callable (or its path cannot be imported),
            ``password`` is neither a string nor a callable, or a coroutine function was given
            to a sync database. A password is never quoted.
    """

    __slots__ = ("configure", "configure_name", "password", "static_password")

    def __init__(
        self,
        *,
        configure: ConfigureHook | str | None,
        password: PasswordSource | None,
        owner: str,
        is_async: bool,
    ) -> None:
        if isinstance(configure, str):
            configure = import_dotted(configure, key="configure", example="myapp.db:setup")
        if configure is not None and not callable(configure):
            raise ConfigurationError(
                f"{owner}: configure must be a callable taking the new connection, or its import "
                f"path ('myapp.db:setup'), got {type(configure).__name__}",
                key="configure",
            )
        self.configure: ConfigureHook | None = configure
        self.configure_name = _describe(configure) if configure is not None else ""
        self.static_password: str | None = None
        self.password: Callable[[], Any] | None = None
        if isinstance(password, str):
            self.static_password = password
        elif password is not None:
            if not callable(password):
                raise ConfigurationError(
                    f"{owner}: password must be a string or a callable returning one, got a "
                    f"value of type {type(password).__name__} (not shown)",
                    key="password",
                )
            self.password = password
        if not is_async:
            for key, fn in (("configure", self.configure), ("password", self.password)):
                if fn is not None and inspect.iscoroutinefunction(fn):
                    raise ConfigurationError(
                        f"{owner} is synchronous, but {key} {_describe(fn)} is a coroutine "
                        f"function; pass a plain function, or use the Async{owner} twin",
                        key=key,
                    )

    def password_failed(self, exc: BaseException) -> ConnectionSetupError:
        """The error for a password callable that raised."""
        return ConnectionSetupError(
            f"the password callable failed while opening a new connection: "
            f"{type(exc).__name__}: {exc}"
        )

    def setup_failed(self, exc: BaseException) -> ConnectionSetupError:
        """The error for a ``configure`` that raised (the connection has been discarded)."""
        if isinstance(exc, ConnectionSetupError):
            return exc
        return ConnectionSetupError(
            f"the connection setup configure={self.configure_name} failed, the new connection "
            f"was discarded: {type(exc).__name__}: {exc}"
        )

    @staticmethod
    def checked_password(value: Any) -> str:
        """The password callable's result, which must be a string (already awaited if async)."""
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it rather than leak a warning
            raise ConnectionSetupError(
                "the password callable returned an awaitable; a synchronous database needs a "
                "plain function returning the password (or use the async twin)"
            )
        if not isinstance(value, str):
            raise ConnectionSetupError(
                f"the password callable must return a string, got {type(value).__name__}"
            )
        return value

    @staticmethod
    def checked_setup_result(value: Any) -> None:
        """Reject an awaitable returned by ``configure`` on a synchronous database."""
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise ConnectionSetupError(
                "configure returned an awaitable; a synchronous database needs a plain function "
                "(or use the async twin)"
            )
