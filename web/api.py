"""JSON REST API handlers (one line of docstring each; the rules live in signaling/)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from records.models import Account
from records.vocab import ConsultationState, ErrorCode
from signaling.workflow import policy
from signaling.workflow.auth import Session
from signaling.workflow.consultations import Brief, ConsultationView
from web import schemas
from web.auth import COOKIE, actor, client_addr, set_session_cookie
from web.errors import api_error
from web.keys import (
    AUTH,
    CLOCK,
    CONSULTATIONS,
    DIRECTORY,
    MATCHING,
    OPENAPI,
    OPINIONS,
    PATIENTS,
    SECOND_FACTOR,
    SESSION,
)
from web.openapi import Route, read_only_json
from web.payloads import (
    Directory,
    account_json,
    body,
    consent_json,
    consultation_out,
    event_json,
    iso,
    opinion_json,
    patient_json,
    person_ref,
    summary_json,
)
from web.ws import close_sockets

# -- auth -------------------------------------------------------------------------


async def second_factor_owed(request: web.Request, session: Session) -> str | None:
    """What the session still owes: "enrol" (no second factor yet), "code", or None."""
    if not session.second_factor_pending:
        return None
    enrolled = await request.app[SECOND_FACTOR].enrolled(session.account.id)
    return "code" if enrolled else "enrol"


async def login(request: web.Request) -> web.StreamResponse:
    """Log in with username and password; sets the session cookie."""
    data = await body(request, schemas.LoginIn)
    session = await request.app[AUTH].login(data.username, data.password, client_addr(request))
    directory = await Directory.load(request)
    today = request.app[CLOCK].now().date()
    owed = await second_factor_owed(request, session)
    response = web.json_response(
        {
            "account": account_json(session.account, directory, today),
            "csrf_token": session.csrf_token,
            "second_factor": owed,
        }
    )
    set_session_cookie(request, response, session.token)
    return response


async def whoami(request: web.Request) -> web.StreamResponse:
    """The logged-in account, its CSRF token and whether the second factor is owed."""
    session = request[SESSION]
    directory = await Directory.load(request)
    today = request.app[CLOCK].now().date()
    return web.json_response(
        {
            "account": account_json(session.account, directory, today),
            "csrf_token": session.csrf_token,
            "second_factor": await second_factor_owed(request, session),
        }
    )


async def logout(request: web.Request) -> web.StreamResponse:
    """Log out: the session is revoked on the server and the cookie cleared."""
    session = request[SESSION]
    await request.app[AUTH].logout(session, client_addr(request))
    await close_sockets(request.app, session.token)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


async def change_password(request: web.Request) -> web.StreamResponse:
    """Choose a new password (the current one is asked again); other sessions end."""
    data = await body(request, schemas.PasswordChangeIn)
    session = await request.app[AUTH].change_password(
        request[SESSION], data.current_password, data.new_password, client_addr(request)
    )
    directory = await Directory.load(request)
    today = request.app[CLOCK].now().date()
    return web.json_response(
        {
            "account": account_json(session.account, directory, today),
            "csrf_token": session.csrf_token,
        }
    )


async def health(request: web.Request) -> web.StreamResponse:
    """Liveness probe."""
    return web.json_response({"status": "ok"})


# -- directory --------------------------------------------------------------------


async def departments(request: web.Request) -> web.StreamResponse:
    """Departments that take requests (a clinic: those of hospitals it may ask)."""
    items = await request.app[DIRECTORY].askable(actor(request))
    return web.json_response(
        {
            "departments": [
                {
                    "id": d.id,
                    "code": d.code,
                    "name": d.name,
                    "institution": {"id": i.id, "name": i.name},
                }
                for d, i in items
            ]
        }
    )


async def institutions(request: web.Request) -> web.StreamResponse:
    """Institutions of the medical community (names and kinds, for filters)."""
    items = await request.app[DIRECTORY].institutions()
    return web.json_response(
        {"institutions": [{"id": i.id, "name": i.name, "kind": i.kind} for i in items]}
    )


async def department_specialists(request: web.Request) -> web.StreamResponse:
    """Specialists serving a department, with eligibility and who is on duty now."""
    directory = request.app[DIRECTORY]
    department_id = request.match_info["department_id"]
    await directory.department(actor(request), department_id)
    today = request.app[CLOCK].now().date()
    on_duty = set(await request.app[MATCHING].on_duty(department_id))
    return web.json_response(
        {
            "specialists": [
                {
                    "id": a.id,
                    "display_name": a.display_name,
                    "title": a.title,
                    "practice_years": int(a.years_of_practice(today)),
                    "eligible": policy.may_practise_remotely(a, today),
                    "on_duty": a.id in on_duty,
                }
                for a in await directory.specialists(department_id)
            ]
        }
    )


# -- patients ---------------------------------------------------------------------


async def list_patients(request: web.Request) -> web.StreamResponse:
    """The clinic's patients with their current consent."""
    patients = request.app[PATIENTS]
    today = request.app[CLOCK].now().date()
    items = await patients.list_patients(actor(request))
    consents = await patients.active_consents(actor(request), [p.id for p in items])
    return web.json_response(
        {"patients": [patient_json(p, today, consents.get(p.id)) for p in items]}
    )


async def create_patient(request: web.Request) -> web.StreamResponse:
    """Register a patient at the clinic."""
    data = await body(request, schemas.PatientIn)
    today = request.app[CLOCK].now().date()
    if data.birth_date > today:
        raise api_error(ErrorCode.INVALID_FIELDS, "the birth date is in the future", ["birth_date"])
    patient = await request.app[PATIENTS].register(actor(request), **data.model_dump())
    return web.json_response({"patient": patient_json(patient, today)}, status=201)


async def get_patient(request: web.Request) -> web.StreamResponse:
    """One patient with every consent (including withdrawn ones)."""
    patient, consents = await request.app[PATIENTS].get(
        actor(request), request.match_info["patient_id"]
    )
    active = next((c for c in consents if c.withdrawn_at is None), None)
    today = request.app[CLOCK].now().date()
    return web.json_response(
        {
            "patient": patient_json(patient, today, active),
            "consents": [consent_json(c) for c in consents],
        }
    )


async def create_consent(request: web.Request) -> web.StreamResponse:
    """Record the patient's informed consent."""
    data = await body(request, schemas.ConsentIn)
    consent = await request.app[PATIENTS].record_consent(
        actor(request), request.match_info["patient_id"], **data.model_dump()
    )
    return web.json_response({"consent": consent_json(consent)}, status=201)


async def withdraw_consent(request: web.Request) -> web.StreamResponse:
    """Withdraw a consent."""
    consent = await request.app[PATIENTS].withdraw_consent(
        actor(request), request.match_info["patient_id"], request.match_info["consent_id"]
    )
    return web.json_response({"consent": consent_json(consent)})


# -- consultations ----------------------------------------------------------------


async def list_consultations(request: web.Request) -> web.StreamResponse:
    """Consultations the caller may see, newest first."""
    states = request.query.getall("state", []) or None
    briefs = await request.app[CONSULTATIONS].list_for(actor(request), states=states)
    directory = await Directory.load(request)
    today = request.app[CLOCK].now().date()
    return web.json_response({"consultations": [summary_json(b, directory, today) for b in briefs]})


async def queue(request: web.Request) -> web.StreamResponse:
    """Waiting requests of the caller's departments, by urgency then age."""
    briefs = await request.app[CONSULTATIONS].queue(actor(request))
    directory = await Directory.load(request)
    today = request.app[CLOCK].now().date()
    return web.json_response({"consultations": [summary_json(b, directory, today) for b in briefs]})


async def create_consultation(request: web.Request) -> web.StreamResponse:
    """Request a consultation from a department of a specialist hospital."""
    data = await body(request, schemas.ConsultationIn)
    c = await request.app[CONSULTATIONS].request(actor(request), **data.model_dump())
    return web.json_response(await consultation_out(request, c), status=201)


async def get_consultation(request: web.Request) -> web.StreamResponse:
    """One consultation with its patient, consent, timeline and signed documents."""
    view: ConsultationView = await request.app[CONSULTATIONS].view(
        actor(request), request.match_info["consultation_id"]
    )
    directory = await Directory.load(request)
    today = request.app[CLOCK].now().date()
    people = await request.app[DIRECTORY].people(
        [e.actor_id for e in view.events if e.actor_id] + [o.author_id for o in view.opinions]
    )
    out = summary_json(
        Brief(
            consultation=view.consultation,
            patient=view.patient,
            assigned_specialist=view.assigned_specialist,
            deadline=view.deadline,
        ),
        directory,
        today,
    )
    out.update(
        patient=patient_json(view.patient, today, view.consent),
        consent=consent_json(view.consent),
        requested_by=person_ref(view.requested_by),
        events=[event_json(e, people) for e in view.events],
        opinions=[opinion_json(o, people) for o in view.opinions],
    )
    return web.json_response({"consultation": out})


async def accept(request: web.Request) -> web.StreamResponse:
    """Accept a waiting request (specialists with at least 3 years of practice)."""
    c = await request.app[MATCHING].accept(actor(request), request.match_info["consultation_id"])
    return web.json_response(await consultation_out(request, c))


async def decline(request: web.Request) -> web.StreamResponse:
    """Decline a waiting request with a reason."""
    data = await body(request, schemas.ReasonIn)
    c = await request.app[MATCHING].decline(
        actor(request), request.match_info["consultation_id"], data.reason
    )
    return web.json_response(await consultation_out(request, c))


async def assign(request: web.Request) -> web.StreamResponse:
    """Assign or reassign a consultation to a specialist (coordinators)."""
    data = await body(request, schemas.AssignIn)
    c = await request.app[MATCHING].assign(
        actor(request), request.match_info["consultation_id"], data.specialist_id
    )
    return web.json_response(await consultation_out(request, c))


async def cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a request before the call (the requesting clinic)."""
    data = await body(request, schemas.ReasonIn)
    c = await request.app[CONSULTATIONS].cancel(
        actor(request), request.match_info["consultation_id"], data.reason
    )
    return web.json_response(await consultation_out(request, c))


async def start(request: web.Request) -> web.StreamResponse:
    """Start the call (needs the patient's consent)."""
    c = await request.app[CONSULTATIONS].go_live(
        actor(request), request.match_info["consultation_id"]
    )
    return web.json_response(await consultation_out(request, c))


async def end(request: web.Request) -> web.StreamResponse:
    """End the call."""
    c = await request.app[CONSULTATIONS].end(actor(request), request.match_info["consultation_id"])
    return web.json_response(await consultation_out(request, c))


async def sign_opinion(request: web.Request) -> web.StreamResponse:
    """Sign the consultation opinion (the assigned specialist, after the call)."""
    data = await body(request, schemas.OpinionIn)
    opinion = await request.app[OPINIONS].sign(
        actor(request),
        request.match_info["consultation_id"],
        kind="opinion",
        body=data.model_dump(),
    )
    people = await request.app[DIRECTORY].people([opinion.author_id])
    return web.json_response({"opinion": opinion_json(opinion, people)}, status=201)


async def refer(request: web.Request) -> web.StreamResponse:
    """End with a referral to an in-person visit instead of an opinion."""
    data = await body(request, schemas.ReferralIn)
    opinion = await request.app[OPINIONS].sign(
        actor(request),
        request.match_info["consultation_id"],
        kind="referral",
        body=data.model_dump(),
    )
    people = await request.app[DIRECTORY].people([opinion.author_id])
    return web.json_response({"opinion": opinion_json(opinion, people)}, status=201)


async def invite(request: web.Request) -> web.StreamResponse:
    """Invite another doctor into the call (up to four participants)."""
    data = await body(request, schemas.InviteIn)
    c = await request.app[CONSULTATIONS].invite(
        actor(request), request.match_info["consultation_id"], data.username
    )
    return web.json_response(await consultation_out(request, c), status=201)


async def timeline(request: web.Request) -> web.StreamResponse:
    """The consultation's timeline."""
    events = await request.app[CONSULTATIONS].timeline(
        actor(request), request.match_info["consultation_id"]
    )
    people = await request.app[DIRECTORY].people([e.actor_id for e in events if e.actor_id])
    return web.json_response({"events": [event_json(e, people) for e in events]})


# -- roster -----------------------------------------------------------------------


def _roster_json(
    entry: Any, directory: Directory, people: dict[str, Account], now: Any
) -> dict[str, Any]:
    return {
        "id": entry.id,
        "department": directory.department(entry.department_id),
        "specialist": person_ref(people.get(entry.account_id)),
        "starts_at": iso(entry.starts_at),
        "ends_at": iso(entry.ends_at),
        "on_duty_now": entry.starts_at <= now < entry.ends_at,
    }


async def roster(request: web.Request) -> web.StreamResponse:
    """The hospital's current and future duty roster."""
    entries = await request.app[MATCHING].roster(actor(request))
    directory = await Directory.load(request)
    people = await request.app[DIRECTORY].people([e.account_id for e in entries])
    now = request.app[CLOCK].now()
    return web.json_response(
        {"entries": [_roster_json(e, directory, people, now) for e in entries]}
    )


async def add_roster(request: web.Request) -> web.StreamResponse:
    """Put a specialist on duty for a department."""
    data = await body(request, schemas.RosterIn)
    entry = await request.app[MATCHING].add_roster_entry(actor(request), **data.model_dump())
    directory = await Directory.load(request)
    people = await request.app[DIRECTORY].people([entry.account_id])
    now = request.app[CLOCK].now()
    return web.json_response({"entry": _roster_json(entry, directory, people, now)}, status=201)


async def remove_roster(request: web.Request) -> web.StreamResponse:
    """Take an entry off the roster."""
    await request.app[MATCHING].remove_roster_entry(actor(request), request.match_info["entry_id"])
    return web.Response(status=204)


async def openapi(request: web.Request) -> web.StreamResponse:
    """This API's OpenAPI document."""
    return web.json_response(request.app[OPENAPI], dumps=read_only_json)


C = "/api/consultations/{consultation_id}"
ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/session", login, "Log in", schemas.LoginIn, tag="auth", public=True),
    Route("GET", "/api/session", whoami, "Current account", tag="auth"),
    Route("DELETE", "/api/session", logout, "Log out", status=204, tag="auth"),
    Route(
        "POST",
        "/api/session/password",
        change_password,
        "Change my password",
        schemas.PasswordChangeIn,
        tag="auth",
    ),
    Route("GET", "/api/health", health, "Liveness", tag="meta", public=True),
    Route("GET", "/api/openapi.json", openapi, "This document", tag="meta", public=True),
    Route("GET", "/api/departments", departments, "Departments taking requests", tag="directory"),
    Route("GET", "/api/institutions", institutions, "Institutions", tag="directory"),
    Route(
        "GET",
        "/api/departments/{department_id}/specialists",
        department_specialists,
        "Specialists of a department",
        tag="directory",
    ),
    Route("GET", "/api/patients", list_patients, "The clinic's patients", tag="patients"),
    Route(
        "POST",
        "/api/patients",
        create_patient,
        "Register a patient",
        schemas.PatientIn,
        201,
        tag="patients",
    ),
    Route("GET", "/api/patients/{patient_id}", get_patient, "A patient", tag="patients"),
    Route(
        "POST",
        "/api/patients/{patient_id}/consents",
        create_consent,
        "Record consent",
        schemas.ConsentIn,
        201,
        tag="patients",
    ),
    Route(
        "POST",
        "/api/patients/{patient_id}/consents/{consent_id}/withdraw",
        withdraw_consent,
        "Withdraw consent",
        tag="patients",
    ),
    Route(
        "GET",
        "/api/consultations",
        list_consultations,
        "Visible consultations",
        query=(("state", {"type": "string", "enum": [s.value for s in ConsultationState]}),),
    ),
    Route(
        "POST",
        "/api/consultations",
        create_consultation,
        "Request a consultation",
        schemas.ConsultationIn,
        201,
    ),
    Route("GET", "/api/queue", queue, "Waiting requests of my departments"),
    Route("GET", C, get_consultation, "A consultation"),
    Route("POST", C + "/accept", accept, "Accept"),
    Route("POST", C + "/decline", decline, "Decline", schemas.ReasonIn),
    Route("POST", C + "/assign", assign, "Assign or reassign", schemas.AssignIn),
    Route("POST", C + "/cancel", cancel, "Cancel", schemas.ReasonIn),
    Route("POST", C + "/start", start, "Start the call"),
    Route("POST", C + "/end", end, "End the call"),
    Route("POST", C + "/opinion", sign_opinion, "Sign the opinion", schemas.OpinionIn, 201),
    Route("POST", C + "/referral", refer, "Refer to an in-person visit", schemas.ReferralIn, 201),
    Route("GET", C + "/timeline", timeline, "Timeline"),
    Route(
        "POST", C + "/participants", invite, "Invite a doctor into the call", schemas.InviteIn, 201
    ),
    Route("GET", "/api/roster", roster, "Duty roster", tag="roster"),
    Route("POST", "/api/roster", add_roster, "Add a duty", schemas.RosterIn, 201, tag="roster"),
    Route(
        "DELETE", "/api/roster/{entry_id}", remove_roster, "Remove a duty", status=204, tag="roster"
    ),
)
