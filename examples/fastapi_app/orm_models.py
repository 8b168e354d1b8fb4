"""The ORM flavour's tables as SQLModel models (the same ``users`` / ``user_emails`` tables).

Portable: ``SQLModel.metadata.create_all()`` creates them on PostgreSQL, MariaDB and SQLite.
"""

from sqlmodel import Field, SQLModel


class UserRow(SQLModel, table=True):
    """A row of ``users``."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=50, unique=True)


class EmailRow(SQLModel, table=True):
    """A row of ``user_emails``: an address belongs to one user."""

    __tablename__ = "user_emails"

    email: str = Field(max_length=255, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
