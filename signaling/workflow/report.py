"""The consultation report (会诊报告单) as a PDF, and the check of a printed one.

Whoever may see a consultation may download its report once a signed opinion
or referral exists (the same rule as the consultation page: the requesting
clinic, the specialists of the department, the consulted hospital's
coordinators and reviewers, invitees); every download is audited with the
report's SHA-256. The QR code on the paper leads to ``verify``, which tells a
logged-in user who may see the consultation whether a report's SHA-256 is the
one the server would print now, one printed before a later addendum, or
neither. Everyone else gets the 404 of an id that never existed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from records import report_font, report_pdf, store
from records.models import Account, Opinion
from records.vocab import ErrorCode
from signaling.errors import IllegalTransition, Invalid
from signaling.workflow.base import Actor, Context, Service, Tx, stored

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class Report:
    """A consultation's report as made for one download."""

    pdf: bytes
    sha256: str
    url: str
    filename: str


@dataclass(frozen=True, kw_only=True)
class Verification:
    """What the server keeps, against the SHA-256 printed on a report.

    ``status`` is ``current`` (the report the server would print now),
    ``superseded`` (printed before a later signed addendum: what it shows was
    signed, but it is not all there is) or ``mismatch`` (not a report of this
    consultation's signed texts).
    """

    consultation_id: str
    given: str
    status: str
    current: str
    opinions: list[Opinion]
    people: dict[str, Account]


def _not_signed() -> IllegalTransition:
    return IllegalTransition(
        "the consultation has no signed opinion or referral yet: there is no report",
        code=ErrorCode.NOT_SIGNED,
    )


class ReportService(Service):
    """Make consultation reports and verify printed ones."""

    def __init__(self, ctx: Context, *, font: Path = report_font.DEFAULT_FONT) -> None:
        """Wire the service; ``font`` is the CJK font the report is set in."""
        super().__init__(ctx)
        self.font = font

    async def pdf(self, actor: Actor, consultation_id: str, *, base_url: str) -> Report:
        """The report of a consultation the actor may see, audited as downloaded.

        Args:
            base_url: the site's address as people reach it; the verification
                URL printed on the report (and in its QR code) starts with it.

        Raises:
            NotFound: the actor may not see the consultation (or it does not exist).
            IllegalTransition: ``not_signed``, no signed opinion or referral yet.
            ReportFontMissing: the server lacks the CJK font (nothing is audited).
        """

        def work(tx: Tx) -> report_pdf.ReportData:
            conn = tx.conn
            c = tx.consultation(consultation_id)
            opinions = store.list_opinions(conn, c.id)
            if not report_pdf.has_signed_outcome(opinions):
                raise _not_signed()
            # Checked before the download is audited: a report that cannot be
            # made was not handed out.
            report_font.face_index(self.font)
            events = store.list_events(conn, c.id)
            people = store.get_accounts(
                conn,
                {
                    c.requested_by,
                    *([c.assigned_specialist_id] if c.assigned_specialist_id else []),
                    *(o.author_id for o in opinions),
                },
            )
            data = report_pdf.ReportData(
                consultation=c,
                patient=stored(store.get_patient(conn, c.patient_id)),
                department=stored(store.get_department(conn, c.department_id)),
                requesting_institution=stored(
                    store.get_institution(conn, c.requesting_institution_id)
                ),
                consulted_institution=stored(
                    store.get_institution(conn, c.consulted_institution_id)
                ),
                people=people,
                events=events,
                opinions=opinions,
                generated_at=tx.now,
            )
            tx.audit(
                "consultation.report",
                "consultation",
                c.id,
                patient_id=c.patient_id,
                sha256=report_pdf.report_digest(c.id, c.patient_id, opinions),
                opinion_ids=[o.id for o in report_pdf.signing_order(opinions)],
            )
            return data

        data = await self.write(actor, work)
        # Setting the text and cutting the font are CPU work: off the event loop.
        pdf, digest, url = await asyncio.to_thread(
            report_pdf.build_report, data, base_url=base_url, font_path=self.font
        )
        return Report(
            pdf=pdf,
            sha256=digest,
            url=url,
            filename=f"consultation-report-{data.consultation.id}.pdf",
        )

    async def verify(self, actor: Actor, consultation_id: str, sha256: str) -> Verification:
        """Check a printed report's SHA-256 against what is stored; audited.

        Raises:
            NotFound: the actor may not see the consultation (or it does not exist).
            IllegalTransition: ``not_signed``, no report of it can exist yet.
            Invalid: ``sha256`` is not 64 hexadecimal digits.
        """
        given = sha256.strip().lower()

        def work(tx: Tx) -> Verification:
            # Who may ask comes first: a stranger learns nothing from the answer
            # to a malformed hash either.
            c = tx.consultation(consultation_id)
            if not _SHA256.match(given):
                raise Invalid(
                    "sha256 must be the 64 hexadecimal digits printed on the report",
                    fields=("sha256",),
                )
            opinions = store.list_opinions(tx.conn, c.id)
            if not report_pdf.has_signed_outcome(opinions):
                raise _not_signed()
            current = report_pdf.report_digest(c.id, c.patient_id, opinions)
            if given == current:
                status = "current"
            elif given in report_pdf.earlier_digests(c.id, c.patient_id, opinions):
                status = "superseded"
            else:
                status = "mismatch"
            tx.audit(
                "consultation.report_verify",
                "consultation",
                c.id,
                patient_id=c.patient_id,
                sha256=given,
                status=status,
            )
            return Verification(
                consultation_id=c.id,
                given=given,
                status=status,
                current=current,
                opinions=report_pdf.signing_order(opinions),
                people=store.get_accounts(tx.conn, {o.author_id for o in opinions}),
            )

        return await self.write(actor, work)
