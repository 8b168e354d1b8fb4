from __future__ import annotations

from typing import Any

import pytest

import structum_lab.plugins.database as facade
from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseError,
    HealthResult,
    HealthStatus,
    IntegrityError,
    QueryError,
    SerializationError,
    StatementTimeoutError,
    get_database,
    set_database,
)
from structum_lab.plugins.database.errors import error_class_for_sqlstate
from structum_lab.plugins.database.interfaces import DatabaseInterface
from structum_lab.plugins.database.registry import clear_databases


def test_missing_backend_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, package: str | None = None) -> Any:
        raise ModuleNotFoundError(f"No module named {package}{name}", name=f"{package}{name}")

    monkeypatch.setattr(facade, "import_module", missing)
    with pytest.raises(ImportError, match=r'pip install "structum-database\[postgres\]"') as info:
        facade.__getattr__("PostgresDatabase")
    assert "PostgresDatabase is not installed" in str(info.value)


def test_missing_driver_inside_backend_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str, package: str | None = None) -> Any:
        raise ModuleNotFoundError("No module named 'psycopg'", name="psycopg")

    monkeypatch.setattr(facade, "import_module", broken)
    with pytest.raises(ImportError, match="needs the package 'psycopg'"):
        facade.__getattr__("AsyncPostgresDatabase")


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        facade.__getattr__("NoSuchThing")


def test_lazy_names_not_in_all() -> None:
    assert "SQLAlchemyDatabase" not in facade.__all__
    assert "DatabaseInterface" in facade.__all__


def test_public_module_paths() -> None:
    assert DatabaseError.__module__ == "structum_lab.plugins.database"
    assert HealthStatus.__module__ == "structum_lab.plugins.database"


def test_sqlstate_mapping() -> None:
    assert error_class_for_sqlstate("23505") is IntegrityError
    assert error_class_for_sqlstate("40001") is SerializationError
    assert error_class_for_sqlstate("40P01") is SerializationError
    assert error_class_for_sqlstate("57014") is StatementTimeoutError
    assert error_class_for_sqlstate("42601") is QueryError
    assert error_class_for_sqlstate(None) is QueryError


class _UserDatabase(DatabaseInterface):
    """Seed §11.3: a user's own subclass defining only the two abstract methods."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def transaction(self, **options: Any) -> Any:
        return self

    def health_check(self) -> HealthResult:
        return HealthResult(status=HealthStatus.HEALTHY, message="Mock OK", latency_ms=0.1)


def test_user_subclass_is_instantiable_with_defaults() -> None:
    db = _UserDatabase()
    assert db.health_check().status is HealthStatus.HEALTHY
    assert db.get_pool_info()["checked_out"] == 0
    with pytest.raises(NotImplementedError, match="use transaction"):
        db.get_connection()
    with db:
        pass


def test_registry_roundtrip() -> None:
    clear_databases()
    db = _UserDatabase()
    set_database(db)
    set_database(db, name="replica")
    assert get_database() is db
    assert get_database("replica") is db
    with pytest.raises(ConfigurationError, match="no database registered as 'missing'"):
        get_database("missing")
    assert set(clear_databases()) == {"default", "replica"}
