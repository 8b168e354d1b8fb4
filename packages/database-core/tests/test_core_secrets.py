from __future__ import annotations

import logging
import traceback

import pytest

from structum_lab.plugins.database import DatabaseUnavailableError
from structum_lab.plugins.database.base import DatabaseState
from structum_lab.plugins.database.secrets import (
    MASK,
    MaskingFilter,
    mask_url,
    redact,
    scrub_exception,
    secrets_in,
    url_secrets,
)


def test_mask_url_password() -> None:
    assert mask_url("postgresql://app:S3cret!@db:5432/prod") == "postgresql://app:***@db:5432/prod"
    assert mask_url("postgresql+psycopg://u:p%40ss@h/d") == "postgresql+psycopg://u:***@h/d"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://localhost:5432/dev_db",
        "postgresql://app@db/app",
        "postgresql://[::1]:5432/db",
        "postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write",
        "sqlite:///tmp/x.db",
        "sqlite:///:memory:",
        "sqlite://",
        "mysql+pymysql://root@127.0.0.1:3306/test",
    ],
)
def test_mask_url_without_password_unchanged(url: str) -> None:
    assert mask_url(url) == url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        # Every character class in the userinfo, unencoded: the userinfo ends at the last "@".
        ("postgresql://app:abc def@host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:abc @host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:100%sureX@host/db", "postgresql://app:***@host/db"),
        ("postgresql://app:s3cr#t@db/prod", "postgresql://app:***@db/prod"),
        (
            "postgresql://app:p@ss/w?rd;&'\"é@db/prod?sslmode=require",
            "postgresql://app:***@db/prod?sslmode=require",
        ),
        # Query strings: the value runs to the next "&key=".
        (
            "postgresql://h/d?user=u&password=hunter2&sslmode=require",
            "postgresql://h/d?user=u&password=***&sslmode=require",
        ),
        (
            "postgresql://h/d?password=a&b&sslmode=require",
            "postgresql://h/d?password=***&sslmode=require",
        ),
        ("postgresql://app@host/db?password=a@b", "postgresql://app@host/db?password=***"),
        (
            "postgresql:///db?host=/tmp&sslpassword=x y",
            "postgresql:///db?host=/tmp&sslpassword=***",
        ),
        # libpq keyword strings, quoted and unquoted.
        ("host=h password='a b' dbname=d", "host=h password=*** dbname=d"),
        ("host=h password='a b\\'c' dbname=d", "host=h password=*** dbname=d"),
        ("host=h password=ab;Secret dbname=d", "host=h password=*** dbname=d"),
        ("password=;000 host=x", "password=*** host=x"),
        ("host=h password=a b dbname=x", "host=h password=*** dbname=x"),
        # URLs that do not parse: everything that could be a credential.
        ("postgresql:/app:PW@host/db", "postgresql:/app:***"),
        ("postgresql//app:PW@host/db", "postgresql//app:***"),
        ("notascheme:PW", "notascheme:***"),
        ("app:pw@host", "app:***"),
        ("notascheme:user:pw@host", "notascheme:***"),
        ("postgresql://app:PW", "postgresql://app:***"),
        ("postgresql://app:PW/db", "postgresql://app:***"),
    ],
)
def test_mask_url_any_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_url_secrets_and_redact() -> None:
    url = "postgresql://u:pa%2Fss@h/d"
    assert set(url_secrets(url)) >= {"pa%2Fss", "pa/ss"}
    assert redact("login failed, password pa/ss rejected", url_secrets(url)) == (
        "login failed, password *** rejected"
    )
    # Escaped forms: in a repr, in JSON, percent-encoded.
    secret = "it's a \\ secret"
    for shown in (repr(secret), '"it\'s a \\\\ secret"', "it%27s%20a%20%5C%20secret"):
        assert secret not in redact(f"x {shown} y", [secret])
        assert MASK in redact(f"x {shown} y", [secret])


def test_secrets_in_settings() -> None:
    settings = {
        "url": "postgresql://u:pw1@h/d",
        "connect_args": {"sslpassword": "pw2", "options": "-c x=1", "nested": [{"token": "pw3"}]},
    }
    assert {"pw1", "pw2", "pw3"} <= set(secrets_in(settings))


class _Connection:
    def __repr__(self) -> str:
        return "<conn password=s3cr3t-pw>"


class DriverError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._pgconn = _Connection()
        self.sqlstate = "08001"
        self.conninfo = "host=h password=s3cr3t-pw"


def _raise_driver_error() -> None:
    conninfo = "host=h password=s3cr3t-pw"  # a driver frame's local, as psycopg has
    raise DriverError(f"cannot connect with {conninfo}")


def test_scrub_exception_chain_in_place() -> None:
    try:
        try:
            _raise_driver_error()
        except DriverError as driver_error:
            raise RuntimeError("wrapper: s3cr3t-pw") from driver_error
    except RuntimeError as outer:
        caught = outer
    scrub_exception(caught, ["s3cr3t-pw"])
    inner = caught.__cause__
    assert isinstance(inner, DriverError)
    text = "".join(traceback.format_exception(caught)) + repr(vars(inner)) + repr(caught.args)
    assert "s3cr3t-pw" not in text
    assert vars(inner)["_pgconn"] is None  # a connection object is dropped
    assert inner.sqlstate == "08001"  # plain facts stay
    assert inner.__traceback__ is None  # its frames held the conninfo


def test_database_state_errors_scrub_the_chain() -> None:
    state = DatabaseState("postgresql://app:s3cr3t-pw@db/prod", name=None)
    try:
        _raise_driver_error()
    except DriverError as exc:
        error = state._unavailable_error(exc)
        cause = exc
    assert cause.__traceback__ is None
    assert isinstance(error, DatabaseUnavailableError)
    assert "s3cr3t-pw" not in str(error)
    assert "s3cr3t-pw" not in repr(state) + state.url + state.name


def test_database_state_name_is_masked() -> None:
    state = DatabaseState("postgresql://app:s3cr3t-pw@db/prod", name="primary s3cr3t-pw")
    assert state.name == "primary ***"


def test_masking_filter(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test_core_secrets.filter")
    log.addFilter(MaskingFilter())
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            log.info("connect %s failed", "postgresql://u:hunter22@h/d")
    finally:
        log.filters.clear()
    assert "hunter22" not in caplog.text
    assert "postgresql://u:***@h/d" in caplog.text
