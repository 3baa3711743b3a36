"""Who may see and do what: the visibility rules in one place.

The workflow services, the push hub, the call plane and the page frames all ask
these functions, so that a rule cannot be enforced in one place and forgotten in
another.
"""

from __future__ import annotations

from datetime import date

from records.models import Account, Consultation, Patient
from records.vocab import Role

MIN_PRACTICE_YEARS = 3
# Township clinic, county hospital and one or two specialists (a mesh call).
MAX_PARTICIPANTS = 4
HOSPITAL_ROLES = frozenset({Role.COORDINATOR, Role.REVIEWER})


def can_see(account: Account, consultation: Consultation) -> bool:
    """Whether ``account`` may know that ``consultation`` exists."""
    if not account.active:
        return False
    if account.id in consultation.invitee_ids:
        return True
    if account.role == Role.CLINIC_DOCTOR:
        return consultation.requesting_institution_id == account.institution_id
    if account.role == Role.SPECIALIST:
        return (
            consultation.department_id in account.department_ids
            or consultation.assigned_specialist_id == account.id
        ) and consultation.consulted_institution_id == account.institution_id
    if account.role in HOSPITAL_ROLES:
        return consultation.consulted_institution_id == account.institution_id
    return False


def is_participant(account: Account, consultation: Consultation) -> bool:
    """The requesting clinic's doctors, the assigned specialist and invitees take part."""
    if account.id in consultation.invitee_ids:
        return True
    if account.role == Role.CLINIC_DOCTOR:
        return consultation.requesting_institution_id == account.institution_id
    return account.id == consultation.assigned_specialist_id


def may_practise_remotely(account: Account, today: date) -> bool:
    """At least three years of independent practice (remote medical service rules)."""
    return account.years_of_practice(today) >= MIN_PRACTICE_YEARS


def can_replay(account: Account, consultation: Consultation) -> bool:
    """Reviewers and administrators of the consulted hospital, and the participants."""
    if not account.active:
        return False
    if account.role in (Role.REVIEWER, Role.ADMIN):
        return consultation.consulted_institution_id == account.institution_id
    return is_participant(account, consultation)


def can_see_document(account: Account, patient: Patient, consultation: Consultation | None) -> bool:
    """A patient's document: their clinic's doctors, and whoever may see the
    consultation it is attached to (specialists, coordinators, invitees)."""
    if not account.active:
        return False
    if account.role == Role.CLINIC_DOCTOR and patient.institution_id == account.institution_id:
        return True
    return consultation is not None and can_see(account, consultation)
