"""Replica settings, their masking, multi-host URLs and presets on every backend (no server).

And the router's bookkeeping on its own (``ReplicaState``): lag from WAL positions, an idle
primary, read-your-writes, stale watchers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import ConfigurationError, HealthResult, HealthStatus
from structum_lab.plugins.database._replicas import ReplicaState
from structum_lab.plugins.database.postgres import AsyncPostgresDatabase, PostgresDatabase
from structum_lab.plugins.database.sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

PRIMARY = "postgresql://app:PrimarySecret1@db1.example.com:5432/app"
REPLICA = "postgresql://ro:ReplicaSecret2@db2.example.com:5432/app"
CLASSES = [PostgresDatabase, AsyncPostgresDatabase, SQLAlchemyDatabase, AsyncSQLAlchemyDatabase]


def build(cls: type[Any], url: str, **kw: Any) -> Any:
    if cls in (PostgresDatabase, AsyncPostgresDatabase):
        kw.setdefault("open", False)
    return cls(url, **kw)


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "config" / "app").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    set_config_provider(None)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_replicas_from_config_secrets_and_environment(
    cls: type[Any], config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config_dir / "config" / "app" / "database.toml").write_text(
        "[default]\nmax_replica_lag = 2.5\nreplica_check_interval = 0.25\n"
        + ("open = false\n" if "Postgres" in cls.__name__ else "")
    )
    (config_dir / "config" / ".secrets.toml").write_text(
        f'[database]\nurl = "{PRIMARY}"\nreplicas = ["{REPLICA}"]\n'
    )
    set_config_provider(DynaconfConfigProvider(root_path=config_dir).auto_discover())
    db = cls.from_config()
    try:
        assert [r.url for r in db.replicas] == ["postgresql://ro:***@db2.example.com:5432/app"]
        assert db.max_replica_lag == 2.5
        assert db.replica_check_interval == 0.25
        shown = repr(db) + repr(db.replicas) + str(db.get_pool_info())
        assert "ReplicaSecret2" not in shown
        assert "PrimarySecret1" not in shown
    finally:
        db._closed = True  # nothing was opened
    # The environment overrides the list, as it does url.
    other = REPLICA.replace("db2", "db3")
    monkeypatch.setenv("STRUCTUM_DATABASE__REPLICAS", f'["{other}", "{REPLICA}"]')
    set_config_provider(DynaconfConfigProvider(root_path=config_dir).auto_discover())
    db = cls.from_config()
    assert [r.url.split("@")[1] for r in db.replicas] == [
        "db3.example.com:5432/app",
        "db2.example.com:5432/app",
    ]
    db._closed = True


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_bad_replica_settings_are_configuration_errors(cls: type[Any]) -> None:
    with pytest.raises(ConfigurationError, match="replicas"):
        build(cls, PRIMARY, replicas=5)
    with pytest.raises(ConfigurationError, match=r"replicas\[0\]"):
        build(cls, PRIMARY, replicas=[""])
    with pytest.raises(ConfigurationError, match="max_replica_lag"):
        build(cls, PRIMARY, replicas=[REPLICA], max_replica_lag=0)
    with pytest.raises(ConfigurationError, match="replica_check_interval"):
        build(cls, PRIMARY, replicas=[REPLICA], replica_check_interval=-1)
    db = build(cls, PRIMARY)  # no replicas: nothing routes
    assert db.replicas == []
    assert "replicas" not in db.get_pool_info()


@pytest.mark.parametrize("cls", [SQLAlchemyDatabase, AsyncSQLAlchemyDatabase])
def test_sqlalchemy_replicas_are_postgresql_only(cls: type[Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL only"):
        cls(f"sqlite:///{tmp_path / 'x.db'}", replicas=[f"sqlite:///{tmp_path / 'y.db'}"])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_multi_host_urls_parse_on_every_backend(cls: type[Any]) -> None:
    url = (
        "postgresql://app:MultiSecret3@h1.example.com:5432,h2.example.com:5433/app"
        "?target_session_attrs=read-write"
    )
    db = build(cls, url)
    assert "MultiSecret3" not in repr(db)
    if cls in (SQLAlchemyDatabase, AsyncSQLAlchemyDatabase):
        engine = db.engine if cls is SQLAlchemyDatabase else db.engine.sync_engine
        _, kwargs = engine.dialect.create_connect_args(engine.url)
        assert kwargs["host"] == "h1.example.com,h2.example.com"
        assert kwargs["port"] == "5432,5433"
        assert kwargs["target_session_attrs"] == "read-write"
    else:
        assert "h1.example.com:5432,h2.example.com:5433" in db._conninfo


@pytest.mark.parametrize("cls", [SQLAlchemyDatabase, AsyncSQLAlchemyDatabase])
def test_sqlalchemy_pgbouncer_preset(cls: type[Any], tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from structum_lab.plugins.database.sqlalchemy._urls import pgbouncer_connect_args

    assert cls(PRIMARY, pgbouncer=True).pgbouncer is True
    psycopg_url = make_url(PRIMARY.replace("postgresql:", "postgresql+psycopg:"))
    args = pgbouncer_connect_args(psycopg_url, {"prepare_threshold": 3}, "x")
    assert args == {"prepare_threshold": None}
    asyncpg_url = make_url(PRIMARY.replace("postgresql:", "postgresql+asyncpg:"))
    args = pgbouncer_connect_args(asyncpg_url, {}, "x")
    assert args == {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    with pytest.raises(ConfigurationError, match="pgbouncer"):
        cls(f"sqlite:///{tmp_path / 'x.db'}", pgbouncer=True)


# -- the router's bookkeeping ---------------------------------------------------------------
class _Fake:
    def __init__(self, name: str) -> None:
        self.name = self.url = name
        self.closed = False

    def get_pool_info(self) -> dict[str, Any]:
        return {"checked_out": 0}


def _state(max_lag: float = 1.0) -> ReplicaState:
    return ReplicaState(_Fake("primary"), [_Fake("r1")], max_lag=max_lag, interval=0.1)


def test_an_idle_primary_does_not_make_a_replica_lag() -> None:
    state = _state()
    node = state.nodes[0]
    now = time.monotonic()
    # The primary wrote up to 1000 long ago and nothing since; the replica replayed it all.
    state.samples = ((now - 100.0, 1000), (now - 50.0, 1000))
    state.observe_primary(now, 1000)
    state.observe_replica(node, True, 1000)
    assert (node.state, node.lag) == ("ok", 0.0)
    assert state.pick() is node.db


def test_lag_is_the_age_of_the_oldest_sample_not_replayed() -> None:
    state = _state(max_lag=1.0)
    node = state.nodes[0]
    now = time.monotonic()
    state.samples = ((now - 3.0, 100), (now - 2.0, 200), (now - 0.5, 300))
    state.observe_replica(node, True, 150)
    assert node.state == "lagging"
    assert node.lag is not None
    assert 2.0 <= node.lag < 2.5
    assert state.pick() is None
    state.observe_replica(node, True, 250)  # only the newest sample missing: 0.5s behind
    assert node.state == "ok"
    assert state.pick() is node.db
    state.observe_replica(node, False, 300)  # promoted
    assert node.state == "not_standby"
    assert state.pick() is None


def test_read_your_writes_waits_for_a_sample_after_the_write() -> None:
    state = _state(max_lag=60.0)
    node = state.nodes[0]
    state.observe_primary(time.monotonic(), 100)
    state.observe_replica(node, True, 100)
    assert state.pick() is node.db
    state.wrote()
    assert state.pick() is None  # no primary sample since the write yet
    state.observe_primary(time.monotonic(), 180)
    state.observe_replica(node, True, 150)
    assert node.state == "ok"  # within the lag bound...
    assert state.pick() is None  # ...but not past this context's write
    state.observe_replica(node, True, 180)
    assert state.pick() is node.db


def test_a_replica_whose_watcher_went_quiet_is_not_used() -> None:
    state = _state()
    node = state.nodes[0]
    state.observe_primary(time.monotonic(), 10)
    state.observe_replica(node, True, 10)
    assert state.pick() is node.db
    node.observed_at -= state.stale_after + 1
    assert state.pick() is None
    primary = HealthResult(HealthStatus.HEALTHY, "Database connection OK", 1.0, {})
    graded = state.grade(primary)
    assert graded.status is HealthStatus.DEGRADED
    assert graded.details["replicas"][0]["status"] == "unhealthy"
    state.replica_failed(node, ConnectionError("refused"))
    assert state.grade(primary).details["replicas"][0]["state"] == "down"
