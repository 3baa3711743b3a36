"""Storage functions: all SQL of the product lives in this package, ``audit.py``,
``documents.py`` and ``summary.py``.

Every function is synchronous and takes a connection inside
``Database.run_write`` (or ``run_read``); the caller owns the transaction, so a
state change, its timeline event and its audit entry commit together or not at
all. The modules split the store by noun; callers use ``records.store.<name>``.
"""

from __future__ import annotations

from records.store.base import (
    first_row,
    new_id,
)
from records.store.consultations import (
    add_consultation,
    add_event,
    add_invitee,
    add_opinion,
    add_roster_entry,
    change_state,
    delete_roster_entry,
    get_consultation,
    get_roster_entry,
    list_consultations,
    list_events,
    list_opinions,
    list_roster,
    lock_consultation,
    open_without_event,
    overdue_requests,
    set_consultation,
)
from records.store.directory import (
    add_account,
    add_department,
    add_institution,
    add_session,
    clear_login_failures,
    count_login_failure,
    get_account,
    get_accounts,
    get_department,
    get_institution,
    get_login,
    get_session,
    list_accounts,
    list_departments,
    list_institutions,
    login_locked_until,
    revoke_sessions,
    set_password_hash,
)
from records.store.patients import (
    active_consent,
    add_consent,
    add_patient,
    get_consent,
    get_patient,
    get_patients,
    list_consents,
    list_patients,
    withdraw_consent,
)
from records.store.precall import (
    add_precall_check,
    latest_precall_checks,
)
from records.store.recordings import (
    add_recording,
    find_recorded_consultations,
    get_recording,
    list_recordings,
    next_recording_part,
    recording_by_path,
    update_recording,
)
from records.store.stats import (
    ConsultationFacts,
    consultation_facts,
)
from records.store.supervision import (
    count_requested,
    supervision_sources,
)

__all__ = [
    "ConsultationFacts",
    "active_consent",
    "add_account",
    "add_consent",
    "add_consultation",
    "add_department",
    "add_event",
    "add_institution",
    "add_invitee",
    "add_opinion",
    "add_patient",
    "add_precall_check",
    "add_recording",
    "add_roster_entry",
    "add_session",
    "change_state",
    "clear_login_failures",
    "consultation_facts",
    "count_login_failure",
    "count_requested",
    "delete_roster_entry",
    "find_recorded_consultations",
    "first_row",
    "get_account",
    "get_accounts",
    "get_consent",
    "get_consultation",
    "get_department",
    "get_institution",
    "get_login",
    "get_patient",
    "get_patients",
    "get_recording",
    "get_roster_entry",
    "get_session",
    "latest_precall_checks",
    "list_accounts",
    "list_consents",
    "list_consultations",
    "list_departments",
    "list_events",
    "list_institutions",
    "list_opinions",
    "list_patients",
    "list_recordings",
    "list_roster",
    "lock_consultation",
    "login_locked_until",
    "new_id",
    "next_recording_part",
    "open_without_event",
    "overdue_requests",
    "recording_by_path",
    "revoke_sessions",
    "set_consultation",
    "set_password_hash",
    "supervision_sources",
    "update_recording",
    "withdraw_consent",
]
