"""Studies from the regional PACS: search by the patient, attach to a consultation.

The county's imaging centre shares exams through a DICOMweb endpoint (QIDO-RS to
search, WADO-RS to retrieve). A clinic doctor of the patient's own clinic
searches it *for a patient of the clinic*, never with free text: the query is
the patient's resident ID number as the PACS's Patient ID, and only studies
whose Patient ID is exactly that are shown, so the search cannot be used to
browse other people's exams. A PACS that files the patient under another ID (a
hospital's record number) is searched again by birth date, and the studies
whose patient name is exactly the patient's are shown, marked
``name_birth_date`` for the doctor to check (two people can share a name and a
birthday).

Attaching a study retrieves every instance once (WADO-RS) and stores each as a
document of the consultation through ``DocumentService.upload``: the same
malware scan, sandboxed parsing, de-identification, encryption at rest, audit
entries and timeline events as an uploaded file. The consultation record then
keeps what the specialist saw even if the PACS later changes or purges the
study (a hospital's evidence must not depend on another institution's archive);
the study's UIDs stay in each document's ``meta["source"]``. An instance already
attached to the consultation is not stored twice. Instances are retrieved and
stored one at a time (memory stays at one instance); a failure part-way leaves
the instances stored so far attached, and attaching again completes the study.

The HTTP is behind ``DicomWebPort`` (the adapter is ``web/dicomweb.py``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any, Protocol

import sqlalchemy as sa

from records import dicomweb, documents
from records.dicomweb import Instance, Study
from records.documents import Document
from records.errors import UnreadableContent
from records.models import Patient
from records.vocab import ErrorCode
from signaling.errors import Invalid, NotFound, PacsError
from signaling.workflow.base import Actor, Context, Service, Tx
from signaling.workflow.documents import DocumentService, attachable

log = logging.getLogger(__name__)

MAX_STUDIES = 100
MAX_INSTANCES = 1000


class DicomWebPort(Protocol):
    """What the service needs of a DICOMweb server (raises ``PacsError``)."""

    async def search(self, path: str, params: list[tuple[str, str]]) -> Any:
        """A QIDO-RS query under the root: the decoded JSON (None when 204)."""

    async def retrieve(self, path: str) -> list[bytes]:
        """A WADO-RS retrieve under the root: the DICOM files it holds."""


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _title(study: Study, instance: Instance) -> str:
    """The series' name: the instances of one series share it (the panel groups them)."""
    series = instance.series_description or (
        f"#{instance.series_number}" if instance.series_number is not None else ""
    )
    parts = [instance.modality or "/".join(study.modalities), series, study.date or ""]
    return " · ".join(p for p in parts if p)


class PacsService(Service):
    """Use cases of the regional PACS."""

    def __init__(
        self, ctx: Context, *, port: DicomWebPort | None, documents: DocumentService
    ) -> None:
        """Wire the service.

        Args:
            ctx: the app's database, clock and notifier.
            port: the DICOMweb adapter (None: no PACS is configured).
            documents: where retrieved instances are stored.
        """
        super().__init__(ctx)
        self.port = port
        self.documents = documents
        # One attach at a time per consultation, so that two clicks (or two
        # doctors) store a study once. Per process: several nodes would need the
        # database to hold the instance UIDs unique. Weak: a lock lives while an
        # attach holds it.
        self._attaching: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _port(self) -> DicomWebPort:
        if self.port is None:
            raise PacsError("no PACS is configured", code=ErrorCode.PACS_NOT_CONFIGURED)
        return self.port

    async def _patient(
        self, actor: Actor, consultation_id: str, action: str, **extra: Any
    ) -> Patient:
        """The consultation's patient, if the actor is a doctor of its clinic (audited)."""

        def work(tx: Tx) -> Patient:
            consultation = tx.consultation(consultation_id)
            patient = tx.own_patient(consultation.patient_id)
            attachable(tx, patient, consultation_id)
            tx.audit(action, "consultation", consultation_id, patient_id=patient.id, **extra)
            return patient

        return await self.write(actor, work)

    async def _query(self, params: list[tuple[str, str]], study_uid: str | None) -> list[Study]:
        if study_uid is not None:
            params.append(("StudyInstanceUID", study_uid))
        params += [("includefield", tag) for tag in dicomweb.STUDY_FIELDS]
        payload = await self._port().search("studies", params)
        try:
            return dicomweb.parse_studies(payload, MAX_STUDIES)
        except UnreadableContent as exc:
            raise PacsError(exc.message, code=ErrorCode.PACS_BAD_ANSWER) from exc

    async def _studies(
        self, patient: Patient, study_uid: str | None = None
    ) -> list[tuple[Study, str]]:
        """The patient's studies, each with how it was matched (``id`` or ``name_birth_date``)."""
        found = await self._query([("PatientID", patient.national_id)], study_uid)
        # A PACS may match IDs loosely (wildcards, case): keep only this patient's.
        by_id = [(s, "id") for s in found if s.patient_id == patient.national_id]
        if by_id:
            return by_id
        # By birth date alone, the name compared here: PACS match Chinese names
        # unreliably (Orthanc folds names to ASCII for matching, so 陈阿姨 matches
        # nothing). The other people's studies of that day stay on this server.
        birth = patient.birth_date.strftime("%Y%m%d")
        params = [("PatientBirthDate", birth), ("includefield", dicomweb.PATIENT_NAME)]
        found = await self._query(params, study_uid)
        return [
            (s, "name_birth_date")
            for s in found
            if s.birth_date == patient.birth_date.isoformat()
            and dicomweb.same_name(s.patient_names, patient.name)
        ]

    async def search(self, actor: Actor, consultation_id: str) -> list[tuple[Study, str]]:
        """The patient's studies on the PACS, newest first, with how each was matched.

        Audited as ``pacs.search``.

        Raises:
            NotFound: the consultation is not one of the actor's clinic's.
            PacsError: ``pacs_not_configured``, ``pacs_unreachable``,
                ``pacs_refused``, ``pacs_timeout`` or ``pacs_bad_answer``.
        """
        # Rights first: someone who may not see the consultation learns nothing,
        # not even whether a PACS is configured.
        patient = await self._patient(actor, consultation_id, "pacs.search")
        return await self._studies(patient)

    async def attach(self, actor: Actor, consultation_id: str, study_uid: str) -> list[Document]:
        """Retrieve a study of the patient and store it as the consultation's documents.

        Returns:
            The documents stored by this call (instances attached before are skipped).

        Raises:
            Invalid: ``study_uid`` is not a UID.
            NotFound: the consultation is not the actor's clinic's, or the PACS
                has no such study of this patient.
            PacsError: as ``search``; ``pacs_bad_answer`` for a study of more
                than ``MAX_INSTANCES`` instances.
        """
        if not dicomweb.valid_uid(study_uid):
            raise Invalid("study_uid must be a DICOM UID", fields=("study_uid",))
        # Rights first, as in ``search``: an outsider learns nothing of the PACS.
        patient = await self._patient(actor, consultation_id, "pacs.attach", study_uid=study_uid)
        port = self._port()
        lock = self._attaching.get(consultation_id)
        if lock is None:
            lock = self._attaching[consultation_id] = asyncio.Lock()
        async with lock:
            return await self._attach(actor, patient, consultation_id, study_uid, port)

    async def _attach(
        self,
        actor: Actor,
        patient: Patient,
        consultation_id: str,
        study_uid: str,
        port: DicomWebPort,
    ) -> list[Document]:
        studies = await self._studies(patient, study_uid)
        study = next((s for s, _how in studies if s.study_uid == study_uid), None)
        if study is None:
            raise NotFound("study not found", fields=("study_uid",))
        payload = await port.search(
            f"studies/{study_uid}/instances",
            [("includefield", tag) for tag in dicomweb.INSTANCE_FIELDS],
        )
        try:
            instances = dicomweb.parse_instances(payload, MAX_INSTANCES)
        except UnreadableContent as exc:
            raise PacsError(exc.message, code=ErrorCode.PACS_BAD_ANSWER) from exc

        # Which instances are attached already (the actor's right was checked above).
        def attached(conn: sa.Connection) -> set[str]:
            items = documents.list_documents(conn, consultation_id=consultation_id)
            return {
                str(d.meta["source"].get("instance_uid"))
                for d in items
                if isinstance(d.meta.get("source"), dict)
            }

        have = await self.read(attached)
        stored: list[Document] = []
        for instance in instances:
            if instance.instance_uid in have:
                continue
            files = await port.retrieve(
                f"studies/{study_uid}/series/{instance.series_uid}"
                f"/instances/{instance.instance_uid}"
            )
            source = {
                "system": "pacs",
                "study_uid": study_uid,
                "series_uid": instance.series_uid,
                "instance_uid": instance.instance_uid,
                "series_number": instance.series_number,
                "series_description": instance.series_description,
                "instance_number": instance.number,
                "study_date": study.date,
                "study_description": study.description,
            }
            for data in files[:1]:
                stored.append(
                    await self.documents.upload(
                        actor,
                        patient.id,
                        _one(data),
                        filename=f"{instance.instance_uid}.dcm",
                        title=_title(study, instance),
                        consultation_id=consultation_id,
                        declared_type="dicom",
                        declared_size=len(data),
                        source=source,
                    )
                )
        log.info(
            "consultation=%s pacs study attached: %d instance(s) stored",
            consultation_id,
            len(stored),
        )
        return stored
