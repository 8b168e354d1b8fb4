from __future__ import annotations

import pytest

from structum_lab.plugins.observability import MASK, get_logger, mask_text, mask_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cr3t@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("mysql+pymysql://root:p@ss@host/db", "mysql+pymysql://root:***@host/db"),
        (
            "failed for postgresql://u:pw@h/db: refused",
            "failed for postgresql://u:***@h/db: refused",
        ),
        ("host=db password='a b' user=x", "host=db password=*** user=x"),
        ("https://h/x?api_token=abc&x=1", "https://h/x?api_token=***&x=1"),
        ("client_secret=xyz", "client_secret=***"),
        ("http://host:8080/a?mail=x@y", "http://host:8080/a?mail=x@y"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("nothing here", "nothing here"),
    ],
)
def test_mask_text(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_mask_value_keeps_clean_objects_and_types() -> None:
    info = {"checked_out": 1, "url": "sqlite:///x.db"}
    assert mask_value("info", info) is info
    assert mask_value("password", None) is None
    assert mask_value("password", "") == ""
    assert mask_value("db_password", 1234) == MASK
    assert mask_value("cfg", {"password": "x", "n": [1, "postgresql://u:p@h/d"]}) == {
        "password": MASK,
        "n": [1, "postgresql://u:***@h/d"],
    }
    assert mask_value("urls", ("postgresql://u:p@h/d",)) == ("postgresql://u:***@h/d",)


def test_secret_fields_are_masked_in_line_and_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.mask")
    logger.warning(
        "connect",
        password="hunter2",
        api_token="tok-123",
        client_secret="shh",
        url="postgresql://app:hunter2@db/app",
        options={"password": "hunter2", "pool_size": 5},
        error=ConnectionError("cannot reach postgresql://app:hunter2@db/app"),
        user="app",
    )
    (record,) = caplog.records
    assert "hunter2" not in caplog.text
    assert "tok-123" not in caplog.text
    assert "shh" not in caplog.text
    assert record.fields == {  # type: ignore[attr-defined]
        "password": MASK,
        "api_token": MASK,
        "client_secret": MASK,
        "url": "postgresql://app:***@db/app",
        "options": {"password": MASK, "pool_size": 5},
        "error": "cannot reach postgresql://app:***@db/app",
        "user": "app",
    }
    assert "hunter2" not in repr(record.__dict__)


def test_event_text_and_args_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.mask_event")
    url = "postgresql://app:hunter2@db/app"
    exc = RuntimeError(f"refused: {url}")
    logger.error(f"Transaction failed: {exc}")
    logger.error("connect to %s failed: %s (%d tries)", url, exc, 3)
    first, second = caplog.records
    assert first.getMessage() == "Transaction failed: refused: postgresql://app:***@db/app"
    assert second.getMessage() == (
        "connect to postgresql://app:***@db/app failed: refused: postgresql://app:***@db/app"
        " (3 tries)"
    )
    assert "hunter2" not in caplog.text


def test_bound_secrets_are_masked_and_hidden_from_repr(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("test_observability.mask_bind").bind(token="abc123", user="u")
    logger.warning("call")
    assert caplog.records[0].getMessage() == "call token=*** user=u"
    assert "abc123" not in repr(logger)
    assert "token" in repr(logger)
