"""Test databases cloned from a template: the schema is loaded once, each clone is a file copy.

PostgreSQL's ``CREATE DATABASE <name> TEMPLATE <template>`` copies a database's files, so a test
database with the whole schema costs a copy instead of replaying every migration. A
:class:`TemplateDatabase` loads the schema (SQL files, or a callable such as an Alembic upgrade)
into the template once per test session; :meth:`TemplateDatabase.clone` then makes one database
per pytest-xdist worker or per test. The ``postgres_template`` fixtures of the pytest plugin wire
it to the ``structum_schema`` fixture a project overrides.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from structum_lab.plugins.database import mask_url

from .provision import ClusterError, _admin, _first_line, _plain_url

__all__ = ["SchemaSource", "TemplateDatabase"]

#: SQL files (run in order, each as one script), or a callable given the template's URL.
SchemaSource = Sequence[Path | str] | Callable[[str], None]

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _database_url(url: str, database: str) -> str:
    parts = urlsplit(_plain_url(url))
    return urlunsplit(parts._replace(path=f"/{database}"))


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"database name {name!r}: use lower-case letters, digits and _ (at most 63), "
            "starting with a letter or _"
        )
    return name


class TemplateDatabase:
    """A PostgreSQL template database holding the schema, and the clones made from it.

    Args:
        url: A URL of the server with the ``CREATEDB`` privilege (its database is used for the
            administrative statements only).
        schema: SQL files run in order into the template, or a callable given the template's URL
            (e.g. one running ``alembic upgrade head`` against it).
        name: The template database's name (default: a unique ``structum_tpl_<hex>``).

    Attributes:
        load_seconds: Seconds the schema took to load into the template.
        clone_seconds: Seconds each :meth:`clone` took.
        clones: Names of the clones made and not dropped yet.
    """

    def __init__(self, url: str, schema: SchemaSource, *, name: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self.name = _checked_name(name or f"structum_tpl_{uuid.uuid4().hex[:12]}")
        self.clones: list[str] = []
        self.load_seconds = 0.0
        self.clone_seconds: list[float] = []
        self._built = False

    def __repr__(self) -> str:
        state = "built" if self._built else "not built"
        return f"<TemplateDatabase {self.name} on {mask_url(self.url)} {state}>"

    @property
    def template_url(self) -> str:
        """The template database's URL (connect to it only while building)."""
        return _database_url(self.url, self.name)

    def build(self) -> None:
        """Create the template and load the schema into it (once).

        Raises:
            ClusterError: The server refused (no ``CREATEDB``), or the schema failed to load;
                the message names the file or callable.
        """
        if self._built:
            return
        self._admin([f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"'])
        began = time.perf_counter()
        try:
            self._load()
        except BaseException:
            self._drop(self.name)
            raise
        self.load_seconds = time.perf_counter() - began
        # Marked as a template: CREATE DATABASE ... TEMPLATE needs no connection to it, and
        # nobody may connect to it by mistake and change what every clone starts from.
        self._admin([f'ALTER DATABASE "{self.name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'])
        self._built = True

    def _load(self) -> None:
        if callable(self.schema):
            try:
                self.schema(self.template_url)
            except Exception as exc:
                raise ClusterError(
                    f"the schema callable failed on the template {self.name}: {_first_line(exc)}"
                ) from exc
            return
        for item in self.schema:
            path = Path(item)
            try:
                sql = path.read_text()
            except OSError as exc:
                raise ClusterError(f"cannot read the schema file {path}: {exc}") from exc
            try:
                _admin(self.template_url, [sql])
            except Exception as exc:
                raise ClusterError(
                    f"the schema file {path} failed on the template {self.name}: {_first_line(exc)}"
                ) from exc

    def clone(self, name: str | None = None) -> str:
        """Create a database from the template and return its URL.

        Args:
            name: The new database's name (default: ``<template>_<hex>``); an existing database
                of that name is dropped first.
        """
        self.build()
        target = _checked_name(name or f"{self.name}_{uuid.uuid4().hex[:8]}")
        began = time.perf_counter()
        self._admin(
            [
                f'DROP DATABASE IF EXISTS "{target}"',
                f'CREATE DATABASE "{target}" TEMPLATE "{self.name}"',
            ]
        )
        self.clone_seconds.append(time.perf_counter() - began)
        self.clones.append(target)
        return _database_url(self.url, target)

    def drop_clone(self, url_or_name: str) -> None:
        """Drop a clone (by URL or name); connections to it are terminated."""
        name = urlsplit(url_or_name).path.lstrip("/") if "://" in url_or_name else url_or_name
        self._drop(name)
        if name in self.clones:
            self.clones.remove(name)

    def close(self) -> None:
        """Drop every clone made here and the template."""
        for name in list(self.clones):
            self.drop_clone(name)
        if self._built:
            self._admin([f'ALTER DATABASE "{self.name}" WITH IS_TEMPLATE false'])
            self._built = False
        self._drop(self.name)

    def __enter__(self) -> TemplateDatabase:
        self.build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------
    def _admin(self, statements: Iterable[str]) -> None:
        try:
            _admin(self.url, list(statements))
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(
                f"{mask_url(self.url)}: {_first_line(exc)}; the user needs the CREATEDB privilege"
            ) from exc

    def _drop(self, name: str) -> None:
        try:
            self._admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
        except ClusterError:
            self._admin([f'DROP DATABASE IF EXISTS "{name}"'])  # before PostgreSQL 13
