"""Identifiers and the one-row select that every part of the store uses."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa


def new_id() -> str:
    """A random, unguessable identifier (128 bits, hex)."""
    return secrets.token_hex(16)


def first_row(conn: sa.Connection, statement: sa.Select[Any]) -> sa.RowMapping | None:
    """The first row ``statement`` selects, by column name, or None."""
    row: sa.RowMapping | None = (conn.execute(statement)).mappings().first()
    return row
