"""JSON in and out of the REST API: parsing a request body, and the shapes of
the objects the handlers answer with (shared by every ``api*`` module)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from records.models import Account, Consent, Consultation, Event, Institution, Opinion, Patient
from records.vocab import ErrorCode
from signaling import jsonlimits
from signaling.workflow import policy
from signaling.workflow.consultations import Brief
from signaling.workflow.deadlines import Deadline
from web.errors import api_error
from web.keys import (
    CLOCK,
    CONSULTATIONS,
    DIRECTORY,
)

B = TypeVar("B", bound=BaseModel)


# No request body of ours nests deeper than a FHIR Bundle (about a dozen levels).
MAX_BODY_DEPTH = 64
# A NUL escape that is not itself escaped (an even run of backslashes before it).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def check_json_body(raw: bytes) -> None:
    """Refuse, naming the problem, a body that nests too deep or carries NUL.

    The depth is measured without recursion before any parser runs (a parser
    that recurses fails with ``RecursionError``, a 500). PostgreSQL cannot
    store NUL in text; lone surrogates are refused by the parser itself.
    """
    try:
        deep = jsonlimits.deeper_than(raw.decode("utf-8"), MAX_BODY_DEPTH)
    except UnicodeDecodeError:
        raise api_error(ErrorCode.INVALID_JSON, "the request body is not UTF-8") from None
    if deep:
        raise api_error(
            ErrorCode.INVALID_JSON, f"the request body nests deeper than {MAX_BODY_DEPTH} levels"
        )
    if _NUL_ESCAPE.search(raw):
        raise api_error(ErrorCode.INVALID_JSON, "the request body holds a NUL character")


async def body(request: web.Request, model: type[B]) -> B:
    """Parse and validate a JSON body (415 if it is not JSON, 400 naming bad fields)."""
    if request.content_type != "application/json":
        raise api_error(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    raw = await request.read()
    check_json_body(raw)
    return model.model_validate_json(raw, strict=True)


def iso(value: Any) -> str | None:
    """ISO 8601 for dates and times (None stays None)."""
    return None if value is None else value.isoformat()


def age(birth: date, today: date) -> int:
    """Whole years between ``birth`` and ``today``."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


# -- serializers ------------------------------------------------------------------


class Directory:
    """Names of institutions and departments for one response (two small queries)."""

    def __init__(self, institutions: list[Institution], departments: dict[str, Any]) -> None:
        self.institutions = {i.id: i for i in institutions}
        self.departments = departments

    @classmethod
    async def load(cls, request: web.Request) -> Directory:
        """Read the directory."""
        directory = request.app[DIRECTORY]
        institutions = await directory.institutions()
        departments = {d.id: d for d, _ in await directory.all_departments()}
        return cls(institutions, departments)

    def institution(self, institution_id: str) -> dict[str, Any]:
        """An institution reference."""
        i = self.institutions[institution_id]
        return {"id": i.id, "name": i.name, "kind": i.kind}

    def department(self, department_id: str) -> dict[str, Any]:
        """A department reference."""
        d = self.departments[department_id]
        return {"id": d.id, "name": d.name, "code": d.code}


def account_json(account: Account, directory: Directory, today: date) -> dict[str, Any]:
    """An account as the API shows it (never the password hash)."""
    return {
        "id": account.id,
        "username": account.username,
        "display_name": account.display_name,
        "role": account.role,
        "institution": directory.institution(account.institution_id),
        "title": account.title,
        "licence_no": account.licence_no,
        "practice_years": int(account.years_of_practice(today)),
        "eligible": account.role == "specialist" and policy.may_practise_remotely(account, today),
        "department_ids": sorted(account.department_ids),
        # Whether only the password change is open (not "password" in the name: no
        # answer outside administration carries that word; tests/web/test_auth.py).
        "temporary_credentials": account.must_change_password,
    }


def person_ref(account: Account | None) -> dict[str, Any] | None:
    """A short reference to a staff member."""
    if account is None:
        return None
    return {"id": account.id, "display_name": account.display_name, "title": account.title}


def consent_json(consent: Consent | None) -> dict[str, Any] | None:
    """A consent record."""
    if consent is None:
        return None
    return {
        "id": consent.id,
        "scope_consultation": consent.scope_consultation,
        "scope_recording": consent.scope_recording,
        "given_by": consent.given_by,
        "relationship": consent.relationship,
        "given_at": iso(consent.given_at),
        "withdrawn_at": iso(consent.withdrawn_at),
    }


def patient_json(patient: Patient, today: date, consent: Consent | None = None) -> dict[str, Any]:
    """A patient; the ID number is masked (the full number never leaves the server)."""
    return {
        "id": patient.id,
        "name": patient.name,
        "sex": patient.sex,
        "birth_date": iso(patient.birth_date),
        "age": age(patient.birth_date, today),
        "national_id_masked": patient.national_id_masked,
        "phone": patient.phone,
        "consent": consent_json(consent),
    }


def summary_json(brief: Brief, directory: Directory, today: date) -> dict[str, Any]:
    """A consultation in lists: no patient name, only sex and age."""
    c = brief.consultation
    return {
        "id": c.id,
        "state": c.state,
        "urgency": c.urgency,
        "escalated": c.escalated,
        "reason": c.reason,
        "question": c.question,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
        "department": directory.department(c.department_id),
        "consulted_institution": directory.institution(c.consulted_institution_id),
        "requesting_institution": directory.institution(c.requesting_institution_id),
        "patient": {"sex": brief.patient.sex, "age": age(brief.patient.birth_date, today)},
        "assigned_specialist": person_ref(brief.assigned_specialist),
        "target_specialist_id": c.target_specialist_id,
        "decline_reason": c.decline_reason,
        **deadline_json(brief.deadline),
    }


def deadline_json(deadline: Deadline | None) -> dict[str, Any]:
    """The consultation's clock (computed with the server's clock): which deadline
    it runs against (``accept`` or ``complete``; null once closed), when it falls
    due, the seconds left (negative once passed) and whether it is overdue."""
    if deadline is None:
        return {
            "deadline_kind": None,
            "deadline_at": None,
            "deadline_seconds_left": None,
            "overdue": False,
        }
    return {
        "deadline_kind": deadline.kind.value,
        "deadline_at": iso(deadline.due_at),
        "deadline_seconds_left": deadline.seconds_left,
        "overdue": deadline.overdue,
    }


def event_json(event: Event, people: dict[str, Account]) -> dict[str, Any]:
    """A timeline event."""
    return {
        "id": event.id,
        "at": iso(event.at),
        "kind": event.kind,
        "actor": person_ref(people.get(event.actor_id)) if event.actor_id else None,
        "data": event.data,
    }


def opinion_json(opinion: Opinion, people: dict[str, Account]) -> dict[str, Any]:
    """A signed opinion, referral or addendum."""
    return {
        "id": opinion.id,
        "kind": opinion.kind,
        "parent_id": opinion.parent_id,
        "author": person_ref(people.get(opinion.author_id)),
        "body": opinion.body,
        "signed_at": iso(opinion.signed_at),
        "sha256": opinion.sha256,
    }


async def consultation_out(request: web.Request, c: Consultation) -> dict[str, Any]:
    """``{"consultation": summary}`` for a consultation the caller just acted on."""
    brief = await request.app[CONSULTATIONS].brief(c)
    directory = await Directory.load(request)
    return {"consultation": summary_json(brief, directory, request.app[CLOCK].now().date())}
