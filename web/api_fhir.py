"""API of the shared record: the structured summary, FHIR import and export, addenda."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from records.fhir_common import RESIDENT_ID_SYSTEM
from records.summary import ObservationRow, Summary, split_code
from records.vocab import ErrorCode
from signaling.workflow.summary import ImportResult
from web import schemas
from web.api_report import base_url
from web.auth import actor
from web.errors import api_error
from web.fhir_client import fetch_everything
from web.keys import DIRECTORY, OPINIONS, SETTINGS, SUMMARY
from web.openapi import Route
from web.payloads import body, iso, opinion_json

FHIR_JSON = "application/fhir+json"
FHIR_XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml")


def _coded(stored: str | None) -> dict[str, Any]:
    system, code = split_code(stored)
    return {"code": code, "system": system}


def observation_json(obs: ObservationRow) -> dict[str, Any]:
    """A vital sign or lab result with its range and flag (``L``/``H``/None)."""
    return {
        "id": obs.id,
        "status": obs.status or "final",
        "category": obs.category,
        **_coded(obs.code),
        "display": obs.display,
        "value": obs.value_number if obs.value_number is not None else obs.value_text,
        "unit": obs.unit,
        "range": (
            {"low": obs.ref_low, "high": obs.ref_high}
            if obs.ref_low is not None or obs.ref_high is not None
            else None
        ),
        "flag": obs.flag,
        "effective_at": iso(obs.effective_at),
        "source": obs.source,
    }


def _condition_code(stored: str) -> dict[str, Any]:
    system, code = split_code(stored)
    # A bare code is ICD-10, as diagnoses were always stored.
    return {"code": code or None, "system": system or ("ICD-10" if code else None)}


def summary_json(full: Summary) -> dict[str, Any]:
    """A patient's structured summary: only what may be shown as facts, and how many
    entries of each section their source withdrew (entered in error, refuted,
    cancelled), which are counted but never listed."""
    s = full.shown()
    return {
        "withdrawn": full.withdrawn_counts(),
        "conditions": [
            {
                "id": c.id,
                **_condition_code(c.code),
                "display": c.display,
                "clinical_status": c.clinical_status,
                "verification_status": c.verification_status,
                "onset": c.onset,
                "source": c.source,
            }
            for c in s.conditions
        ],
        "medications": [
            {
                "id": m.id,
                **_coded(m.code),
                "display": m.display,
                "dosage": m.dosage,
                "status": m.status,
                "source": m.source,
            }
            for m in s.medications
        ],
        "allergies": [
            {
                "id": a.id,
                **_coded(a.code),
                "display": a.display,
                "criticality": a.criticality,
                "reaction": a.reaction,
                "clinical_status": a.clinical_status,
                "verification_status": a.verification_status,
                "source": a.source,
            }
            for a in s.allergies
        ],
        "vitals": [observation_json(o) for o in s.vitals],
        "labs": [observation_json(o) for o in s.labs],
        "other": [observation_json(o) for o in s.other_observations],
        "immunizations": [
            {
                "id": i.id,
                **_coded(i.code),
                "display": i.display,
                "status": i.status,
                "occurred": i.occurred,
                "source": i.source,
            }
            for i in s.immunizations
        ],
        "procedures": [
            {
                "id": p.id,
                **_coded(p.code),
                "display": p.display,
                "status": p.status,
                "performed": p.performed,
                "source": p.source,
            }
            for p in s.procedures
        ],
    }


async def import_fhir(request: web.Request) -> web.StreamResponse:
    """Import a FHIR R4 Bundle from the county EMR into a patient's summary."""
    xml = request.content_type in FHIR_XML_TYPES
    if request.content_type not in ("application/json", FHIR_JSON) and not xml:
        raise api_error(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"send the Bundle as {FHIR_JSON} (or application/json) or as application/fhir+xml",
        )
    # Read in chunks up to the configured size (published Bundles run to several
    # MiB, beyond the API's usual body limit); parsed by the service only once
    # the patient is known to be the caller's, so that a stranger's body,
    # however hostile, is never looked at.
    limit = request.app[SETTINGS].fhir_import_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise api_error(ErrorCode.TOO_LARGE, f"the Bundle is larger than {limit} bytes")
    buf = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise api_error(ErrorCode.TOO_LARGE, f"the Bundle is larger than {limit} bytes")
    raw = bytes(buf)
    patient_id = request.match_info["patient_id"]
    service = request.app[SUMMARY]
    result = await service.import_bundle(actor(request), patient_id, raw, xml=xml)
    summary = await service.patient_summary(actor(request), patient_id)
    return web.json_response({"imported": imported_json(result), "summary": summary_json(summary)})


def imported_json(result: ImportResult) -> dict[str, Any]:
    """What an import stored, updated, kept aside and left out (by path)."""
    return {
        "bundle_type": result.bundle_type,
        "created": result.created,
        "updated": result.updated,
        "left_out": [{"path": p.path, "message": p.message} for p in result.problems],
        "not_used": result.not_used,
        "no_information": result.no_information,
    }


async def fetch_fhir(request: web.Request) -> web.StreamResponse:
    """Fetch a patient's records from the hospital's FHIR server and import them."""
    data = await body(request, schemas.FhirFetchIn)
    settings = request.app[SETTINGS]
    patient_id = request.match_info["patient_id"]
    service = request.app[SUMMARY]
    # The patient is checked before anything is asked of the server.
    national_id = await service.resident_id(actor(request), patient_id)
    if not settings.fhir_server_url:
        # Not a failure of the server (a 5xx): there is none to ask.
        raise api_error(ErrorCode.NOT_FOUND, "no FHIR server is configured", ["fhir_server_url"])
    identifier = data.identifier or f"{RESIDENT_ID_SYSTEM}|{national_id}"
    bundle = await fetch_everything(
        settings.fhir_server_url, identifier, limit=settings.fhir_import_max_bytes
    )
    result = await service.import_bundle(actor(request), patient_id, bundle)
    summary = await service.patient_summary(actor(request), patient_id)
    return web.json_response({"imported": imported_json(result), "summary": summary_json(summary)})


async def patient_summary(request: web.Request) -> web.StreamResponse:
    """A patient's structured summary (diagnoses, medications, allergies, vitals, labs)."""
    summary = await request.app[SUMMARY].patient_summary(
        actor(request), request.match_info["patient_id"]
    )
    return web.json_response({"summary": summary_json(summary)})


async def consultation_summary(request: web.Request) -> web.StreamResponse:
    """The structured summary of a consultation's patient."""
    summary = await request.app[SUMMARY].consultation_summary(
        actor(request), request.match_info["consultation_id"]
    )
    return web.json_response({"summary": summary_json(summary)})


async def export_fhir(request: web.Request) -> web.StreamResponse:
    """The consultation as an HL7 FHIR R4 Bundle (``?type=document`` for a document)."""
    kind = request.query.get("type", "collection")
    if kind not in ("collection", "document"):
        raise api_error(ErrorCode.INVALID, "type is collection or document", ["type"])
    bundle = await request.app[SUMMARY].export(
        actor(request),
        request.match_info["consultation_id"],
        base_url=base_url(request),
        document=kind == "document",
    )
    return web.json_response(
        bundle, content_type=FHIR_JSON, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )


async def add_addendum(request: web.Request) -> web.StreamResponse:
    """Add a signed addendum to a signed opinion or referral (its author only)."""
    data = await body(request, schemas.AddendumIn)
    opinion = await request.app[OPINIONS].addendum(
        actor(request),
        request.match_info["consultation_id"],
        request.match_info["opinion_id"],
        data.model_dump(),
    )
    people = await request.app[DIRECTORY].people([opinion.author_id])
    return web.json_response({"opinion": opinion_json(opinion, people)}, status=201)


C = "/api/consultations/{consultation_id}"
ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/patients/{patient_id}/fhir",
        import_fhir,
        "Import a FHIR R4 Bundle into the patient's summary",
        tag="records",
        raw_body=("application/fhir+json", {"type": "object"}),  # or application/fhir+xml
    ),
    Route(
        "POST",
        "/api/patients/{patient_id}/fhir/fetch",
        fetch_fhir,
        "Fetch the patient's records from the hospital's FHIR server and import them",
        schemas.FhirFetchIn,
        tag="records",
    ),
    Route(
        "GET",
        "/api/patients/{patient_id}/summary",
        patient_summary,
        "The patient's structured summary",
        tag="records",
    ),
    Route("GET", C + "/summary", consultation_summary, "The patient's summary", tag="records"),
    Route(
        "GET",
        C + "/fhir",
        export_fhir,
        "Export as a FHIR R4 Bundle (a collection, or a document with a Composition)",
        tag="records",
        query=(("type", {"type": "string", "enum": ["collection", "document"]}),),
    ),
    Route(
        "POST",
        C + "/opinion/{opinion_id}/addendum",
        add_addendum,
        "Add a signed addendum to the opinion",
        schemas.AddendumIn,
        201,
    ),
)
