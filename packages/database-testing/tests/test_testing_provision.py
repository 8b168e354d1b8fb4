from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from structum_lab.plugins.database.testing import (
    ClusterError,
    LocalMariaDBServer,
    LocalPostgresCluster,
    MySQLUnavailable,
    PostgresUnavailable,
    docker_status,
    find_mariadb_binaries,
    find_postgres_bindir,
    provision_mysql,
    provision_postgres,
)
from structum_lab.plugins.database.testing.mariadb import MariaDBBinaries, mysql_admin
from structum_lab.plugins.database.testing.provision import worker_database_url


def _serve_once(path: Path, reply: bytes) -> Iterator[threading.Thread]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(reply)
        server.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield thread
    thread.join(5)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~100 bytes; pytest's tmp_path can be longer.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sdt-") as name:
        yield Path(name)


def test_docker_ping_on_a_socket_that_answers(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = short_tmp / "docker.sock"
    served = _serve_once(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    next(served)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    assert docker_status() == (True, f"unix://{sock}")
    next(served, None)


def test_docker_ping_on_a_socket_that_refuses(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = short_tmp / "docker.sock"
    served = _serve_once(sock, b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    next(served)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    answers, why = docker_status()
    assert not answers
    assert "did not answer /_ping" in why
    next(served, None)


def test_no_docker_is_detected_without_waiting_for_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A missing socket or a refused port is known at once: with a timeout far longer than any
    # scheduling delay, returning well before it proves that nothing waited for it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for host in ("unix:///nonexistent/docker.sock", f"tcp://127.0.0.1:{port}"):
        monkeypatch.setenv("DOCKER_HOST", host)
        started = time.perf_counter()
        answers, why = docker_status(timeout=60)
        assert not answers
        assert why
        assert time.perf_counter() - started < 30
    monkeypatch.setenv("DOCKER_HOST", "ssh://somewhere")
    assert docker_status() == (False, "unsupported DOCKER_HOST 'ssh://somewhere'")


def test_find_bindir_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRUCTUM_TEST_PG_BINDIR", "/nonexistent")
    assert find_postgres_bindir() is None
    with pytest.raises(ClusterError, match="no PostgreSQL server binaries"):
        LocalPostgresCluster()
    monkeypatch.delenv("STRUCTUM_TEST_PG_BINDIR")
    found = find_postgres_bindir()
    if found is not None:
        assert (found / "initdb").is_file()
        assert (found / "pg_ctl").is_file()
        monkeypatch.setenv("STRUCTUM_TEST_PG_BINDIR", str(found))
        assert find_postgres_bindir() == found


def test_worker_database_url() -> None:
    assert (
        worker_database_url("postgresql://u:p@h:5432/test?sslmode=disable", "gw3")
        == "postgresql://u:p@h:5432/test_gw3?sslmode=disable"
    )
    assert worker_database_url("postgresql://u@h", "gw0") == "postgresql://u@h/u_gw0"


def test_unavailable_names_the_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("STRUCTUM_TEST_PG_BINDIR", "/nonexistent")
    monkeypatch.setenv("STRUCTUM_TEST_POSTGRES_SERVICE", "off")
    with pytest.raises(PostgresUnavailable) as info:
        provision_postgres()
    message = str(info.value)
    for needle in (
        "no PostgreSQL server for the tests. Provide one of:",
        "--structum-db-url",
        "STRUCTUM_TEST_DATABASE_URL",
        "STRUCTUM_TEST_POSTGRES_URL",
        "2. a running PostgreSQL service at postgresql://postgres@127.0.0.1:5432/test",
        "STRUCTUM_TEST_POSTGRES_SERVICE=<url>",
        "structum-database-testing[containers]",
        "initdb, pg_ctl",
        "URL: none given",
        "local service: switched off",
        "Docker: no daemon answered (/nonexistent/docker.sock does not exist)",
        "local cluster: no PostgreSQL server binaries",
    ):
        assert needle in message
    assert len(info.value.reasons) == 4
    with pytest.raises(PostgresUnavailable) as only_url:
        provision_postgres(mode="url")
    assert len(only_url.value.reasons) == 1
    with pytest.raises(ValueError, match="mode must be one of"):
        provision_postgres(mode="cloud")  # type: ignore[arg-type]


def test_mysql_unavailable_names_the_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRUCTUM_TEST_MARIADB_BINDIR", "/nonexistent")
    monkeypatch.setenv("STRUCTUM_TEST_MYSQL_SERVICE", "off")
    assert find_mariadb_binaries() is None
    with pytest.raises(MySQLUnavailable) as info:
        provision_mysql()
    message = str(info.value)
    for needle in (
        "no MariaDB/MySQL server for the tests. Provide one of:",
        "--structum-db-mysql-url=mysql://",
        "STRUCTUM_TEST_MYSQL_URL",
        "2. a running MariaDB/MySQL service at mysql://root@127.0.0.1:3306/test",
        "apt-get install mariadb-server",
        "URL: none given",
        "local service: switched off",
        "local server: no MariaDB server binaries",
    ):
        assert needle in message
    assert len(info.value.reasons) == 3
    with pytest.raises(MySQLUnavailable) as docker:
        provision_mysql(mode="docker")
    assert docker.value.reasons == ["Docker: no MariaDB/MySQL container step (use another way)"]


def test_a_closed_service_port_is_passed_over() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for provision, url in (
        (provision_postgres, f"postgresql://u:s3cret@127.0.0.1:{port}/test"),
        (provision_mysql, f"mysql://u:s3cret@127.0.0.1:{port}/test"),
    ):
        with pytest.raises((PostgresUnavailable, MySQLUnavailable)) as info:
            provision(mode="service", service=url)
        (reason,) = info.value.reasons
        assert reason.startswith(f"local service: {url.replace('s3cret', '***')}")
        assert "s3cret" not in str(info.value)


@pytest.mark.integration
@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_the_service_is_taken_when_a_real_query_answers(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    provision = provision_postgres if dialect == "postgresql" else provision_mysql
    url = str(request.getfixturevalue("postgres_url" if dialect == "postgresql" else "mysql_url"))
    found = provision(mode="service", service=url)
    assert (found.url, found.source) == (url, "service")
    assert found.description == f"from the local service {url}"
    found.close()
    # The server answers, but the database is missing: the reason says how to create it.
    missing = urlsplit(url)._replace(path="/structum_no_such_db").geturl()
    with pytest.raises((PostgresUnavailable, MySQLUnavailable)) as info:
        provision(mode="service", service=missing)
    (reason,) = info.value.reasons
    assert "answers, but has no database structum_no_such_db" in reason
    assert ("createdb" if dialect == "postgresql" else "CREATE DATABASE") in reason


def test_explicit_url_is_used_as_given() -> None:
    url = "postgresql://app:secret@db.example:5432/app"
    given = provision_postgres(url=url)
    assert (given.url, given.source) == (url, "url")
    assert "secret" not in given.description
    given.close()


@pytest.mark.integration
def test_worker_database_is_created_and_dropped(postgres_url: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    server = provision_postgres(url=postgres_url, worker="gw7")
    name = urlsplit(server.url).path.lstrip("/")
    assert name == urlsplit(postgres_url).path.lstrip("/") + "_gw7"
    assert "for worker gw7" in server.description
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (name,)
    server.close()
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert row.fetchone() == (0,)


def _mysql_databases(url: str) -> set[str]:
    pymysql = pytest.importorskip("pymysql")
    parts = urlsplit(url)
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
    )
    with conn, conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES")
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.integration
def test_mysql_worker_database_is_created_and_dropped(mysql_url: str) -> None:
    server = provision_mysql(url=mysql_url, worker="gw7")
    name = urlsplit(server.url).path.lstrip("/")
    assert name == urlsplit(mysql_url).path.lstrip("/") + "_gw7"
    assert "for worker gw7" in server.description
    mysql_admin(server.url, ["CREATE TABLE per_worker (x INT)"])  # in the worker's database
    assert name in _mysql_databases(mysql_url)
    server.close()
    assert name not in _mysql_databases(mysql_url)


@pytest.mark.integration
def _check_running(
    server: LocalPostgresCluster | LocalMariaDBServer,
    prefix: str,
    record_property: Callable[[str, object], None],
) -> Path:
    """What both throwaway servers promise while running; returns their directory."""
    record_property(
        "structum_cluster_startup",
        f"{type(server).__name__} in-process start {server.startup_seconds:.2f}s "
        + " ".join(f"{k}={v:.2f}s" for k, v in server.timings.items()),
    )
    assert "running on 127.0.0.1" in repr(server)
    assert server.running
    directory = server.dir
    assert directory is not None
    assert directory.name.startswith(prefix)
    if os.geteuid() == 0:  # both servers refuse root: they run unprivileged
        assert server.data_dir.stat().st_uid != 0
    assert server.version().split(".")[0].isdigit()
    return directory


@pytest.mark.usefixtures("postgres_bindir")
def test_local_cluster_lifecycle(record_property: Callable[[str, object], None]) -> None:
    psycopg = pytest.importorskip("psycopg")
    with LocalPostgresCluster(database="lifecycle") as cluster:
        directory = _check_running(cluster, "structum-pg-", record_property)
        assert cluster.url == f"postgresql://postgres@127.0.0.1:{cluster.port}/lifecycle"
        assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()
        with psycopg.connect(cluster.url) as conn:
            settings = conn.execute(
                "SELECT current_setting('fsync'), current_database(), "
                "current_setting('unix_socket_directories')"
            ).fetchone()
        assert settings == ("off", "lifecycle", str(cluster.socket_dir))
        with psycopg.connect(
            host=str(cluster.socket_dir), port=cluster.port, user="postgres", dbname="lifecycle"
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{cluster.port}/lifecycle", connect_timeout=2
        )
    with pytest.raises(ClusterError, match="not running"):
        _ = cluster.url
    cluster.stop()  # idempotent


@pytest.mark.integration
@pytest.mark.usefixtures("postgres_bindir")
def test_local_cluster_server_controls() -> None:
    psycopg = pytest.importorskip("psycopg")
    with LocalPostgresCluster(database="controls") as cluster:
        url, port, first = cluster.url, cluster.port, cluster.postmaster_pid
        cluster.restart("immediate")
        assert cluster.port == port
        assert cluster.postmaster_pid != first
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
        cluster.stop_server()  # fast: a clean shutdown keeps what was committed
        assert not cluster.server_running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        with pytest.raises(ClusterError, match="not running"):
            _ = cluster.postmaster_pid
        cluster.start_server()
        assert cluster.postmaster_pid > 0
        with psycopg.connect(url) as conn:  # same port, same data
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)


@pytest.mark.integration
def test_local_mariadb_lifecycle(
    record_property: Callable[[str, object], None], mariadb_binaries: MariaDBBinaries
) -> None:
    with LocalMariaDBServer(binaries=mariadb_binaries, database="lifecycle") as server:
        directory = _check_running(server, "structum-mariadb-", record_property)
        assert server.url == f"mysql://root@127.0.0.1:{server.port}/lifecycle"
        assert server.socket_path.exists()
        assert "lifecycle" in _mysql_databases(server.url)
        mysql_admin(server.url, ["CREATE TABLE t (x INT)", "INSERT INTO t VALUES (1)"])
        port = server.port
    assert not directory.exists()
    with pytest.raises(ClusterError, match="cannot connect"):
        mysql_admin(f"mysql://root@127.0.0.1:{port}/lifecycle", ["SELECT 1"], connect_timeout=2)
    with pytest.raises(ClusterError, match="not running"):
        _ = server.url
    server.stop()  # idempotent
