"""What the clinic page's FHIR import dialog shows (web/static/js/fhir-import.js)."""

from __future__ import annotations

from web.i18n import N_

FHIR_IMPORT_STRINGS: dict[str, str] = {
    "fhir.action": N_("Import records"),
    "fhir.uploading": N_("Sending %(name)s… %(percent)s"),
    "fhir.reading": N_("Reading the records…"),
    "fhir.choose": N_("Choose a FHIR file first."),
    "fhir.done": N_("Records imported."),
    "fhir.report.title": N_("What was imported"),
    "fhir.report.type": N_("Bundle type: %(type)s"),
    "fhir.report.created": N_("New in the summary"),
    "fhir.report.updated": N_("Updated (imported before)"),
    "fhir.report.nothing": N_("Nothing in this file goes into the summary."),
    "fhir.report.not_used": N_("Kept aside (not part of the summary)"),
    "fhir.report.left_out": N_("Not imported (each with where and why)"),
    "fhir.report.no_information": N_("Stated by the source as none known or no information"),
    "fhir.report.more": N_("and %(count)s more"),
    "fhir.table.conditions": N_("Diagnoses"),
    "fhir.table.medications": N_("Medications"),
    "fhir.table.allergies": N_("Allergies"),
    "fhir.table.observations": N_("Vital signs and results"),
    "fhir.table.immunizations": N_("Immunizations"),
    "fhir.table.procedures": N_("Procedures"),
    "fhir.failed": N_("The file could not be imported."),
    "fhir.fetching": N_("Fetching the records from the FHIR server…"),
    "fhir.fetch_failed": N_("The records could not be fetched."),
    "fhir.too_large": N_("The file is larger than this server accepts."),
}
