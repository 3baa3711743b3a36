"""second factor (TOTP) and recovery codes; session verification; event kind identity_verified

Revision ID: 0011
Revises: 0010

Real-name re-verification (issue 11, part 2): a physician proves who they are with
a TOTP second factor at login and again before joining a call when the last proof
is older than ``reverify_window``. ``second_factors`` holds the sealed secret and
the last accepted time step (a code is accepted once); ``recovery_codes`` the
argon2 hashes of the single-use codes; ``sessions`` whether the second factor is
still owed and when it was last given. The check before a call is put on the
timeline as ``identity_verified``, which the CHECK on ``consultation_events.kind``
lists from here on (copied by batch mode on SQLite, as in 0005, 0006, 0008 and 0009).
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Module names that start with a digit: imported by name.
_v6 = importlib.import_module("records.migrations.versions.0006_recording_interrupted")
_v9 = importlib.import_module("records.migrations.versions.0009_completion_overdue")

BEFORE = _v9.AFTER
AFTER = (*BEFORE, "identity_verified")


def upgrade() -> None:
    op.create_table(
        "second_factors",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.String(length=400), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_second_factors_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_second_factors")),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_recovery_codes_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    op.create_index(
        op.f("ix_recovery_codes_account_id"), "recovery_codes", ["account_id"], unique=False
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "second_factor_pending",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(), nullable=True))
    _v6._replace(AFTER)


def downgrade() -> None:
    # The older CHECK refuses these entries (the audit log keeps each verification).
    op.execute(sa.text("DELETE FROM consultation_events WHERE kind = 'identity_verified'"))
    _v6._replace(BEFORE)
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("verified_at")
        batch_op.drop_column("second_factor_pending")
    op.drop_index(op.f("ix_recovery_codes_account_id"), table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("second_factors")
