"""FHIR out, the patient's side: the Patient, their consents and their summary.

``fhir_out`` assembles a consultation's Bundle; the resources here are about the
patient rather than the consultation, and refer to the Bundle's Patient by the
Reference they are given.
"""

from __future__ import annotations

import re
from typing import Any

from records.fhir_common import ICD10_SYSTEM, OBSERVATION_CATEGORY, RESIDENT_ID_SYSTEM, instant
from records.models import Consent, Institution, Patient
from records.summary import ObservationRow, Summary, split_code


def patient_resource(
    p: Patient, clinic: Institution, *, full_national_id: bool = False
) -> dict[str, Any]:
    """The Patient, with the clinic that looks after them.

    Args:
        p: the patient.
        clinic: their (requesting) institution.
        full_national_id: give the whole resident ID number (for the patient's
            own clinic); otherwise it is masked as everywhere else in the API.
    """
    identifier: dict[str, Any]
    if full_national_id:
        identifier = {"system": RESIDENT_ID_SYSTEM, "value": p.national_id}
    else:
        # The specialists see the number masked on every page: the export must
        # not be the way around that. A masked value is not an identifier in
        # the resident-ID system, so it carries no system, only a label.
        identifier = {
            "use": "secondary",
            "type": {"text": "居民身份证号（部分隐藏） resident ID number, masked"},
            "value": p.national_id_masked,
        }
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": p.id,
        "identifier": [identifier],
        "name": [{"text": p.name}],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
        "managingOrganization": {"display": clinic.name},
    }
    if p.phone:
        resource["telecom"] = [{"system": "phone", "value": p.phone}]
    return resource


def consent_resource(
    consent: Consent, subject: dict[str, Any], clinic: Institution
) -> dict[str, Any]:
    """A Consent to the teleconsultation, and whether it covers recording the call.

    Args:
        consent: the consent as recorded.
        subject: the Reference to the Bundle's Patient.
        clinic: the institution that took the consent.
    """
    period = {"start": instant(consent.given_at)}
    if consent.withdrawn_at:
        period["end"] = instant(consent.withdrawn_at)
    return {
        "resourceType": "Consent",
        "id": consent.id,
        "status": "inactive" if consent.withdrawn_at else "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "treatment",
                    "display": "Treatment",
                }
            ]
        },
        "category": [
            {
                "coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Consent"}],
                "text": "远程会诊知情同意",
            }
        ],
        "patient": subject,
        "dateTime": instant(consent.given_at),
        "performer": [{"display": f"{consent.given_by} ({consent.relationship})"}],
        "organization": [{"display": clinic.name}],
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": {
            "type": "permit",
            "period": period,
            # Recording the call is a separate choice of the patient.
            "provision": [
                {
                    "type": "permit" if consent.scope_recording else "deny",
                    "action": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                    "code": "collect",
                                }
                            ],
                            "text": "音视频录制 audio/video recording of the consultation",
                        }
                    ],
                }
            ],
        },
    }


def summary_resources(s: Summary, subject: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary rows as Conditions, MedicationStatements, AllergyIntolerances
    and Observations, in that order.

    Args:
        s: the patient's summary.
        subject: the Reference to the Bundle's Patient.
    """
    out: list[dict[str, Any]] = []
    for cond in s.conditions:
        system, code = split_code(cond.code)
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": cond.id,
            "code": {
                "coding": [
                    {"system": system or ICD10_SYSTEM, "code": code, "display": cond.display}
                ],
                "text": cond.display,
            },
            "subject": subject,
            "recordedDate": instant(cond.recorded_at),
        }
        # con-5: an entered-in-error Condition carries no clinical status.
        if cond.clinical_status and cond.verification_status != "entered-in-error":
            resource["clinicalStatus"] = _status(CONDITION_CLINICAL, cond.clinical_status)
        if cond.verification_status:
            resource["verificationStatus"] = _status(
                CONDITION_VERIFICATION, cond.verification_status
            )
        if cond.onset:
            resource["onsetDateTime"] = cond.onset
        out.append(resource)
    for med in s.medications:
        if med.status in REQUEST_ONLY_STATUS:
            # A cancelled or draft order has no MedicationStatement status: it goes
            # back as the order it was, with its own status.
            resource = {
                "resourceType": "MedicationRequest",
                "id": med.id,
                "status": med.status,
                "intent": "order",
                "medicationCodeableConcept": _concept(med.code, med.display),
                "subject": subject,
                "authoredOn": instant(med.recorded_at),
            }
            if med.dosage:
                resource["dosageInstruction"] = [{"text": med.dosage}]
        else:
            resource = {
                "resourceType": "MedicationStatement",
                "id": med.id,
                "status": med.status,
                "medicationCodeableConcept": _concept(med.code, med.display),
                "subject": subject,
                "dateAsserted": instant(med.recorded_at),
            }
            if med.dosage:
                resource["dosage"] = [{"text": med.dosage}]
        out.append(resource)
    for allergy in s.allergies:
        resource = {
            "resourceType": "AllergyIntolerance",
            "id": allergy.id,
            "code": _concept(allergy.code, allergy.display),
            "patient": subject,
            "recordedDate": instant(allergy.recorded_at),
        }
        if allergy.verification_status != "entered-in-error":
            # ait-1 wants a clinical status unless entered in error; a row imported
            # before statuses were kept was shown (and so is sent) as active.
            resource["clinicalStatus"] = _status(
                ALLERGY_CLINICAL, allergy.clinical_status or "active"
            )
        if allergy.verification_status:
            resource["verificationStatus"] = _status(
                ALLERGY_VERIFICATION, allergy.verification_status
            )
        if allergy.criticality:
            resource["criticality"] = allergy.criticality
        if allergy.reaction:
            resource["reaction"] = [{"manifestation": [{"text": allergy.reaction}]}]
        out.append(resource)
    for obs in s.observations:
        out.append(observation_resource(obs, subject))
    for imm in s.immunizations:
        resource = {
            "resourceType": "Immunization",
            "id": imm.id,
            "status": imm.status,
            "vaccineCode": _concept(imm.code, imm.display),
            "patient": subject,
            "recorded": instant(imm.recorded_at),
        }
        # occurrence[x] is required: the date as given, else "unknown" as text.
        if imm.occurred and _is_datetime(imm.occurred):
            resource["occurrenceDateTime"] = imm.occurred
        else:
            resource["occurrenceString"] = imm.occurred or "unknown"
        out.append(resource)
    for proc in s.procedures:
        resource = {
            "resourceType": "Procedure",
            "id": proc.id,
            "status": proc.status,
            "code": _concept(proc.code, proc.display),
            "subject": subject,
        }
        if proc.performed and _is_datetime(proc.performed):
            resource["performedDateTime"] = proc.performed
        elif proc.performed:
            resource["performedString"] = proc.performed
        out.append(resource)
    return out


_DATETIME = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?$"
)


def _is_datetime(value: str) -> bool:
    return bool(_DATETIME.match(value))


def observation_resource(obs: ObservationRow, subject: dict[str, Any]) -> dict[str, Any]:
    """A vital sign or lab result, with its reference range and flag.

    Args:
        obs: the summary row.
        subject: the Reference to the Bundle's Patient.
    """
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs.id,
        # Rows imported before statuses were kept were all taken as final.
        "status": obs.status or "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": obs.category}]}],
        "code": _concept(obs.code, obs.display),
        "subject": subject,
    }
    if obs.category == "other":  # imported without a category: none is made up
        del resource["category"]
    if obs.effective_at:
        resource["effectiveDateTime"] = instant(obs.effective_at)
    if obs.value_number is not None:
        quantity: dict[str, Any] = {"value": obs.value_number}
        if obs.unit:
            quantity["unit"] = obs.unit
        resource["valueQuantity"] = quantity
    elif obs.value_text:
        resource["valueString"] = obs.value_text
    else:
        resource["dataAbsentReason"] = {"text": "no value"}
    bounds: dict[str, Any] = {}
    for key, value in (("low", obs.ref_low), ("high", obs.ref_high)):
        if value is not None:
            bounds[key] = {"value": value, **({"unit": obs.unit} if obs.unit else {})}
    if bounds:
        resource["referenceRange"] = [bounds]
    if obs.flag:
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": obs.flag,
                        "display": "Low" if obs.flag == "L" else "High",
                    }
                ]
            }
        ]
    return resource


CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
# MedicationRequest statuses that MedicationStatement does not have.
REQUEST_ONLY_STATUS = frozenset({"cancelled", "draft"})


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _concept(stored_code: str | None, display: str) -> dict[str, Any]:
    """A CodeableConcept from a stored code (``system|code``, see ``join_code``)."""
    system, code = split_code(stored_code)
    concept: dict[str, Any] = {"text": display}
    if code:
        coding: dict[str, Any] = {"code": code, "display": display}
        if system:
            coding["system"] = system
        concept["coding"] = [coding]
    return concept
