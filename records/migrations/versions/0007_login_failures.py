"""login failures per username; the audit head row exists from the start

Revision ID: 0007
Revises: 0006

``login_failures`` counts wrong passwords per username, known or not, so that the
lock-out answers the same for a name that has no account (issue 15, item 16). Each
attempt adds one in a single UPDATE, so concurrent guesses on PostgreSQL cannot
overwrite each other's count (item 6).

``audit_head`` gets its row here (sequence 0, the genesis hash: the head of an empty
chain). Appending used to insert it with the first entry, and on PostgreSQL
concurrent first appends all found no row to lock and collided on the insert
(item 8); now every append locks the one existing row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("username_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("username_hash", name=op.f("pk_login_failures")),
    )
    op.execute(
        sa.text(
            "INSERT INTO audit_head (id, seq, hash) SELECT 1, 0, :genesis "
            "WHERE NOT EXISTS (SELECT 1 FROM audit_head WHERE id = 1)"
        ).bindparams(genesis=GENESIS)
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.execute(sa.text("DELETE FROM audit_head WHERE seq = 0"))
