"""The supervision export (监管数据导出): consultations for the provincial platform.

Pure functions: the rows of a date range in, the files of an export out
(``consultations.json``, ``consultations.csv``, the JSON Schema, and
``manifest.json`` listing them), and the manifest's signature. Nothing here
reads the database or the clock; the workflow
(``signaling/workflow/supervision.py``) gathers the rows, decides who may
export what, and audits.

Choices, documented for the receiver (the README has the field table):

- **One flat record per consultation**, the same fields in the same order in the
  JSON and the CSV (``FIELDS``). The JSON keeps types (``null``, booleans,
  arrays of SHA-256s); the CSV writes ``null`` as an empty cell, booleans as
  ``true``/``false`` and arrays joined by ``;``. ``consultations.json`` validates
  against ``records/schemas/supervision-export.schema.json`` (JSON Schema draft
  2020-12).
- **Times** are ISO 8601 in Beijing time with its offset (``+08:00``), the
  time of the documents supervision compares them with; China has one time zone
  and no daylight saving.
- **The range** is two calendar dates in Beijing time, both included: a
  consultation belongs to it when it was *requested* from ``from`` 00:00 up to
  (not including) the day after ``to`` 00:00, Beijing time.
- **Patient data**: only the resident ID number masked as on the report and on
  every screen (first 4 and last 2 characters), so the platform can match a
  record with a paper report. No name, birth date, telephone or clinical text.
- **Signature**: the server's Ed25519 key signs the exact bytes of
  ``manifest.json``, which lists every other file's size and SHA-256. The raw
  64-byte signature is ``manifest.json.sig`` and the public key is
  ``signing-key.pem`` (SubjectPublicKeyInfo); the receiver checks the key's
  fingerprint against the one the hospital registered with the platform
  (shown on the ``/supervision`` page), then the signature with OpenSSL or
  ``teleconsult export verify``. The consultation reports' SHA-256
  (``report_pdf``) are hashes without a key; this is the app's only signing
  key, and it signs nothing but these manifests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from records.models import Account, Consultation, Department, Event, Institution, Opinion, Recording

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

# China keeps one time zone and no daylight saving time.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
FORMAT = "teleconsult-supervision-export"
FORMAT_VERSION = 1
# The longest range one export covers: a year (a leap one included).
MAX_DAYS = 366
# Dates outside these years name no consultation (and the far ends of the
# calendar cannot be turned into instants at all).
FIRST_YEAR, LAST_YEAR = 2000, 2999

JSON_NAME = "consultations.json"
CSV_NAME = "consultations.csv"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
PUBLIC_KEY_NAME = "signing-key.pem"
SCHEMA_NAME = "supervision-export.schema.json"
SIGNATURE_ALGORITHM = "Ed25519"

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / SCHEMA_NAME

# Recording statuses that produced a file (a purged one was recorded; its file is
# gone after its retention date, its SHA-256 stays).
RECORDED_STATUSES = frozenset({"finished", "recovered", "purged"})


@dataclass(frozen=True)
class Field:
    """One column of the CSV and key of a JSON record."""

    name: str
    type: str  # the README's word for it: string, date-time, boolean, list of sha256...
    meaning: str


FIELDS: tuple[Field, ...] = (
    Field("id", "string", "consultation id (32 hex digits)"),
    Field("requested_at", "date-time", "when the clinic sent the request"),
    Field("requesting_institution_id", "string", "inviting institution's id"),
    Field("requesting_institution_name", "string", "inviting institution's name"),
    Field(
        "requesting_institution_kind",
        "string",
        "`township_clinic`, `county_hospital` or `specialist_hospital`",
    ),
    Field("requesting_institution_region", "string", "inviting institution's region"),
    Field("requesting_physician_name", "string", "the clinic doctor who requested"),
    Field("requesting_physician_licence_no", "string or null", "their practising licence number"),
    Field("consulted_institution_id", "string", "invited institution's id"),
    Field("consulted_institution_name", "string", "invited institution's name"),
    Field("consulted_institution_kind", "string", "as `requesting_institution_kind`"),
    Field("consulted_institution_region", "string", "invited institution's region"),
    Field("department_code", "string", "code of the department asked"),
    Field("department_name", "string", "name of the department asked"),
    Field("specialist_name", "string or null", "the specialist who took the case (assigned)"),
    Field("specialist_licence_no", "string or null", "the specialist's licence number"),
    Field("specialist_title", "string or null", "the specialist's professional title"),
    Field("urgency", "string", "`routine`, `urgent` or `emergency`"),
    Field(
        "state",
        "string",
        "state at export time: `requested`, `escalated`, `accepted`, `live`, `ended`, "
        "`signed`, `referred`, `cancelled`, `declined`",
    ),
    Field("escalated", "boolean", "whether the request was escalated (not accepted in time)"),
    Field(
        "patient_id_masked",
        "string",
        "the patient's resident ID number masked as on the report (first 4, last 2)",
    ),
    Field("accepted_at", "date-time or null", "first acceptance or assignment"),
    Field("call_started_at", "date-time or null", "when the call first went live"),
    Field("call_ended_at", "date-time or null", "when the call last ended"),
    Field("signed_at", "date-time or null", "when the opinion or referral was signed"),
    Field("outcome_kind", "string or null", "`opinion` or `referral` (to an in-person visit)"),
    Field(
        "outcome_sha256",
        "sha256 or null",
        "SHA-256 of the signed opinion or referral (its canonical JSON)",
    ),
    Field("addenda_sha256", "list of sha256", "SHA-256 of each signed addendum, in signing order"),
    Field("recorded", "boolean", "whether any part of the call was recorded"),
    Field(
        "recordings_sha256",
        "list of sha256",
        "SHA-256 of each recorded file (one per participant and part)",
    ),
    Field("accept_deadline_at", "date-time", "by when it had to be accepted"),
    Field(
        "accepted_on_time",
        "boolean or null",
        "accepted by the deadline; `false` also when still waiting past it; "
        "`null` while it may still be, or when cancelled or declined unaccepted",
    ),
    Field("complete_deadline_at", "date-time", "by when it had to be signed or referred"),
    Field(
        "completed_on_time",
        "boolean or null",
        "signed or referred by the deadline; `false` also when still open past it; "
        "`null` while it may still be, or when cancelled or declined",
    ),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
CLOSED_UNCOMPLETED = frozenset({"cancelled", "declined"})


@dataclass(frozen=True, kw_only=True)
class Source:
    """What the export says about one consultation, as read from the records."""

    consultation: Consultation
    requesting_institution: Institution
    consulted_institution: Institution
    department: Department
    requester: Account | None
    specialist: Account | None
    patient_id_masked: str
    events: Sequence[Event] = ()
    opinions: Sequence[Opinion] = ()
    recordings: Sequence[Recording] = ()
    # From the deadline rules (``signaling/workflow/deadlines.py``).
    accept_by: datetime | None = None
    complete_by: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Range:
    """Calendar dates in Beijing time, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first instant of the range."""
        return datetime.combine(self.first, time(0), BEIJING)

    @property
    def end(self) -> datetime:
        """The first instant after the range (midnight after ``last``, Beijing time)."""
        return datetime.combine(self.last + timedelta(days=1), time(0), BEIJING)

    def as_json(self) -> dict[str, Any]:
        """How the files describe the range."""
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "timezone": "Asia/Shanghai",
            "selected_by": "requested_at",
            "start": iso(self.start),
            "end_exclusive": iso(self.end),
        }


class RangeError(ValueError):
    """A range that cannot be exported; ``field`` names the parameter at fault."""

    def __init__(self, message: str, field: str) -> None:
        """Say what is wrong with which parameter (``from`` or ``to``)."""
        super().__init__(message)
        self.field = field


def parse_range(first: str | None, last: str | None) -> Range:
    """Two ``YYYY-MM-DD`` dates into a ``Range``.

    Raises:
        RangeError: a date is missing or malformed, ``to`` is before ``from``, or
            the range is longer than ``MAX_DAYS``.
    """
    dates: dict[str, date] = {}
    for name, value in (("from", first), ("to", last)):
        if not value:
            raise RangeError(f"{name} is required (a date, YYYY-MM-DD)", name)
        try:
            if len(value) != 10:
                raise ValueError(value)
            dates[name] = date.fromisoformat(value)
        except ValueError:
            raise RangeError(f"{name} must be a date written YYYY-MM-DD", name) from None
        if not FIRST_YEAR <= dates[name].year <= LAST_YEAR:
            raise RangeError(f"{name} must be in the years {FIRST_YEAR} to {LAST_YEAR}", name)
    if dates["to"] < dates["from"]:
        raise RangeError("to must not be before from", "to")
    if (dates["to"] - dates["from"]).days + 1 > MAX_DAYS:
        raise RangeError(f"a range covers at most {MAX_DAYS} days", "to")
    return Range(first=dates["from"], last=dates["to"])


def iso(at: datetime | None) -> str | None:
    """An instant in ISO 8601, Beijing time with its offset, to the second."""
    if at is None:
        return None
    if at.tzinfo is None:  # stored times are UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


def _first(events: Iterable[Event], *kinds: str) -> datetime | None:
    return min((e.at for e in events if e.kind in kinds), default=None)


def _last(events: Iterable[Event], *kinds: str) -> datetime | None:
    return max((e.at for e in events if e.kind in kinds), default=None)


def _on_time(
    done: datetime | None, due: datetime | None, now: datetime, open_: bool
) -> bool | None:
    if due is None:
        return None
    if done is not None:
        return done <= due
    if open_ and now > due:
        return False
    return None


def record(s: Source, *, now: datetime) -> dict[str, Any]:
    """One consultation as the export's flat record (``FIELDS``, in order)."""
    c = s.consultation
    ri, ci = s.requesting_institution, s.consulted_institution
    signed = sorted(
        (o for o in s.opinions if o.kind in ("opinion", "referral")), key=lambda o: o.signed_at
    )
    outcome = signed[0] if signed else None
    addenda = sorted((o for o in s.opinions if o.kind == "addendum"), key=lambda o: o.signed_at)
    recorded = [r for r in s.recordings if r.status in RECORDED_STATUSES]
    accepted_at = _first(s.events, "accepted", "assigned")
    signed_at = outcome.signed_at if outcome else None
    waiting = c.state in ("requested", "escalated")
    still_open = c.state not in CLOSED_UNCOMPLETED and outcome is None
    values: dict[str, Any] = {
        "id": c.id,
        "requested_at": iso(c.created_at),
        "requesting_institution_id": ri.id,
        "requesting_institution_name": ri.name,
        "requesting_institution_kind": ri.kind,
        "requesting_institution_region": ri.region,
        "requesting_physician_name": s.requester.display_name if s.requester else "",
        "requesting_physician_licence_no": s.requester.licence_no if s.requester else None,
        "consulted_institution_id": ci.id,
        "consulted_institution_name": ci.name,
        "consulted_institution_kind": ci.kind,
        "consulted_institution_region": ci.region,
        "department_code": s.department.code,
        "department_name": s.department.name,
        "specialist_name": s.specialist.display_name if s.specialist else None,
        "specialist_licence_no": s.specialist.licence_no if s.specialist else None,
        "specialist_title": s.specialist.title if s.specialist else None,
        "urgency": c.urgency,
        "state": c.state,
        "escalated": bool(c.escalated),
        "patient_id_masked": s.patient_id_masked,
        "accepted_at": iso(accepted_at),
        "call_started_at": iso(_first(s.events, "live")),
        "call_ended_at": iso(_last(s.events, "ended")),
        "signed_at": iso(signed_at),
        "outcome_kind": outcome.kind if outcome else None,
        "outcome_sha256": outcome.sha256 if outcome else None,
        "addenda_sha256": [o.sha256 for o in addenda],
        "recorded": bool(recorded),
        "recordings_sha256": [r.sha256 for r in recorded if r.sha256],
        "accept_deadline_at": iso(s.accept_by),
        "accepted_on_time": _on_time(accepted_at, s.accept_by, now, waiting),
        "complete_deadline_at": iso(s.complete_by),
        "completed_on_time": _on_time(signed_at, s.complete_by, now, still_open),
    }
    return {name: values[name] for name in FIELD_NAMES}


@dataclass(frozen=True, kw_only=True)
class Producer:
    """Who made the export: the software and the scope it was made for."""

    version: str
    # The institution whose consultations these are (a coordinator's hospital),
    # or None for every consultation on this server (an administrator).
    institution: Institution | None = None

    def as_json(self) -> dict[str, Any]:
        """How the files name the producer."""
        return {"name": "teleconsult", "version": self.version}

    def scope_json(self) -> dict[str, Any]:
        """Which consultations the export covers."""
        if self.institution is None:
            return {"consulted_institution": None, "description": "all consultations"}
        i = self.institution
        return {
            "consulted_institution": {
                "id": i.id,
                "name": i.name,
                "kind": i.kind,
                "region": i.region,
            },
            "description": "consultations asked of this institution",
        }


def document(
    records: Sequence[Mapping[str, Any]], *, rng: Range, producer: Producer, generated_at: datetime
) -> dict[str, Any]:
    """The content of ``consultations.json``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": producer.as_json(),
        "generated_at": iso(generated_at),
        "range": rng.as_json(),
        "scope": producer.scope_json(),
        "count": len(records),
        "fields": list(FIELD_NAMES),
        "consultations": [dict(r) for r in records],
    }


def json_bytes(doc: Mapping[str, Any]) -> bytes:
    """The JSON file's bytes: UTF-8, keys in the documented order, indented."""
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()


def csv_cell(value: Any) -> str:
    """A JSON value as a CSV cell (null empty, booleans lower case, lists joined by ``;``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def csv_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    """The CSV file's bytes: UTF-8 with a byte order mark (Excel opens it as UTF-8),
    a header row of ``FIELD_NAMES``, CRLF line ends (RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELD_NAMES)
    for r in records:
        writer.writerow([csv_cell(r[name]) for name in FIELD_NAMES])
    return ("\ufeff" + out.getvalue()).encode()


def read_csv(data: bytes) -> list[dict[str, str]]:
    """The rows of a CSV file made by ``csv_bytes`` (cells as text)."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``consultations.json``."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # only when a file is checked

    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(doc: Any) -> list[str]:
    """What makes ``doc`` not a valid ``consultations.json`` (empty: valid)."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in _validator().iter_errors(doc)
    ]
