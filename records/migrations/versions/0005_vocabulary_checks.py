"""vocabulary checks: consultation states, event kinds, consent relationships

Revision ID: 0005
Revises: 0004

The database refuses a word outside the vocabulary (``records/vocab.py``) in the
three columns that had no CHECK yet. The lists are written out here rather than
read from the enums: a migration states what the schema was at its revision, and
a later member needs a later migration (``tests/records/test_vocab_migration.py``
fails until there is one).

SQLite cannot add a constraint to a table: batch mode copies the table into a new
one and renames it. Dropping the old ``consultations`` table while events,
opinions and recordings point at it fails with foreign keys on, so they are
switched off around the copy (possible only outside a transaction, which is how
``records.db`` runs migrations on SQLite) and every reference is checked after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATES = (
    "requested",
    "escalated",
    "accepted",
    "live",
    "ended",
    "signed",
    "referred",
    "cancelled",
    "declined",
)
EVENT_KINDS = (
    "requested",
    "accepted",
    "assigned",
    "reassigned",
    "declined",
    "cancelled",
    "escalated",
    "invited",
    "live",
    "joined",
    "rejoined",
    "left",
    "chat",
    "ended",
    "document_shared",
    "document_opened",
    "document_shown",
    "signed",
    "referred",
    "addendum",
    "recording_started",
    "recording_finished",
    "recording_recovered",
    "recording_failed",
)
RELATIONSHIPS = ("self", "guardian", "spouse", "child", "other")

# (table, column, allowed values)
CHECKS = (
    ("consents", "relationship", RELATIONSHIPS),
    ("consultations", "state", STATES),
    ("consultation_events", "kind", EVENT_KINDS),
)


def _in(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({listed})"


@contextmanager
def _foreign_keys_off() -> Iterator[None]:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    op.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        op.execute("PRAGMA foreign_keys=ON")
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"foreign keys broken by the table copy: {broken[:5]}")


def upgrade() -> None:
    with _foreign_keys_off():
        for table, column, values in CHECKS:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.create_check_constraint(op.f(f"ck_{table}_{column}"), _in(column, values))


def downgrade() -> None:
    with _foreign_keys_off():
        for table, column, _values in reversed(CHECKS):
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
