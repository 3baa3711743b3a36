"""Tables of the system of record (SQLAlchemy Core).

Identifiers are random 32-hex-digit strings: they are put in URLs and must not
reveal how many patients or consultations an institution has. Times are stored as
timezone-aware UTC. The migrations in ``records/migrations`` create exactly this
schema; ``tests/records/test_migrations.py`` compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from records.vocab import (
    AgreementKind,
    ConsultationState,
    DocumentKind,
    EventKind,
    InstitutionKind,
    OpinionKind,
    PrecallVerdict,
    RecordingStatus,
    Relationship,
    Role,
    Sex,
    Urgency,
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A UTC instant: stored without zone (as UTC), always read back timezone-aware.

    SQLite has no zone-aware type; storing naive UTC everywhere keeps SQLite and
    PostgreSQL identical and keeps the audit hashes stable.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(32)
TS = UTCDateTime()


def one_of(column: str, words: type[StrEnum]) -> sa.CheckConstraint:
    """``column IN (...)`` over the members of ``words``, named after the column.

    The naming convention makes the name ``ck_<table>_<column>``. A new member
    changes the constraint: ``tests/records/test_vocab_migration.py`` compares
    the migrated database's CHECK constraints with these and fails until a
    migration follows.
    """
    listed = ", ".join(f"'{w.value}'" for w in words)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=column)


institutions = sa.Table(
    "institutions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("region", sa.String(200), nullable=False),
    one_of("kind", InstitutionKind),
)

departments = sa.Table(
    "departments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("institution_id", ID, sa.ForeignKey("institutions.id"), nullable=False),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.UniqueConstraint("institution_id", "code", name="uq_departments_institution_code"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("institution_id", ID, sa.ForeignKey("institutions.id"), nullable=False),
    sa.Column("licence_no", sa.String(64), nullable=True),
    sa.Column("title", sa.String(100), nullable=True),
    sa.Column("practice_start", sa.Date, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", TS, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("phone", sa.String(32), nullable=True),
    # Set by an administrator's password reset: the temporary password is good
    # only for choosing a new one (signaling/workflow/auth.py).
    sa.Column("must_change_password", sa.Boolean, nullable=False, server_default=sa.false()),
    # Accounts are deactivated, never deleted: their names stay in the history.
    sa.Column("deactivated_at", TS, nullable=True),
    sa.Column("deactivated_by", ID, sa.ForeignKey("accounts.id"), nullable=True),
    one_of("role", Role),
)

# Which institutions may ask which for consultations (a 医联体 or 对口支援
# relation). Ended, never deleted: the history of who could ask whom stays.
agreements = sa.Table(
    "agreements",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column(
        "requesting_institution_id",
        ID,
        sa.ForeignKey("institutions.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("consulting_institution_id", ID, sa.ForeignKey("institutions.id"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("since", sa.Date, nullable=False),
    sa.Column("ended_at", TS, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    one_of("kind", AgreementKind),
)

# Failed logins per username, real or not: an unknown name is counted and locked out
# exactly like a real one, so the lock-out cannot tell which usernames exist. The key
# is the SHA-256 of the name as typed (people type passwords into the username box).
# Supersedes accounts.failed_logins/locked_until (since 0006; no longer written).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("username_hash", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("locked_until", TS, nullable=True),
)

account_departments = sa.Table(
    "account_departments",
    metadata,
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("department_id", ID, sa.ForeignKey("departments.id"), primary_key=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    # Only a hash of the session token is stored: a copy of the database does not
    # let anyone log in as the users in it.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("client_addr", sa.String(64), nullable=True),
    # The password was right but the second factor is still owed (roles in
    # ``Settings.totp_roles``): such a session reaches only the second-factor
    # pages and endpoints. ``verified_at``: the last time this session's user
    # proved their identity with the second factor (at login or before a call).
    sa.Column("second_factor_pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("verified_at", TS, nullable=True),
)

# One TOTP second factor per account. ``secret`` is the base32 secret sealed under
# the app's master key (``records.sealed_values.seal_value``; plain only when the
# deployment has no key); ``enrolled_at`` is None while the enrolment is started
# but not yet confirmed with a code. ``last_step`` is the TOTP time step of the
# last code accepted: a code of that step or an earlier one is refused (replay).
second_factors = sa.Table(
    "second_factors",
    metadata,
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("secret", sa.String(400), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("enrolled_at", TS, nullable=True),
    sa.Column("last_step", sa.BigInteger, nullable=True),
)

# Single-use recovery codes, shown once at enrolment; only their argon2 hash is kept.
recovery_codes = sa.Table(
    "recovery_codes",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
    sa.Column("code_hash", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("used_at", TS, nullable=True),
)

patients = sa.Table(
    "patients",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("institution_id", ID, sa.ForeignKey("institutions.id"), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("sex", sa.String(8), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("national_id", sa.String(18), nullable=False),
    sa.Column("phone", sa.String(32), nullable=True),
    sa.Column("created_by", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("institution_id", "national_id", name="uq_patients_institution_nid"),
    one_of("sex", Sex),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("scope_consultation", sa.Boolean, nullable=False),
    sa.Column("scope_recording", sa.Boolean, nullable=False),
    sa.Column("given_by", sa.String(100), nullable=False),
    sa.Column("relationship", sa.String(32), nullable=False),
    sa.Column("taken_by", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("given_at", TS, nullable=False),
    sa.Column("withdrawn_at", TS, nullable=True),
    sa.Column("withdrawn_by", ID, sa.ForeignKey("accounts.id"), nullable=True),
    one_of("relationship", Relationship),
)

consultations = sa.Table(
    "consultations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("requesting_institution_id", ID, sa.ForeignKey("institutions.id"), nullable=False),
    sa.Column("requested_by", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("department_id", ID, sa.ForeignKey("departments.id"), nullable=False, index=True),
    # The hospital the department belongs to, kept on the row so that visibility
    # for its coordinators and reviewers is one indexed comparison.
    sa.Column(
        "consulted_institution_id", ID, sa.ForeignKey("institutions.id"), nullable=False, index=True
    ),
    sa.Column("target_specialist_id", ID, sa.ForeignKey("accounts.id"), nullable=True),
    sa.Column("assigned_specialist_id", ID, sa.ForeignKey("accounts.id"), nullable=True),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("escalated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("decline_reason", sa.String(500), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    one_of("urgency", Urgency),
    one_of("state", ConsultationState),
)

# Further participants invited into the call (the county hospital's doctor, a
# second specialist): they see the consultation and may join its call.
consultation_invitees = sa.Table(
    "consultation_invitees",
    metadata,
    sa.Column("consultation_id", ID, sa.ForeignKey("consultations.id"), primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("invited_by", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("invited_at", TS, nullable=False),
)

consultation_events = sa.Table(
    "consultation_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("consultation_id", ID, sa.ForeignKey("consultations.id"), nullable=False, index=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor_id", ID, sa.ForeignKey("accounts.id"), nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
    one_of("kind", EventKind),
)

opinions = sa.Table(
    "opinions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("consultation_id", ID, sa.ForeignKey("consultations.id"), nullable=False),
    sa.Column("author_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    # An addendum names the signed document it adds to.
    sa.Column("parent_id", ID, sa.ForeignKey("opinions.id"), nullable=True),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("signed_at", TS, nullable=False),
    # SHA-256 of the canonical JSON of the body: signing freezes the text.
    sa.Column("sha256", sa.String(64), nullable=False),
    one_of("kind", OpinionKind),
)

# One row per recorded participant leg (a participant who reconnects gets a
# numbered follow-on part). The file lives under the data directory; its SHA-256
# is recorded when it is finished, so an archive copy can be verified.
recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("consultation_id", ID, sa.ForeignKey("consultations.id"), nullable=False, index=True),
    sa.Column("participant_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("path", sa.String(500), nullable=False, unique=True),
    sa.Column("container", sa.String(8), nullable=False),
    sa.Column("video_codec", sa.String(16), nullable=True),
    sa.Column("audio_codec", sa.String(16), nullable=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("offset_ms", sa.Integer, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("retain_until", TS, nullable=True),
    sa.UniqueConstraint("consultation_id", "participant_id", "part", name="uq_recordings_part"),
    one_of("status", RecordingStatus),
)

# One row per pre-call check a participant ran before the call (camera,
# microphone, speaker, the network path to this server and its TURN). ``report``
# holds the figures as measured (resolution, frame rate, uplink, loss, round
# trip per path) and the reasons for the verdict; rows are never changed.
precall_checks = sa.Table(
    "precall_checks",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("consultation_id", ID, sa.ForeignKey("consultations.id"), nullable=False, index=True),
    sa.Column("participant_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("checked_at", TS, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    one_of("verdict", PrecallVerdict),
)

# Attachment contents, stored once per SHA-256 under the data directory
# (files/<aa>/<bb>/<sha256>); a document row points at its blob.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("stored_at", TS, nullable=False),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("consultation_id", ID, sa.ForeignKey("consultations.id"), nullable=True, index=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("pages", sa.Integer, nullable=True),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("preview_sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=True),
    sa.Column("uploaded_by", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("uploaded_at", TS, nullable=False),
    one_of("kind", DocumentKind),
)

# The structured summary of a patient, fed by a county EMR's FHIR R4 Bundle
# (Condition, MedicationStatement, AllergyIntolerance, Observation). ``source``
# keeps the FHIR resource id so that a re-import updates instead of duplicating.
conditions = sa.Table(
    "conditions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("display", sa.String(300), nullable=False),
    sa.Column("clinical_status", sa.String(32), nullable=True),
    sa.Column("onset", sa.String(32), nullable=True),
    sa.Column("verification_status", sa.String(32), nullable=True),
    sa.Column("recorded_at", TS, nullable=False),
)

medications = sa.Table(
    "medications",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("display", sa.String(300), nullable=False),
    sa.Column("dosage", sa.String(500), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("recorded_at", TS, nullable=False),
)

allergies = sa.Table(
    "allergies",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("display", sa.String(300), nullable=False),
    sa.Column("criticality", sa.String(32), nullable=True),
    sa.Column("reaction", sa.String(300), nullable=True),
    sa.Column("recorded_at", TS, nullable=False),
    sa.Column("clinical_status", sa.String(32), nullable=True),
    sa.Column("verification_status", sa.String(32), nullable=True),
)

observations = sa.Table(
    "observations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("display", sa.String(300), nullable=False),
    sa.Column("value_number", sa.Float, nullable=True),
    sa.Column("value_text", sa.String(300), nullable=True),
    sa.Column("unit", sa.String(32), nullable=True),
    sa.Column("ref_low", sa.Float, nullable=True),
    sa.Column("ref_high", sa.Float, nullable=True),
    sa.Column("effective_at", TS, nullable=True),
    sa.Column("recorded_at", TS, nullable=False),
    sa.Column("status", sa.String(32), nullable=True),
)


immunizations = sa.Table(
    "immunizations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("display", sa.String(300), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("occurred", sa.String(32), nullable=True),
    sa.Column("recorded_at", TS, nullable=False),
)

procedures = sa.Table(
    "procedures",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("code", sa.String(64), nullable=True),
    sa.Column("display", sa.String(300), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("performed", sa.String(32), nullable=True),
    sa.Column("recorded_at", TS, nullable=False),
)

roster = sa.Table(
    "roster",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("department_id", ID, sa.ForeignKey("departments.id"), nullable=False, index=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("created_by", ID, sa.ForeignKey("accounts.id"), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor_id", ID, nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(64), nullable=True),
    sa.Column("client_addr", sa.String(64), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# One row: the sequence number and hash of the newest audit entry. Appending locks
# it (serializing writers on PostgreSQL) and verification compares the chain's end
# with it, so that removing the newest entries is detected too.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
