"""What the sync and the async flavour share: configuration, the schema, SQL and the models.

A user has a unique username and one or more e-mail addresses; an address belongs to one user.
Creating a user writes two tables, so a conflict on the second (an address already in use) must
roll back the first: the API answers 409 and nothing is left half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from structum_lab.config import set_config_provider
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

HERE = Path(__file__).resolve().parent

SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS users (
        id SERIAL PRIMARY KEY,
        username VARCHAR(50) NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS user_emails (
        email VARCHAR(255) PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE
    )
    """,
]

INSERT_USER = "INSERT INTO users (username) VALUES (:username) RETURNING id"
INSERT_EMAIL = "INSERT INTO user_emails (email, user_id) VALUES (:email, :user_id)"
_SELECT = """
    SELECT u.id, u.username,
           COALESCE(array_agg(e.email ORDER BY e.email)
                    FILTER (WHERE e.email IS NOT NULL), '{}') AS emails
    FROM users u LEFT JOIN user_emails e ON e.user_id = u.id
"""
SELECT_USER = _SELECT + " WHERE u.id = :id GROUP BY u.id"
LIST_USERS = _SELECT + " GROUP BY u.id ORDER BY u.id LIMIT :limit OFFSET :offset"


Email = Annotated[str, Field(max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")]


class UserIn(BaseModel):
    """What a client sends to create a user."""

    username: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    emails: list[Email] = Field(min_length=1, max_length=5)


class User(BaseModel):
    """A stored user."""

    id: int
    username: str
    emails: list[str]


def configure() -> None:
    """Read ``config/`` next to this file: ``app/database.toml``, ``.secrets.toml``, ``STRUCTUM_*``.

    Registering the provider with an explicit root lets the app start from any directory.
    """
    set_config_provider(DynaconfConfigProvider(root_path=HERE).auto_discover())
