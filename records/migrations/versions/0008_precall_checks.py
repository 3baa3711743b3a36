"""pre-call checks; event kind precall_checked

Revision ID: 0008
Revises: 0007

A participant tests camera, microphone, speaker and the network path to the
server and its TURN before the call (issue 12, item 5); each check is kept in
``precall_checks`` (the verdict and the figures behind it) and put on the
timeline as ``precall_checked``, which the CHECK on ``consultation_events.kind``
lists from here on (copied by batch mode on SQLite, as in 0005 and 0006).
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# 0005's and 0006's module names start with a digit: imported by name.
_v5 = importlib.import_module("records.migrations.versions.0005_vocabulary_checks")
_v6 = importlib.import_module("records.migrations.versions.0006_recording_interrupted")

BEFORE = _v6.AFTER
AFTER = (*BEFORE, "precall_checked")
VERDICTS = ("good", "limited", "unusable")


def upgrade() -> None:
    op.create_table(
        "precall_checks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("participant_id", sa.String(length=32), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.CheckConstraint(_v5._in("verdict", VERDICTS), name=op.f("ck_precall_checks_verdict")),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_precall_checks_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["accounts.id"],
            name=op.f("fk_precall_checks_participant_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_precall_checks")),
    )
    op.create_index(
        op.f("ix_precall_checks_consultation_id"),
        "precall_checks",
        ["consultation_id"],
        unique=False,
    )
    _v6._replace(AFTER)


def downgrade() -> None:
    # The timeline entries of checks go with the checks: the older CHECK refuses them.
    op.execute(sa.text("DELETE FROM consultation_events WHERE kind = 'precall_checked'"))
    _v6._replace(BEFORE)
    op.drop_index(op.f("ix_precall_checks_consultation_id"), table_name="precall_checks")
    op.drop_table("precall_checks")
