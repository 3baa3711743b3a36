"""The FHIR profile both directions share: identifier and code systems, our own
extensions, validation, and the one form of a timestamp.

fhir.resources 8 defaults to R5; the FHIR modules validate with its ``R4B``
package (FHIR 4.3.0, the R4-compatible release it ships; there is no plain R4
package). The elements read and written are the same in R4 (4.0.1) and R4B.

``fhir_in`` reads an EMR's Bundle into summary rows; ``fhir_out`` (with
``fhir_out_patient`` and ``fhir_out_document``) writes a consultation as a
Bundle, its resources referring to each other by the stable full URLs made
here. All are pure functions of plain data: the use cases in ``signaling`` read
and write the records and check who may do what.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from records.models import Account

# The mainland China resident identity number (GB 11643), as the national health
# information standards name it.
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.5"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Identifiers and extensions of our own: a local namespace, not a registered one.
LOCAL = "urn:teleconsult:"
# FHIR's Attachment.hash is a base64 SHA-1 of the data. We keep SHA-256 of files
# (and of signed texts), so that value goes in this extension (lower-case hex)
# rather than pretending to be the SHA-1 that ``hash`` means.
SHA256_EXTENSION = LOCAL + "fhir:sha256"
ADDENDUM_OF_EXTENSION = LOCAL + "fhir:addendum-of"


def validate(resource: Mapping[str, Any]) -> None:
    """Validate one resource (or a Bundle) with its fhir.resources R4B model.

    Args:
        resource: the resource as JSON data; its ``resourceType`` picks the model.

    Raises:
        pydantic.ValidationError: the resource is not valid FHIR R4.
    """
    # Imported here: the models cost every process (the server, each command line)
    # about 0.15 s at start-up, and most never import or export a record.
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(str(resource["resourceType"])).model_validate(resource)


def instant(value: datetime) -> str:
    """A datetime as a FHIR ``instant``/``dateTime`` (ISO 8601 with its offset)."""
    return value.isoformat()


CONSULT_NOTE = {"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}

# Full URLs are name-based UUIDs in a namespace of our own: the same consultation
# exports with the same URLs every time, so a receiving system can match them.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:teleconsult")


def full_url(resource_type: str, key: str) -> str:
    """A stable ``urn:uuid`` for a resource of the export (references use it)."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}/{key}')}"


def reference(resource_type: str, key: str, display: str | None = None) -> dict[str, Any]:
    """A Reference to a resource of the export, by its ``full_url``."""
    ref: dict[str, Any] = {"reference": full_url(resource_type, key)}
    if display:
        ref["display"] = display
    return ref


def account_reference(account: Account | None) -> dict[str, Any] | None:
    """A Reference to a doctor of ours (display and account id), or None."""
    if account is None:
        return None
    return {
        "display": f"{account.display_name} {account.title}"
        if account.title
        else account.display_name,
        "identifier": {"system": LOCAL + "account", "value": account.id},
    }
