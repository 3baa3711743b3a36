"""The rules of an account, shared by administration and staff lists.

What an administrator says about a person (``AccountFields``), what an account
may not be (``check_fields``), how a new one is stored with a temporary password
(``insert_account``, ``temporary_password``), and how a staff list is checked
against the directory before anyone is stored (``check_staff_file``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from records import staff_import, store
from records.models import Account
from records.vocab import ErrorCode, Role
from signaling.errors import Invalid
from signaling.workflow.base import Tx

# No 0/O, 1/l/I: read aloud over the phone or copied from a screen by hand.
_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TEMPORARY_LENGTH = 12
# A temporary password is ~70 random bits, so a cheap hash of it cannot be
# brute-forced in its lifetime; the configured cost (0.65 s per hash measured on
# these machines) would make a staff list of 200 take over a minute. Its first
# use is a login, which rehashes it at the configured cost, and the password is
# replaced straight after.
TEMPORARY_HASHING = {"time_cost": 1, "memory_kib": 8192, "parallelism": 1}


def temporary_password() -> str:
    """A random one-time password (about 70 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(TEMPORARY_LENGTH))


@dataclass(frozen=True, kw_only=True)
class AccountFields:
    """What an administrator says about a person (all but the username may change)."""

    display_name: str
    role: str
    title: str | None = None
    licence_no: str | None = None
    practice_start: date | None = None
    phone: str | None = None
    department_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Issued:
    """An account and its temporary password (shown once, never stored in clear)."""

    account: Account
    password: str


@dataclass(frozen=True, kw_only=True)
class ImportResult:
    """A checked staff list: the valid rows, every problem, and what was stored."""

    rows: list[staff_import.StaffRow]
    problems: list[staff_import.Problem]
    issued: list[Issued]
    # Every row of the file as read (valid or not), for the preview to show.
    cells: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem in any row."""
        return not self.problems and bool(self.rows)


def check_fields(conn: sa.Connection, institution_id: str, fields: AccountFields) -> None:
    """Refuse what an account may not be: departments of another institution, a
    doctor without licence or practice start, a specialist with no department."""
    Role(fields.role)  # the API and the CLI validate it; a guard for other callers
    for did in fields.department_ids:
        department = store.get_department(conn, did)
        if department is None or department.institution_id != institution_id:
            raise Invalid(
                "a department of another institution",
                code=ErrorCode.UNKNOWN_DEPARTMENT,
                fields=("department_ids",),
            )
    if fields.role in staff_import.DOCTORS:
        missing = [
            name
            for name, value in (
                ("licence_no", fields.licence_no),
                ("practice_start", fields.practice_start),
            )
            if not value
        ]
        if missing:
            raise Invalid(
                "doctors need a licence number and a practice-start date", fields=tuple(missing)
            )
    if fields.role == Role.SPECIALIST and not fields.department_ids:
        raise Invalid("a specialist serves at least one department", fields=("department_ids",))


def insert_account(
    tx: Tx, username: str, institution_id: str, fields: AccountFields, hashed: str
) -> str:
    """Store a new account that must change its (temporary) password; its id."""
    return store.add_account(
        tx.conn,
        username=username,
        password_hash=hashed,
        display_name=fields.display_name,
        role=fields.role,
        institution_id=institution_id,
        created_at=tx.now,
        licence_no=fields.licence_no,
        title=fields.title,
        practice_start=fields.practice_start,
        department_ids=fields.department_ids,
        phone=fields.phone,
        must_change_password=True,
    )


def check_staff_file(conn: sa.Connection, data: bytes, *, today: date) -> ImportResult:
    """Read and check a staff list against the directory; nothing is stored."""
    try:
        rows, problems = staff_import.parse(data)
    except staff_import.UnreadableFile as exc:
        return ImportResult(
            rows=[], problems=[staff_import.Problem(0, "", "unreadable", str(exc))], issued=[]
        )
    institutions = {i.name: i.id for i in store.list_institutions(conn)}
    departments = {(d.institution_id, d.code): d.id for d, _ in store.list_departments(conn)}
    taken = store.existing_usernames(conn, [str(r.get("username") or "") for r in rows])
    good, bad = staff_import.check(
        rows,
        institutions=institutions,
        departments=departments,
        taken=taken,
        today=today,
    )
    cells = [{k: v.isoformat() if isinstance(v, date) else v for k, v in r.items()} for r in rows]
    return ImportResult(rows=good, problems=problems + bad, issued=[], cells=cells)
