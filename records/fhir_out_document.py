"""The ``document`` form of a consultation's Bundle: the Composition first, a
consult note (LOINC 11488-4) whose sections list every other entry, in the
order a reader expects them (``fhir_out.build_bundle`` with ``document=True``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from records.fhir_common import CONSULT_NOTE, LOCAL, account_reference, instant, reference

if TYPE_CHECKING:
    from records.fhir_out import ExportData

# The Composition's sections: title, LOINC section code, and the resource types
# whose entries it lists, in the order a reader expects them.
SECTIONS = (
    ("会诊申请 Reason for consultation", "42349-1", "Reason for referral", ("ServiceRequest",)),
    ("诊断 Problems", "11450-4", "Problem list", ("Condition",)),
    ("过敏 Allergies", "48765-2", "Allergies and adverse reactions", ("AllergyIntolerance",)),
    (
        "用药 Medications",
        "10160-0",
        "History of medication use",
        ("MedicationStatement", "MedicationRequest"),
    ),
    ("疫苗接种 Immunizations", "11369-6", "History of Immunization", ("Immunization",)),
    ("手术操作 Procedures", "47519-4", "History of Procedures", ("Procedure",)),
    ("检查检验 Results", "30954-2", "Relevant diagnostic tests/laboratory data", ("Observation",)),
    ("会诊意见 Consultation opinion", "11488-4", "Consult note", ("DiagnosticReport",)),
    ("资料 Documents and recordings", "55107-7", "Addendum", ("DocumentReference", "Media")),
    ("会诊过程 Consultation chat", "34109-9", "Note", ("Communication",)),
    ("知情同意 Consent", "59284-0", "Patient Consent", ("Consent",)),
)


def consult_note(data: ExportData, entries: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    """A consult note (LOINC 11488-4) whose sections list the Bundle's entries."""
    c = data.consultation
    signed = [o for o in data.opinions if o.kind != "addendum"]
    author = account_reference(data.people.get(signed[0].author_id)) if signed else None
    sections = []
    for title, code, display, kinds in SECTIONS:
        refs = [
            {"reference": e["fullUrl"]}
            for e in entries
            if e["resource"]["resourceType"] in kinds
            # The referral is a ServiceRequest too: it belongs with the opinion.
            and not (kinds == ("ServiceRequest",) and e["resource"]["id"] != c.id)
        ]
        if kinds == ("DiagnosticReport",):
            refs += [
                {"reference": e["fullUrl"]}
                for e in entries
                if e["resource"]["resourceType"] == "ServiceRequest" and e["resource"]["id"] != c.id
            ]
        if refs:
            sections.append(
                {
                    "title": title,
                    "code": {
                        "coding": [{"system": "http://loinc.org", "code": code, "display": display}]
                    },
                    "entry": refs,
                }
            )
    return {
        "resourceType": "Composition",
        "id": f"composition-{c.id}",
        "identifier": {"system": LOCAL + "consultation-note", "value": c.id},
        # Final once an opinion or referral is signed; until then a draft of the record.
        "status": "final" if signed else "preliminary",
        "type": {"coding": [CONSULT_NOTE], "text": "远程会诊记录"},
        "subject": reference("Patient", data.patient.id),
        "encounter": reference("Encounter", c.id),
        "date": instant(at),
        "author": [author or {"display": data.consulted_institution.name}],
        "title": f"远程会诊记录 Teleconsultation note: {c.reason}",
        "custodian": {"display": data.consulted_institution.name},
        "section": sections,
    }
