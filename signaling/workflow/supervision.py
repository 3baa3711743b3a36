"""The supervision export (监管数据导出) for the provincial supervision platform.

Who: the hospital's medical-affairs office (医务科) reports to the platform; in
this system that is the consultation-centre coordinator, for the consultations
asked of their own hospital, and the administrator, for every consultation on
the server (a deployment that serves one county medical community). Clinic
doctors, specialists and reviewers are refused (403 ``role_forbidden``), and
the refusal is audited like any refused look.

Every export is audited before it is handed out (``supervision.export``: the
range, the format, how many consultations, the manifest's SHA-256 and the
export's id, which the manifest carries too), so no file leaves the server
without its entry; if the entry cannot be written, nothing is handed out.
The summary a page shows before the download is a count by state, not patient
data, and is not audited.

The rows become files in ``records.supervision`` (pure); the document is
checked against its JSON Schema and the manifest signed with the server's
Ed25519 key before anything is handed out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from records import store, supervision, supervision_archive
from records.models import Institution
from records.vocab import ErrorCode, Role
from signaling.errors import Forbidden
from signaling.workflow.base import Actor, Context, Service, Tx

EXPORT_ROLES = (Role.ADMIN, Role.COORDINATOR)
FORMATS = ("zip", "json", "csv")


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What an export of a range would hold, before downloading it."""

    range: supervision.Range
    count: int
    by_state: dict[str, int]
    # The hospital the export is limited to (a coordinator's), or None for all.
    institution: Institution | None
    key_fingerprint: str


class SupervisionService(Service):
    """Make audited, signed supervision exports."""

    def __init__(self, ctx: Context, *, key_path: Path, version: str) -> None:
        """Wire the service.

        Args:
            ctx: database, clock and notifier.
            key_path: the Ed25519 signing key's PEM file (made on first use).
            version: the producer version written into every export.
        """
        super().__init__(ctx)
        self.key_path = key_path
        self.version = version
        self._key: supervision_archive.SigningKey | None = None

    async def key(self) -> supervision_archive.SigningKey:
        """The signing key, loaded (or made) once, off the event loop."""
        if self._key is None:
            self._key = await asyncio.to_thread(
                supervision_archive.SigningKey.load_or_create, self.key_path
            )
        return self._key

    async def _allowed(self, actor: Actor | None, rng: supervision.Range) -> None:
        if actor is not None and actor.role not in EXPORT_ROLES:
            await self.audit_refusal(
                actor,
                "supervision_export",
                f"{rng.first.isoformat()}..{rng.last.isoformat()}",
                refused=ErrorCode.ROLE_FORBIDDEN.value,
            )
            raise Forbidden(
                "only the medical-affairs office (coordinators) and administrators export "
                "supervision data",
                code=ErrorCode.ROLE_FORBIDDEN,
            )

    @staticmethod
    def _scope(actor: Actor | None) -> str | None:
        # A coordinator reports for their own hospital only; the administrator and
        # the server's operator (the command line, no actor) for every consultation.
        if actor is None or actor.role == Role.ADMIN:
            return None
        return actor.account.institution_id

    async def summary(self, actor: Actor, rng: supervision.Range) -> Summary:
        """How many consultations of ``rng`` an export by ``actor`` would hold.

        Raises:
            Forbidden: ``role_forbidden`` for anyone but coordinators and administrators.
        """
        await self._allowed(actor, rng)
        scope = self._scope(actor)
        key = await self.key()

        def work(conn: sa.Connection) -> tuple[dict[str, int], Institution | None]:
            counts = store.count_requested(
                conn, start=rng.start, end=rng.end, consulted_institution_id=scope
            )
            return counts, store.get_institution(conn, scope) if scope else None

        counts, institution = await self.read(work)
        return Summary(
            range=rng,
            count=sum(counts.values()),
            by_state=counts,
            institution=institution,
            key_fingerprint=key.fingerprint,
        )

    async def export(
        self, actor: Actor | None, rng: supervision.Range, *, fmt: str = "zip"
    ) -> supervision_archive.Export:
        """The signed export of ``rng`` for ``actor``, audited.

        ``actor`` None is the server's operator (``teleconsult export supervision``):
        every consultation, audited without an account.

        Raises:
            Forbidden: ``role_forbidden`` for anyone but coordinators and administrators.
        """
        await self._allowed(actor, rng)
        scope = self._scope(actor)
        key = await self.key()
        deadlines = self.ctx.deadlines

        def rows(conn: sa.Connection) -> tuple[list[supervision.Source], Institution | None]:
            sources = [
                dataclasses.replace(
                    s,
                    accept_by=deadlines.accept_by(s.consultation),
                    complete_by=deadlines.complete_by(s.consultation),
                )
                for s in store.supervision_sources(
                    conn, start=rng.start, end=rng.end, consulted_institution_id=scope
                )
            ]
            return sources, store.get_institution(conn, scope) if scope else None

        # Read in a read transaction and made off the event loop: checking a
        # year's records against the schema takes seconds (about 1 ms each),
        # which must hold neither the single writer nor the loop. Nothing leaves
        # the server before the audit entry below, with the SHA-256 of the
        # manifest of exactly these files, is committed.
        sources, institution = await self.read(rows)
        result = await asyncio.to_thread(
            supervision_archive.build,
            sources,
            rng=rng,
            producer=supervision.Producer(version=self.version, institution=institution),
            generated_at=self.clock.now(),
            key=key,
            export_id=store.new_id(),
        )

        def audit(tx: Tx) -> None:
            tx.audit(
                "supervision.export",
                "supervision_export",
                result.export_id,
                range_from=rng.first.isoformat(),
                range_to=rng.last.isoformat(),
                scope_institution_id=scope,
                format=fmt,
                via="api" if actor is not None else "command line",
                count=result.count,
                manifest_sha256=result.manifest_sha256,
                key_fingerprint=key.fingerprint,
            )

        await self.write(actor, audit)
        return result
