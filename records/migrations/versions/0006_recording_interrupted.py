"""event kind recording_interrupted

Revision ID: 0006
Revises: 0005

A participant of a live call who stops being recorded without anyone asking
(their recording leg died, the disk filled, the server stopped) is marked on the
timeline with ``recording_interrupted``; the CHECK on ``consultation_events.kind``
lists it from here on (copied by batch mode on SQLite, as in 0005).
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# 0005's module name starts with a digit: imported by name.
_v5 = importlib.import_module("records.migrations.versions.0005_vocabulary_checks")

BEFORE = _v5.EVENT_KINDS
AFTER = (*BEFORE, "recording_interrupted")
NAME = "ck_consultation_events_kind"


def _replace(values: tuple[str, ...]) -> None:
    with _v5._foreign_keys_off():
        with op.batch_alter_table("consultation_events", schema=None) as batch_op:
            batch_op.drop_constraint(op.f(NAME), type_="check")
            batch_op.create_check_constraint(op.f(NAME), _v5._in("kind", values))


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    _replace(BEFORE)
