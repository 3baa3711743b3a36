"""administration: agreements, account phone, deactivation, forced password change

Revision ID: 0010
Revises: 0009

A clinic may ask only the hospitals it has an active agreement with (a 医联体,
``medical_alliance``, or 对口支援, ``paired_support``): ``agreements`` lists them,
ended rather than deleted so that the history of who could ask whom stays.

Accounts get a phone number, ``must_change_password`` (set by an administrator's
reset: the temporary password works once, for choosing a new one), and
``deactivated_at``/``deactivated_by`` beside ``active``: an account is never
deleted, its name stays on every timeline and audit entry.

Databases made before this revision get one agreement from every township clinic
and county hospital to every specialist hospital, so that nobody who could ask
yesterday is refused today; the administrator ends the ones that do not exist.
"""

from __future__ import annotations

import importlib
import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# 0005's module name starts with a digit: imported by name. Its guard turns
# SQLite's foreign keys off while batch mode copies ``accounts`` (which other
# tables reference) and checks them afterwards.
_v5 = importlib.import_module("records.migrations.versions.0005_vocabulary_checks")


def upgrade() -> None:
    op.create_table(
        "agreements",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("requesting_institution_id", sa.String(length=32), nullable=False),
        sa.Column("consulting_institution_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('medical_alliance', 'paired_support')", name=op.f("ck_agreements_kind")
        ),
        sa.ForeignKeyConstraint(
            ["consulting_institution_id"],
            ["institutions.id"],
            name=op.f("fk_agreements_consulting_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["requesting_institution_id"],
            ["institutions.id"],
            name=op.f("fk_agreements_requesting_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreements")),
    )
    op.create_index(
        op.f("ix_agreements_requesting_institution_id"),
        "agreements",
        ["requesting_institution_id"],
        unique=False,
    )
    with _v5._foreign_keys_off(), op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column(
                "must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("deactivated_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("deactivated_by", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            op.f("fk_accounts_deactivated_by_accounts"), "accounts", ["deactivated_by"], ["id"]
        )
    _grandfather_agreements()


def _grandfather_agreements() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, kind FROM institutions")).all()
    asking = [r.id for r in rows if r.kind in ("township_clinic", "county_hospital")]
    asked = [r.id for r in rows if r.kind == "specialist_hospital"]
    now = datetime.now(UTC).replace(tzinfo=None)
    for requesting in asking:
        for consulting in asked:
            conn.execute(
                sa.text(
                    "INSERT INTO agreements (id, requesting_institution_id, "
                    "consulting_institution_id, kind, since, ended_at, created_at) "
                    "VALUES (:id, :r, :c, 'medical_alliance', :since, NULL, :now)"
                ),
                {
                    "id": secrets.token_hex(16),
                    "r": requesting,
                    "c": consulting,
                    "since": now.date(),
                    "now": now,
                },
            )


def downgrade() -> None:
    with _v5._foreign_keys_off(), op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("fk_accounts_deactivated_by_accounts"), type_="foreignkey")
        batch.drop_column("deactivated_by")
        batch.drop_column("deactivated_at")
        batch.drop_column("must_change_password")
        batch.drop_column("phone")
    op.drop_index(op.f("ix_agreements_requesting_institution_id"), table_name="agreements")
    op.drop_table("agreements")
