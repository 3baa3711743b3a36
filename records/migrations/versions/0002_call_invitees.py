"""call invitees

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "consultation_invitees",
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("invited_by", sa.String(length=32), nullable=False),
        sa.Column("invited_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_consultation_invitees_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_invitees_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["accounts.id"],
            name=op.f("fk_consultation_invitees_invited_by_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "consultation_id", "account_id", name=op.f("pk_consultation_invitees")
        ),
    )


def downgrade() -> None:

    op.drop_table("consultation_invitees")
