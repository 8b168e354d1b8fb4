from __future__ import annotations

from structum_lab.plugins.database.secrets import mask_url, redact, url_password


def test_mask_url_password() -> None:
    assert mask_url("postgresql://app:S3cret!@db:5432/prod") == "postgresql://app:***@db:5432/prod"
    assert mask_url("postgresql+psycopg://u:p%40ss@h/d") == "postgresql+psycopg://u:***@h/d"


def test_mask_url_without_password_unchanged() -> None:
    assert mask_url("postgresql://localhost:5432/dev_db") == "postgresql://localhost:5432/dev_db"
    assert mask_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"


def test_mask_query_and_keyword_dsn() -> None:
    assert "hunter2" not in mask_url("postgresql://h/d?user=u&password=hunter2&sslmode=require")
    assert mask_url("host=h password='a b' dbname=d") == "host=h password=*** dbname=d"


def test_url_password_and_redact() -> None:
    url = "postgresql://u:pa%2Fss@h/d"
    assert url_password(url) == "pa/ss"
    assert redact("login failed, password pa/ss rejected", [url_password(url)]) == (
        "login failed, password *** rejected"
    )
