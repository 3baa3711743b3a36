"""DICOMweb answers read without HTTP: QIDO-RS JSON and WADO-RS multipart bodies.

The HTTP itself lives in the web layer's adapter (``web/dicomweb.py``); this
module only turns what a PACS sent into plain values, and refuses what it cannot
trust. A PACS is another institution's system: its answers are bounded and
checked like an upload (an attribute that is not what PS3.18 says is dropped, a
body that is not ``multipart/related`` is refused).

QIDO-RS answers are the DICOM JSON model (PS3.18 F.2): a list of objects keyed
by the tag in eight hex digits, each ``{"vr": ..., "Value": [...]}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

from records.errors import UnreadableContent
from records.vocab import ErrorCode

# The attributes a study search asks for and reads back (PS3.18 table 10.6.1-5).
STUDY_DATE = "00080020"
ACCESSION_NUMBER = "00080050"
MODALITIES_IN_STUDY = "00080061"
STUDY_DESCRIPTION = "00081030"
PATIENT_ID = "00100020"
PATIENT_NAME = "00100010"
PATIENT_BIRTH_DATE = "00100030"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
SOP_INSTANCE_UID = "00080018"
MODALITY = "00080060"
SERIES_DESCRIPTION = "0008103E"
SERIES_NUMBER = "00200011"
INSTANCE_NUMBER = "00200013"
NUMBER_OF_SERIES = "00201206"
NUMBER_OF_INSTANCES = "00201208"
STUDY_FIELDS = (
    STUDY_DATE,
    MODALITIES_IN_STUDY,
    STUDY_DESCRIPTION,
    NUMBER_OF_SERIES,
    NUMBER_OF_INSTANCES,
)
INSTANCE_FIELDS = (SERIES_DESCRIPTION, SERIES_NUMBER, INSTANCE_NUMBER, MODALITY)
# A UID is digits and dots, at most 64 characters (PS3.5 9.1): anything else is
# refused before it goes into a URL path.
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_TEXT = 64


def valid_uid(value: str) -> bool:
    """Whether ``value`` is a DICOM UID (and so safe in a DICOMweb path)."""
    return len(value) <= MAX_TEXT and UID.match(value) is not None


def _bad(message: str) -> UnreadableContent:
    return UnreadableContent(message, code=ErrorCode.PACS_BAD_ANSWER)


def _first(item: dict[str, Any], tag: str) -> Any:
    element = item.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values:
        return None
    return values[0]


def _text(item: dict[str, Any], tag: str) -> str | None:
    value = _first(item, tag)
    if isinstance(value, dict):
        # A person name: {"Alphabetic": "..."}.
        value = value.get("Alphabetic")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    return text[:MAX_TEXT] or None


def _uid(item: dict[str, Any], tag: str) -> str | None:
    """A UID as sent (never cut short: a cut UID names another object), if valid."""
    value = _first(item, tag)
    if not isinstance(value, str):
        return None
    value = value.strip().rstrip("\x00")
    return value if valid_uid(value) else None


def _names(item: dict[str, Any]) -> tuple[str, ...]:
    """The patient's name in each of its representations, without separators.

    A DICOM person name is ``Family^Given``, possibly with an ideographic form
    (``Zhang^Wei=张^伟``); in the JSON model each form is its own member.
    """
    value = _first(item, PATIENT_NAME)
    if not isinstance(value, dict):
        return ()
    found = []
    for form in ("Alphabetic", "Ideographic", "Phonetic"):
        text = value.get(form)
        if isinstance(text, str):
            cleaned = "".join(ch for ch in text if ch.isprintable() and ch not in "^= ").lower()
            if cleaned:
                found.append(cleaned[:MAX_TEXT])
    return tuple(found)


def same_name(names: tuple[str, ...], name: str) -> bool:
    """Whether one of a study's ``names`` (see ``_names``) is ``name``."""
    wanted = "".join(ch for ch in name if ch not in "^= ").lower()
    return bool(wanted) and wanted in names


def _texts(item: dict[str, Any], tag: str) -> tuple[str, ...]:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    if not isinstance(values, list):
        return ()
    return tuple(v.strip()[:16] for v in values[:16] if isinstance(v, str) and v.strip())


def _number(item: dict[str, Any], tag: str) -> int | None:
    value = _first(item, tag)
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def _iso_date(value: str | None) -> str | None:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return None


def _items(payload: Any) -> list[dict[str, Any]]:
    if payload is None:
        # 204 No Content: nothing matched.
        return []
    if not isinstance(payload, list):
        raise _bad("a QIDO-RS answer must be a JSON array")
    return [item for item in payload if isinstance(item, dict)]


@dataclass(frozen=True, kw_only=True)
class Study:
    """One study as a QIDO-RS search describes it."""

    study_uid: str
    patient_id: str | None
    # Only to match the study to a patient; never sent on.
    patient_names: tuple[str, ...]
    birth_date: str | None
    date: str | None
    modalities: tuple[str, ...]
    description: str | None
    series: int | None
    instances: int | None


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One instance of a study, as ``/studies/{uid}/instances`` lists it."""

    series_uid: str
    instance_uid: str
    series_number: int | None
    series_description: str | None
    modality: str | None
    number: int | None


def parse_studies(payload: Any, limit: int) -> list[Study]:
    """The studies of a QIDO-RS ``/studies`` answer (decoded JSON), at most ``limit``.

    Entries without a valid Study Instance UID are dropped: they could be
    neither attached nor named in a path.

    Raises:
        UnreadableContent: ``pacs_bad_answer`` (not a JSON array).
    """
    studies = []
    for item in _items(payload):
        uid = _uid(item, STUDY_INSTANCE_UID)
        if uid is None:
            continue
        studies.append(
            Study(
                study_uid=uid,
                patient_id=_text(item, PATIENT_ID),
                patient_names=_names(item),
                birth_date=_iso_date(_text(item, PATIENT_BIRTH_DATE)),
                date=_iso_date(_text(item, STUDY_DATE)),
                modalities=_texts(item, MODALITIES_IN_STUDY),
                description=_text(item, STUDY_DESCRIPTION),
                series=_number(item, NUMBER_OF_SERIES),
                instances=_number(item, NUMBER_OF_INSTANCES),
            )
        )
        if len(studies) >= limit:
            break
    # Newest first; undated last.
    return sorted(studies, key=lambda s: s.date or "", reverse=True)


def parse_instances(payload: Any, limit: int) -> list[Instance]:
    """The instances of a QIDO-RS ``/studies/{uid}/instances`` answer, in viewing order.

    Raises:
        UnreadableContent: ``pacs_bad_answer`` (not a JSON array, or more than
            ``limit`` instances: a study that large is not attached whole).
    """
    found = []
    for item in _items(payload):
        series = _uid(item, SERIES_INSTANCE_UID)
        instance = _uid(item, SOP_INSTANCE_UID)
        if series is None or instance is None:
            continue
        found.append(
            Instance(
                series_uid=series,
                instance_uid=instance,
                series_number=_number(item, SERIES_NUMBER),
                series_description=_text(item, SERIES_DESCRIPTION),
                modality=_text(item, MODALITY),
                number=_number(item, INSTANCE_NUMBER),
            )
        )
        if len(found) > limit:
            raise _bad(f"the study has more than {limit} instances")
    big = 1 << 31
    found.sort(
        key=lambda i: (
            i.series_number if i.series_number is not None else big,
            i.series_uid,
            i.number if i.number is not None else big,
            i.instance_uid,
        )
    )
    return found


def multipart_boundary(content_type: str) -> str:
    """The boundary of a ``multipart/related`` answer (PS3.18 8.6.1.2).

    Raises:
        UnreadableContent: ``pacs_bad_answer`` (another type, or no boundary).
    """
    message = Message()
    message["Content-Type"] = content_type
    if message.get_content_type() != "multipart/related":
        raise _bad("a WADO-RS answer must be multipart/related")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 200:
        raise _bad("the WADO-RS answer has no multipart boundary")
    return boundary


def split_multipart(body: bytes, boundary: str) -> list[tuple[str, bytes]]:
    """The parts of a ``multipart/related`` body: (content type, bytes) each.

    Raises:
        UnreadableContent: ``pacs_bad_answer`` (no closing delimiter).
    """
    delimiter = b"--" + boundary.encode("ascii", "replace")
    # A leading CRLF makes the first delimiter look like the others; what comes
    # before it (a preamble) is the first chunk and is dropped.
    chunks = (b"\r\n" + body).split(b"\r\n" + delimiter)
    if len(chunks) < 2:
        raise _bad("the WADO-RS answer has no parts")
    parts: list[tuple[str, bytes]] = []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise _bad("a WADO-RS part has no headers")
        headers = Message()
        for line in head.split(b"\r\n")[1:]:
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers[name.strip()] = value.strip()
        parts.append((headers.get_content_type(), content))
    if not closed:
        raise _bad("the WADO-RS answer is cut short")
    return parts


def dicom_parts(content_type: str, body: bytes) -> list[bytes]:
    """The DICOM files (``application/dicom`` parts) of a WADO-RS answer.

    Raises:
        UnreadableContent: ``pacs_bad_answer``.
    """
    boundary = multipart_boundary(content_type)
    parts = [
        content for kind, content in split_multipart(body, boundary) if kind == "application/dicom"
    ]
    if not parts:
        raise _bad("the WADO-RS answer holds no DICOM file")
    return parts
