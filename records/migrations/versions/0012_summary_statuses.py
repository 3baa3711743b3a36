"""summary statuses

Revision ID: 0012
Revises: 0011

Issue 14: a summary row keeps the statuses its FHIR resource had, so that an
entered-in-error, refuted or cancelled entry is never shown as a fact and the
export writes the status it was given. A Condition's verification status, an
AllergyIntolerance's clinical and verification status and an Observation's
status are new columns (NULL for rows imported before: they were imported as
facts, and the old importer refused nothing by status). A diagnosis may now be
coded in SNOMED CT or ICD-11 as well as ICD-10, stored as ``system|code`` (see
``records.summary.join_code``), so its code column is as wide as the others.
Immunizations and procedures, which published Bundles carry, get tables of their
own in the summary.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _summary_table(name: str, when: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(when, sa.String(length=32), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f(f"fk_{name}_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{name}_patient_id"), ["patient_id"], unique=False)


def upgrade() -> None:
    _summary_table("immunizations", "occurred")
    _summary_table("procedures", "performed")
    with op.batch_alter_table("conditions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verification_status", sa.String(length=32), nullable=True))
        batch_op.alter_column(
            "code", existing_type=sa.String(length=32), type_=sa.String(length=64)
        )
    with op.batch_alter_table("allergies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinical_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("verification_status", sa.String(length=32), nullable=True))
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_table("procedures")
    op.drop_table("immunizations")
    # The older code shows every row as a fact and reads every diagnosis code as
    # ICD-10: rows a source withdrew, and diagnoses coded otherwise, go.
    op.execute(
        sa.text(
            "DELETE FROM conditions WHERE code LIKE '%|%'"
            " OR verification_status IN ('entered-in-error', 'refuted')"
            " OR clinical_status = 'entered-in-error'"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM allergies WHERE verification_status IN ('entered-in-error', 'refuted')"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM medications"
            " WHERE status IN ('entered-in-error', 'not-taken', 'cancelled', 'draft')"
        )
    )
    op.execute(
        sa.text("DELETE FROM observations WHERE status IN ('entered-in-error', 'cancelled')")
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_column("status")
    with op.batch_alter_table("allergies", schema=None) as batch_op:
        batch_op.drop_column("verification_status")
        batch_op.drop_column("clinical_status")
    with op.batch_alter_table("conditions", schema=None) as batch_op:
        batch_op.alter_column(
            "code", existing_type=sa.String(length=64), type_=sa.String(length=32)
        )
        batch_op.drop_column("verification_status")
