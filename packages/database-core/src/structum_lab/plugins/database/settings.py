"""Reading a database's settings from the configuration provider and checking them.

``from_config(namespace)`` on every backend goes through :func:`load_settings`: it reads the
namespace, merges ``options`` (engine/pool options), checks each value against the backend's
constructor annotations, and fails with a :class:`ConfigurationError` naming the namespace, the key
and where it looked.
"""

from __future__ import annotations

import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union

from structum_lab.config import ConfigError, ConfigProvider, get_config_provider

from .errors import ConfigurationError
from .health import HealthThresholds
from .secrets import is_secret_key, mask_text

__all__ = ["UPPER_BOUNDS", "check_bounds", "coerce_value", "load_settings", "read_namespace"]

_COUNT = 10_000  # connections: far above any server's max_connections
_SECONDS = 30 * 86_400.0  # 30 days

#: Largest value of each numeric setting (backends check the lower bounds, which differ).
UPPER_BOUNDS: dict[str, float] = {
    "pool_size": _COUNT,
    "max_overflow": _COUNT,
    "min_size": _COUNT,
    "max_size": _COUNT,
    "max_waiting": 1_000_000,
    "prepare_threshold": 1_000_000,
    "timeout": _SECONDS,
    "pool_timeout": _SECONDS,
    "health_timeout": _SECONDS,
    "statement_timeout": _SECONDS,
    "connect_timeout": _SECONDS,
    "transaction_timeout": _SECONDS,
    "max_lifetime": 365 * 86_400.0,
    "pool_recycle": 365 * 86_400.0,
    "max_idle": 365 * 86_400.0,
    "check_idle_seconds": _SECONDS,
    "pre_ping_idle_seconds": _SECONDS,
    "leak_detection_threshold": _SECONDS,
    "slow_transaction_threshold": _SECONDS,
    "max_replica_lag": _SECONDS,
}
# Settings whose value is a connection string or a table that may hold one.
_SECRET_HOLDERS = frozenset({"url", "dsn", "conninfo", "connect_args", "options", "replicas"})

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _discover_provider() -> ConfigProvider:
    try:
        from structum_lab.plugins.dynaconf import DynaconfConfigProvider  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            "no configuration provider is registered and structum-dynaconf is not installed; "
            "call structum_lab.config.set_config_provider(...) or run: "
            'pip install "structum-database"'
        ) from exc
    try:
        provider: ConfigProvider = DynaconfConfigProvider(root_path=os.getcwd()).auto_discover()
    except ConfigurationError:
        raise
    except ConfigError as exc:
        raise ConfigurationError(str(exc), source=exc.source, line=exc.line) from exc
    return provider


def read_namespace(namespace: str) -> tuple[dict[str, Any], list[str]]:
    """Return the values of ``namespace`` and the places the provider looked at.

    With no provider registered, ``DynaconfConfigProvider(root_path=cwd)`` is discovered.

    Raises:
        ConfigurationError: The configuration cannot be read.
    """
    provider = get_config_provider() or _discover_provider()
    try:
        values = provider.get(namespace, {}) or {}
        sources = provider.sources(namespace)
    except ConfigurationError:
        raise
    except ConfigError as exc:
        raise ConfigurationError(
            str(exc), namespace=namespace, source=exc.source, line=exc.line
        ) from exc
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            f"configuration namespace {namespace!r} must be a table of keys, "
            f"got {type(values).__name__}",
            namespace=namespace,
        )
    return {str(k).lower(): v for k, v in values.items()}, list(sources)


def check_bounds(owner: str, name: str, value: Any) -> None:
    """Refuse a number that is not finite or above the setting's :data:`UPPER_BOUNDS` entry.

    Args:
        owner: Who is checking (``"PostgresDatabase"``, ``"database"``), for the message.
        name: The setting.
        value: Its value; anything but an int or float is left to the type checks.

    Raises:
        ConfigurationError: ``nan``, ``inf``, or a value above the bound.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(
            f"{owner}: {name} must be a finite number, got {value!r}", key=name
        )
    limit = UPPER_BOUNDS.get(name)
    if limit is not None and value > limit:
        raise ConfigurationError(
            f"{owner}: {name} must be at most {limit:.0f}, got {value!r}", key=name
        )


def shown_value(key: str, value: Any) -> str:
    """How a rejected value is quoted in an error: never when its key can hold a secret."""
    leaf = key.rsplit(".", 1)[-1].lower()
    if is_secret_key(key) or leaf in _SECRET_HOLDERS or isinstance(value, (Mapping, list, tuple)):
        return f"a value of type {type(value).__name__} (not shown: it may hold a secret)"
    if isinstance(value, (str, bytes)):
        shown = repr(value) if len(value) <= 80 else f"{value[:77]!r}..."
        return mask_text(shown)
    return mask_text(repr(value))


def _describe(sources: list[str]) -> str:
    return "; ".join(sources) if sources else "no configuration sources"


def coerce_value(value: Any, annotation: Any) -> Any:
    """Check ``value`` against a constructor annotation, converting strings where that is safe.

    Raises:
        TypeError: The value does not fit; the message says what was expected.
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg)
            except TypeError as exc:
                errors.append(str(exc))
        raise TypeError(" or ".join(errors))
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value in allowed:
            return value
        raise TypeError(f"one of {', '.join(repr(a) for a in allowed)}")
    target = origin or annotation
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise TypeError("a boolean (true/false)")
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise TypeError("an integer")
    if target is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise TypeError("a number")
    if target is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if (isinstance(target, type) and issubclass(target, Mapping)) or target in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError("a table of keys")
    if target is HealthThresholds:
        if isinstance(value, HealthThresholds):
            return value
        if isinstance(value, Mapping):
            return HealthThresholds.from_mapping(value)  # ConfigurationError names the key
        raise TypeError("a table with degraded_latency_ms and degraded_pool_usage")
    return value


def load_settings(
    factory: Callable[..., Any],
    namespace: str,
    *,
    aliases: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read ``namespace`` and turn it into keyword arguments for ``factory``.

    Keys under ``options`` are merged in: a key that names a constructor parameter sets it, any
    other goes through the constructor's ``**options`` (engine/pool options). Unknown keys fail.
    ``overrides`` (``from_config(namespace, **overrides)``) come last and win over every file and
    the environment; they are checked like configuration values, and a key that is not a
    constructor parameter goes to ``**options`` like a key under ``options``.

    Args:
        factory: The backend class (its ``__init__`` annotations drive the checks).
        namespace: The configuration namespace, e.g. ``database`` or ``replica_db``.
        aliases: Keys of other backends this backend understands under its own name
            (``pool_timeout`` → ``timeout``).
        overrides: Values the application already has (``url=settings.database_url``...).

    Raises:
        ConfigurationError: ``url`` is missing, a value has the wrong type, or a key is unknown.
    """
    values, sources = read_namespace(namespace)
    where = _describe(sources)
    overrides = dict(overrides or {})
    override_options = overrides.pop("options", None) or {}
    if not isinstance(override_options, Mapping):
        raise ConfigurationError(
            f"from_config({namespace!r}, options=...) must be a mapping of engine options, "
            f"got {type(override_options).__name__}",
            namespace=namespace,
            key="options",
        )
    if not values.get("url") and not overrides.get("url"):
        raise ConfigurationError(
            f"configuration namespace {namespace!r} has no 'url'; looked in: {where}. "
            f"Set it in config/app/{namespace}.toml, in config/.secrets.toml under [{namespace}], "
            f"or with the environment variable STRUCTUM_{namespace.upper()}__URL "
            "(or pass it: from_config(namespace, url=...))",
            namespace=namespace,
            key="url",
        )
    init = factory.__init__
    signature = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # pragma: no cover - unresolvable annotations: check nothing
        hints = {}
    params = {
        name: p
        for name, p in signature.parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    accepts_extra = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    alias_map = {k.lower(): v for k, v in (aliases or {}).items()}

    options = values.pop("options", None) or {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"{namespace}.options must be a table of keys; looked in: {where}",
            namespace=namespace,
            key="options",
        )
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    merged = [(k, v, "", where) for k, v in values.items()]
    merged += [(str(k).lower(), v, "options.", where) for k, v in options.items()]
    # Last, so that they win: what the application passes to from_config().
    passed = f"the arguments of {factory.__name__}.from_config()"
    merged += [(str(k), v, "", passed) for k, v in overrides.items()]
    merged += [(str(k), v, "options.", passed) for k, v in override_options.items()]
    for key, value, prefix, where in merged:
        name = alias_map.get(key, key)
        if name in params:
            try:
                kwargs[name] = coerce_value(value, hints.get(name, Any))
                check_bounds(namespace, key, kwargs[name])
            except TypeError as exc:
                raise ConfigurationError(
                    f"{namespace}.{prefix}{key} must be {exc}, got {shown_value(name, value)}; "
                    f"looked in: {where}",
                    namespace=namespace,
                    key=f"{prefix}{key}",
                ) from None
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"{_qualified(exc, namespace, prefix, key)}; looked in: {where}",
                    namespace=namespace,
                    key=f"{prefix}{key}",
                ) from None
        elif accepts_extra and (prefix or where == passed):
            _check_option(namespace, key, value, where)
            extra[key] = value
        else:
            known = ", ".join(sorted(params))
            hint = " (engine options go under [<env>.options])" if accepts_extra else ""
            raise ConfigurationError(
                f"{namespace}.{prefix}{key} is not a setting of {factory.__name__}{hint}; "
                f"known settings: {known}; looked in: {where}",
                namespace=namespace,
                key=f"{prefix}{key}",
            )
    kwargs.update(extra)
    return kwargs


def _qualified(exc: ConfigurationError, namespace: str, prefix: str, key: str) -> str:
    """``exc``'s message about ``key`` as ``namespace.[options.]key ...``."""
    text = str(exc)
    if text.startswith(f"{namespace}: "):
        text = text[len(namespace) + 2 :]
    text = text.removeprefix(prefix)
    if text.startswith(key):
        return f"{namespace}.{prefix}{text}"
    return f"{namespace}.{prefix}{key}: {text}"


# Engine/pool options handed to a backend's **options, checked here because a wrong type would
# only fail later, deep inside the driver, with a message that does not name the setting.
_OPTION_TYPES: dict[str, tuple[type[Any] | tuple[type[Any], ...], str]] = {
    "connect_args": (Mapping, "a table of keys (connect_args = { connect_timeout = 10 })"),
    "execution_options": (Mapping, "a table of keys"),
    "pool_use_lifo": (bool, "a boolean (true/false)"),
    "isolation_level": (str, "a string such as 'READ COMMITTED'"),
}


def _check_option(namespace: str, key: str, value: Any, where: str) -> None:
    try:
        check_bounds(namespace, key, value)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{_qualified(exc, namespace, 'options.', key)}; looked in: {where}",
            namespace=namespace,
            key=f"options.{key}",
        ) from None
    expected = _OPTION_TYPES.get(key)
    if expected is not None and not isinstance(value, expected[0]):
        raise ConfigurationError(
            f"{namespace}.options.{key} must be {expected[1]}, got "
            f"{shown_value(key, value)}; looked in: {where}",
            namespace=namespace,
            key=f"options.{key}",
        )
