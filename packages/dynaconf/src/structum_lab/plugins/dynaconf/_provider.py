"""`DynaconfConfigProvider`: namespaces from TOML files, secrets and environment variables."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing_extensions import Self

from structum_lab.config import ConfigError, DictConfigProvider

from ._settings import env_sections, load_sections, lower_keys, new_settings, parse_env_value
from ._toml import find_key_line, read_toml

__all__ = ["DynaconfConfigProvider"]

logger = logging.getLogger("structum_lab.plugins.dynaconf")

_MISSING: Any = object()
_DEFAULT_ENV = "development"
_APP_DIR = Path("config", "app")
_SECRETS_FILE = Path("config", ".secrets.toml")


@dataclass(frozen=True)
class _EnvVar:
    name: str
    keys: tuple[str, ...]
    raw: str = field(repr=False)  # may be a secret


@dataclass(frozen=True)
class _Snapshot:
    """Everything one `auto_discover()` read; replaced whole, never mutated."""

    env: str
    env_names: tuple[str, ...]  # the comma-separated parts of `env`
    sections: tuple[str, ...]  # the tables dynaconf applies, lowest precedence first
    app_files: dict[str, tuple[Path, dict[str, Any]]]  # namespace -> (file, tables)
    secrets: dict[str, Any] | None  # None: no secrets file
    env_vars: dict[str, list[_EnvVar]]  # namespace -> its variables
    values: DictConfigProvider = field(repr=False)


class DynaconfConfigProvider:
    """Configuration namespaces read with Dynaconf from a project's ``config/`` folder.

    Each ``config/app/<namespace>.toml`` holds ``[default]``, ``[production]``, … tables
    (and nested ones such as ``[production.options]``); ``config/.secrets.toml`` holds a
    ``[<namespace>]`` table; variables ``<PREFIX>_<NAMESPACE>__<KEY>`` (nested keys
    joined by ``__``) override both. Precedence, lowest first: ``[default]`` <
    ``[<env>]`` < secrets < environment variables; tables merge key by key.

    Args:
        root_path: The project folder that holds ``config/``.
        env: The environment (``production``, …). Default: the ``<PREFIX>_ENV``
            variable, else ``ENV_FOR_DYNACONF``, else ``development``.
        envvar_prefix: The prefix of the variables read.
        environ: The variables to read. Default: ``os.environ`` as it is when
            `auto_discover()` runs.

    Example:
        >>> provider = DynaconfConfigProvider(root_path=".")
        >>> provider.auto_discover()  # doctest: +SKIP
        >>> provider.get("database.url")  # doctest: +SKIP
    """

    __module__ = "structum_lab.plugins.dynaconf"

    def __init__(
        self,
        root_path: str | os.PathLike[str] = ".",
        *,
        env: str | None = None,
        envvar_prefix: str = "STRUCTUM",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._root_path = Path(root_path)
        self._env = env.strip().lower() if env and env.strip() else None
        self._envvar_prefix = envvar_prefix
        self._environ = environ
        self._snapshot: _Snapshot | None = None

    def __repr__(self) -> str:
        # Never values: they hold passwords.
        return f"{type(self).__name__}(root_path={str(self._root_path)!r}, env={self.env!r})"

    @property
    def root_path(self) -> Path:
        """The project folder that holds ``config/``."""
        return self._root_path

    @property
    def env(self) -> str | None:
        """The environment in use (known once discovered), lower case."""
        return self._snapshot.env if self._snapshot else self._env

    def auto_discover(self) -> Self:
        """Read every file and variable now (again, if called again).

        Reading also happens on first use; calling this at startup makes a broken file
        fail there.

        Returns:
            The provider itself.

        Raises:
            ConfigError: A file is not valid TOML, has keys outside its tables, or
                holds a value dynaconf cannot resolve.
        """
        environ = dict(os.environ if self._environ is None else self._environ)
        env = self._env or _env_from(environ, self._envvar_prefix)
        env_names = tuple(part.strip() for part in env.split(",") if part.strip())

        app_dir = self._root_path / _APP_DIR
        app_files: dict[str, tuple[Path, dict[str, Any]]] = {}
        if app_dir.is_dir():
            for path in sorted(app_dir.glob("*.toml")):
                data = read_toml(path)
                _check_all_tables(path, data, what="an environment table", example="[default]")
                app_files[path.stem.lower()] = (path, data)

        secrets_path = self._root_path / _SECRETS_FILE
        secrets: dict[str, Any] | None = None
        if secrets_path.is_file():
            secrets = dict(lower_keys(read_toml(secrets_path)))
            _check_all_tables(secrets_path, secrets, what="a namespace table", example="[database]")

        env_vars = _namespace_vars(environ, self._envvar_prefix)
        _check_env_sections(
            env_names,
            self._env_origin(environ),
            app_files,
            secrets_path if secrets is not None else None,
            secrets or {},
        )

        namespaces = set(app_files) | set(env_vars)
        # A secrets table named after the current environment holds [<env>.<namespace>]
        # tables; it is not a namespace itself.
        namespaces |= {
            name
            for name, table in (secrets or {}).items()
            if isinstance(table, dict) and name not in env_names
        }

        values: dict[str, Any] = {}
        for namespace in sorted(namespaces):
            values[namespace] = self._resolve(
                namespace,
                env=env,
                env_names=env_names,
                app_file=app_files.get(namespace),
                secrets_path=secrets_path,
                secrets=secrets,
                env_vars=env_vars.get(namespace, []),
            )
        self._snapshot = _Snapshot(
            env=env,
            env_names=env_names,
            sections=tuple(env_sections(new_settings(env=env, root_path="."), env)),
            app_files=app_files,
            secrets=secrets,
            env_vars=env_vars,
            values=DictConfigProvider(values),
        )
        logger.debug(
            "configuration discovered under %s for env %r: namespaces %s",
            self._root_path,
            env,
            sorted(values),
        )
        return self

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Return a copy of the value at a dotted key.

        Args:
            key: A namespace (``"database"``, returns a dict) or a dotted path inside
                one (``"database.options.pool_pre_ping"``); case-insensitive.
            default: Returned when the key is missing.

        Returns:
            Plain data: dicts with lower-case keys, lists and scalars.

        Raises:
            KeyError: The key is missing and no default was given.
            ConfigError: The first, implicit discovery failed.
        """
        values = self._discovered().values
        if default is _MISSING:
            return values.get(key)
        return values.get(key, default)

    def has(self, key: str) -> bool:
        """Return whether a dotted key (or namespace) is present."""
        return self._discovered().values.has(key)

    def sources(self, namespace: str) -> list[str]:
        """Describe where the namespace is read from, for error messages.

        Example: ``["config/app/database.toml [default], [production]",
        "config/.secrets.toml [database]", "env STRUCTUM_DATABASE__*"]``.
        """
        snapshot = self._discovered()
        namespace = namespace.lower()
        found = [self._app_source(snapshot, namespace), self._secrets_source(snapshot, namespace)]
        entry = f"env {self._envvar_prefix}_{namespace.upper()}__*"
        if names := sorted(var.name for var in snapshot.env_vars.get(namespace, [])):
            entry += f" (set: {', '.join(names)})"
        found.append(entry)
        return found

    def _app_source(self, snapshot: _Snapshot, namespace: str) -> str:
        if namespace not in snapshot.app_files:
            return f"{self._root_path / _APP_DIR / f'{namespace}.toml'} (not found)"
        path, data = snapshot.app_files[namespace]
        tables = {name.lower() for name, value in data.items() if isinstance(value, dict)}
        present = [f"[{name}]" for name in snapshot.sections if name in tables]
        missing = [f"[{name}]" for name in snapshot.env_names if name not in tables]
        entry = f"{path} {', '.join(present)}" if present else str(path)
        if missing:
            entry += f" (no {' or '.join(missing)} table)"
        return entry

    def _secrets_source(self, snapshot: _Snapshot, namespace: str) -> str:
        path = self._root_path / _SECRETS_FILE
        if snapshot.secrets is None:
            return f"{path} (not found)"
        present = [
            f"[{name}]"
            for name in _secret_table_names(namespace, snapshot.env_names)
            if _secret_table(snapshot.secrets, name) is not None
        ]
        return f"{path} {', '.join(present)}" if present else f"{path} (no [{namespace}] table)"

    def _env_origin(self, environ: Mapping[str, str]) -> str | None:
        """Where the environment name came from; None for the built-in default."""
        if self._env:
            return "the env argument"
        for name in (f"{self._envvar_prefix}_ENV", "ENV_FOR_DYNACONF"):
            if environ.get(name, "").strip():
                return name
        return None

    def _discovered(self) -> _Snapshot:
        if self._snapshot is None:
            self.auto_discover()
        assert self._snapshot is not None
        return self._snapshot

    def _resolve(
        self,
        namespace: str,
        *,
        env: str,
        env_names: tuple[str, ...],
        app_file: tuple[Path, dict[str, Any]] | None,
        secrets_path: Path,
        secrets: dict[str, Any] | None,
        env_vars: list[_EnvVar],
    ) -> dict[str, Any]:
        settings = new_settings(env=env, root_path=str(self._root_path))

        if app_file is not None:
            path, data = app_file
            with _applying(namespace, str(path)):
                load_sections(settings, env=env, source=str(path), data=data)

        for name in _secret_table_names(namespace, env_names):
            table = _secret_table(secrets or {}, name)
            if table is not None:
                with _applying(namespace, f"{secrets_path} [{name}]"):
                    settings.update(
                        lower_keys(table), loader_identifier="structum_secrets", merge=True
                    )

        # Shallow keys first, so STRUCTUM_DB__OPTIONS__X wins over STRUCTUM_DB__OPTIONS.
        for var in sorted(env_vars, key=lambda item: (len(item.keys), item.name)):
            with _applying(namespace, f"environment variable {var.name}"):
                value = parse_env_value(settings, var.raw)
                # A variable replaces the value it names; dotted keys merge their parents.
                settings.set(
                    ".".join(var.keys),
                    value,
                    loader_identifier="structum_env",
                    merge=False,
                    tomlfy=False,
                )

        with _applying(namespace, None):
            resolved: dict[str, Any] = lower_keys(settings.to_dict())
        return resolved


@contextmanager
def _applying(namespace: str, source: str | None) -> Iterator[None]:
    """Turn a failure while applying `source` (None: resolving tokens) into a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        # The exception text may quote the value (a password): name its type only.
        action = f"cannot apply {source}" if source else "cannot resolve its @ tokens"
        message = (
            f"namespace {namespace!r}: {action} ({type(exc).__name__}; see the chained exception)"
        )
        raise ConfigError(message, source=source) from exc


def _check_env_sections(
    env_names: tuple[str, ...],
    origin: str | None,
    app_files: dict[str, tuple[Path, dict[str, Any]]],
    secrets_path: Path | None,
    secrets: dict[str, Any],
) -> None:
    """Refuse an environment named explicitly that no file has a section for.

    A mistyped ``STRUCTUM_ENV=prodution`` would otherwise run with ``[default]`` alone: the
    development settings, in production. The built-in default (``development``) needs no
    section, and with no configuration file at all there is nothing to compare against.
    """
    if origin is None or (not app_files and secrets_path is None):
        return
    found: dict[str, list[str]] = {}
    for path, data in app_files.values():
        for name, value in data.items():
            if isinstance(value, dict) and not name.lower().startswith("dynaconf_"):
                found.setdefault(name.lower(), []).append(str(path))
    # [<env>.<namespace>] tables of the secrets file count as sections of <env>.
    scoped = {name.lower() for name, value in secrets.items() if isinstance(value, dict)}
    missing = [
        name
        for name in env_names
        if name not in found and name not in scoped and name != _DEFAULT_ENV
    ]
    if not missing:
        return
    shown = ", ".join(f"[{name}]" for name in sorted(found)) or "none"
    files = ", ".join(
        sorted(
            {str(path) for path, _ in app_files.values()}
            | ({str(secrets_path)} if secrets_path is not None else set())
        )
    )
    raise ConfigError(
        f"the environment {missing[0]!r} (from {origin}) has no section in any configuration "
        f"file; sections found: {shown} (in {files}). Check the spelling, or add a "
        f"[{missing[0]}] table (it may be empty) to config/app/<namespace>.toml",
        source=origin,
    )


def _env_from(environ: Mapping[str, str], prefix: str) -> str:
    for name in (f"{prefix}_ENV", "ENV_FOR_DYNACONF"):
        value = environ.get(name, "").strip()
        if value:
            return value.lower()
    return _DEFAULT_ENV


def _namespace_vars(environ: Mapping[str, str], prefix: str) -> dict[str, list[_EnvVar]]:
    """Group ``<PREFIX>_<NAMESPACE>__<KEY>[__<KEY>...]`` variables by namespace."""
    start = f"{prefix}_"
    found: dict[str, list[_EnvVar]] = {}
    for name, raw in environ.items():
        if not name.startswith(start) or "__" not in name[len(start) :]:
            continue  # e.g. STRUCTUM_ENV: a setting, not a namespace
        namespace, *keys = name[len(start) :].lower().split("__")
        if not namespace or not keys or not all(keys):
            logger.debug("ignoring environment variable %s: empty name part", name)
            continue
        found.setdefault(namespace, []).append(_EnvVar(name, tuple(keys), raw))
    return found


def _secret_table_names(namespace: str, env_names: tuple[str, ...]) -> list[str]:
    """``[<namespace>]`` then ``[<env>.<namespace>]``, lowest precedence first."""
    return [namespace, *(f"{env}.{namespace}" for env in env_names)]


def _secret_table(secrets: dict[str, Any], dotted_name: str) -> dict[str, Any] | None:
    node: Any = secrets
    for part in dotted_name.split("."):
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return None
        node = node[part]
    result: dict[str, Any] = node
    return result


def _check_all_tables(path: Path, data: dict[str, Any], *, what: str, example: str) -> None:
    """Fail on top-level keys: dynaconf would silently ignore them."""
    for key, value in data.items():
        if isinstance(value, dict) or key.lower().startswith("dynaconf_"):
            continue
        line = find_key_line(path, key)
        where = f"{path}, line {line}" if line else str(path)
        message = f"{where}: {key!r} is outside {what}; put it under a table such as {example}"
        raise ConfigError(message, source=str(path), line=line)
