"""From command-line options to a database object: configuration, backend choice, construction.

Backends are imported here, lazily, so ``structum-db --help`` needs none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structum_lab.config import (
    ConfigError,
    ConfigProvider,
    get_config_provider,
    set_config_provider,
)

__all__ = [
    "BACKENDS",
    "CliError",
    "Resolved",
    "backend_class",
    "discover_config",
    "open_database",
    "registered",
    "resolve",
]

# --backend choice -> (class name in the facade, extra of the meta package that installs it)
BACKENDS: dict[str, tuple[str, str]] = {
    "sqlalchemy": ("SQLAlchemyDatabase", "sqlalchemy"),
    "postgres": ("PostgresDatabase", "postgres"),
}
_POSTGRES_SCHEMES = ("postgresql", "postgres")


class CliError(Exception):
    """A failure the command reports in one line on stderr, with its exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Resolved:
    """What the options and the configuration resolve to (the URL inside is NOT masked)."""

    namespace: str
    url: str | None = field(repr=False)
    settings: dict[str, Any] = field(repr=False)
    sources: list[str]
    env: str | None = None
    from_option: bool = False
    provider: ConfigProvider | None = field(default=None, repr=False)

    def describe_source(self) -> str:
        """Where the settings came from, for humans."""
        if self.from_option:
            return "--url option (configuration not read)"
        return "; ".join(self.sources) if self.sources else "no configuration sources"


def discover_config(root: str | None) -> ConfigProvider:
    """The configuration to read.

    With no ``--root`` an already registered provider (an application embedding ``main()``) is
    used as it is; otherwise ``DynaconfConfigProvider(root_path=root or cwd)`` is discovered.

    Raises:
        CliError: structum-dynaconf is missing, or a file cannot be read (exit 2).
    """
    previous = get_config_provider()
    if root is None and previous is not None:
        return previous
    try:
        from structum_lab.plugins.dynaconf import DynaconfConfigProvider  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(
            "reading config/ needs structum-dynaconf, which is not installed; run: "
            'pip install "structum-database" (or pass --url)'
        ) from exc
    path = Path(root) if root is not None else Path.cwd()
    if not path.is_dir():
        raise CliError(f"--root {str(path)!r} is not a directory")
    try:
        return DynaconfConfigProvider(root_path=path).auto_discover()
    except ConfigError as exc:
        raise CliError(f"cannot read the configuration: {exc}") from exc


@contextmanager
def registered(provider: ConfigProvider | None) -> Iterator[None]:
    """Register ``provider`` while the block runs (core reads settings through the registry).

    The previous registration is restored afterwards, so ``main()`` leaves no trace.
    """
    if provider is None:
        yield
        return
    previous = get_config_provider()
    set_config_provider(provider)
    try:
        yield
    finally:
        set_config_provider(previous)


def resolve(namespace: str, *, url: str | None, root: str | None) -> Resolved:
    """Read the namespace (unless ``--url`` was given); ``url`` is None when none is configured.

    Raises:
        CliError: The configuration cannot be read (exit 2).
    """
    if url:
        return Resolved(namespace, url, {"url": url}, ["--url"], from_option=True)
    from structum_lab.plugins.database import ConfigurationError  # noqa: PLC0415
    from structum_lab.plugins.database.settings import read_namespace  # noqa: PLC0415

    provider = discover_config(root)
    with registered(provider):
        try:
            values, sources = read_namespace(namespace)
        except ConfigurationError as exc:
            raise CliError(f"cannot read the configuration: {exc}") from exc
    configured = values.get("url")
    return Resolved(
        namespace,
        str(configured) if configured else None,
        values,
        sources,
        env=getattr(provider, "env", None),
        provider=provider,
    )


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def backend_class(url: str, choice: str) -> type[Any]:
    """The backend class for ``url``.

    ``auto``: ``postgresql://`` (no explicit SQLAlchemy driver) uses the psycopg backend when it
    is installed, anything else the SQLAlchemy backend.

    Raises:
        CliError: The backend is not installed; the message is the command to run (exit 2).
    """
    from structum_lab.plugins import database as facade  # noqa: PLC0415

    if choice == "auto":
        if _scheme(url) in _POSTGRES_SCHEMES:
            try:
                return getattr(facade, BACKENDS["postgres"][0])  # type: ignore[no-any-return]
            except ImportError:
                pass  # fall back to SQLAlchemy, which speaks PostgreSQL too
        choice = "sqlalchemy"
    name, _extra = BACKENDS[choice]
    try:
        return getattr(facade, name)  # type: ignore[no-any-return]
    except ImportError as exc:
        # The facade's message already ends with the install command.
        raise CliError(str(exc)) from exc


def open_database(resolved: Resolved, choice: str) -> tuple[Any, dict[str, Any]]:
    """Build the database object (connections are opened lazily by the backends).

    Returns:
        The database and the keyword arguments it was built with.

    Raises:
        CliError: No URL, a missing backend or driver, or invalid settings (exit 2).
    """
    from structum_lab.plugins.database import ConfigurationError, DatabaseError  # noqa: PLC0415
    from structum_lab.plugins.database.settings import load_settings  # noqa: PLC0415

    if not resolved.url:
        ns = resolved.namespace
        raise CliError(
            f"configuration namespace {ns!r} has no 'url'; looked in: "
            f"{resolved.describe_source()}. Set it in config/app/{ns}.toml, in "
            f"config/.secrets.toml under [{ns}], with STRUCTUM_{ns.upper()}__URL, or pass --url"
        )
    cls = backend_class(resolved.url, choice)
    try:
        if resolved.from_option:
            kwargs: dict[str, Any] = {"url": resolved.url}
        else:
            # What cls.from_config(namespace) does, keeping the settings to show them (info).
            with registered(resolved.provider):
                kwargs = load_settings(
                    cls, resolved.namespace, aliases=getattr(cls, "config_aliases", None)
                )
        return cls(**kwargs), kwargs
    except ImportError as exc:  # a driver the backend needs (psycopg, pymysql...)
        raise CliError(str(exc)) from exc
    except (ConfigurationError, DatabaseError, TypeError, ValueError) as exc:
        raise CliError(f"cannot set up {cls.__name__}: {exc}") from exc
