"""The pre-call check: network probes, and the kept results.

A clinic tests its setup 30-60 minutes before a consultation; so does the
specialist. The page measures camera, microphone and speaker itself and the
network against this server's probe peer (``media.probe``); this service
answers the probe offers and keeps each finished check with the consultation:
one row (verdict, figures, reasons; ``precall_verdict`` decides), a
``precall_checked`` timeline event and an audit entry, in one transaction.

Who: clinic doctors and specialists who may see the consultation (a look at
one they may not see is the same 404 as an unknown id, and audited).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from media.probe import ProbeBusy, Prober, ProbeRefused
from records import store
from records.models import Consultation, PrecallCheck
from records.vocab import ErrorCode, EventKind, Role
from signaling.errors import Invalid, SignalingError
from signaling.workflow.base import Actor, Context, Service, Tx
from signaling.workflow.precall_verdict import Report, best_path, judge

CALL_ROLES = (Role.CLINIC_DOCTOR, Role.SPECIALIST)


class PrecallService(Service):
    """Answers network probes and keeps pre-call checks with their consultation."""

    def __init__(self, ctx: Context, *, prober: Prober) -> None:
        """Wire the service with the app's context and the media plane's prober."""
        super().__init__(ctx)
        self.prober = prober

    async def probe(self, actor: Actor, consultation_id: str, offer_sdp: str) -> str:
        """Answer a page's probe offer for a check of this consultation; the answer SDP.

        Raises:
            Invalid: the offer is not a probe offer (field ``sdp``).
            SignalingError: too many probes are running (``too_many_requests``).
        """
        self.require_role(actor, *CALL_ROLES)

        def look(tx: Tx) -> None:
            tx.consultation(consultation_id)
            tx.audit("precall.probe", "consultation", consultation_id)

        await self.write(actor, look)
        try:
            return await self.prober.answer(offer_sdp)
        except ProbeRefused as exc:
            raise Invalid(str(exc), code=ErrorCode.INVALID_FIELDS, fields=("sdp",)) from None
        except ProbeBusy as exc:
            raise SignalingError(str(exc), code=ErrorCode.TOO_MANY_REQUESTS) from None

    async def record(self, actor: Actor, consultation_id: str, report: Report) -> PrecallCheck:
        """Judge and keep a finished check, with its timeline event and audit entry."""
        self.require_role(actor, *CALL_ROLES)
        verdict, reasons = judge(report)
        best = best_path(report)
        stored: dict[str, Any] = {
            **dataclasses.asdict(report),
            "best_path": best.name if best else None,
            "reasons": [r.as_json() for r in reasons],
        }

        def work(tx: Tx) -> tuple[PrecallCheck, Consultation]:
            c = tx.consultation(consultation_id)
            check = store.add_precall_check(
                tx.conn,
                consultation_id=c.id,
                participant_id=tx.account.id,
                checked_at=tx.now,
                verdict=verdict.value,
                report=stored,
            )
            tx.event(c.id, EventKind.PRECALL_CHECKED, {"check_id": check.id, "verdict": verdict})
            tx.audit("precall.checked", "consultation", c.id, check_id=check.id, verdict=verdict)
            return check, c

        check, consultation = await self.write(actor, work)
        # The consultation pages of everyone who may see it show the new check.
        await self.notify(consultation)
        return check

    async def latest(self, actor: Actor, consultation_id: str) -> list[PrecallCheck]:
        """The newest check of each participant who ran one, newest first."""

        def work(tx: Tx) -> list[PrecallCheck]:
            c = tx.consultation(consultation_id)
            tx.audit("precall.viewed", "consultation", c.id)
            return store.latest_precall_checks(tx.conn, c.id)

        return await self.write(actor, work)
