"""The specialist's signed opinion or referral, and signed addenda to it."""

from __future__ import annotations

import hashlib
from typing import Any

from records import store, summary
from records.canonical import canonical_json
from records.models import Consultation, Opinion
from records.vocab import ErrorCode, EventKind
from signaling.errors import Forbidden, IllegalTransition, NotFound
from signaling.workflow.base import Actor, Service, Tx, stored
from signaling.workflow.lifecycle import Action, State, next_state


class OpinionService(Service):
    """Sign an opinion or a referral; add signed addenda."""

    async def sign(
        self, actor: Actor, consultation_id: str, *, kind: str, body: dict[str, Any]
    ) -> Opinion:
        """The assigned specialist signs the opinion (``kind='opinion'``) or refers
        the patient to an in-person visit (``kind='referral'``)."""
        action = Action.SIGN if kind == "opinion" else Action.REFER
        digest = hashlib.sha256(canonical_json(body)).hexdigest()

        def work(tx: Tx) -> tuple[Consultation, Opinion]:
            c = tx.consultation(consultation_id)
            next_state(c.state, action)  # the state is checked before the person
            if actor.id != c.assigned_specialist_id:
                raise Forbidden("only the assigned specialist signs", code=ErrorCode.NOT_ASSIGNED)
            now = tx.now
            c = tx.transition(
                c,
                action,
                EventKind.SIGNED if kind == "opinion" else EventKind.REFERRED,
                {"sha256": digest},
            )
            oid = store.add_opinion(
                tx.conn,
                consultation_id=c.id,
                author_id=actor.id,
                kind=kind,
                body=body,
                signed_at=now,
                sha256=digest,
            )
            return c, next(o for o in store.list_opinions(tx.conn, c.id) if o.id == oid)

        c, opinion = await self.write(actor, work)
        await self.notify(c)
        return opinion

    async def addendum(
        self, actor: Actor, consultation_id: str, parent_id: str, body: dict[str, Any]
    ) -> Opinion:
        """The author adds to their signed opinion or referral.

        The addendum is signed on submission with its own hash and names its
        parent; the signed original is never changed.
        """
        digest = hashlib.sha256(canonical_json(body)).hexdigest()

        def work(tx: Tx) -> tuple[Consultation, Opinion]:
            c = tx.consultation(consultation_id)
            if c.state not in (State.SIGNED, State.REFERRED):
                raise IllegalTransition(
                    f"only a signed opinion takes an addendum; the consultation is {c.state}",
                    code=ErrorCode.NOT_SIGNED,
                )
            parent = summary.get_opinion(tx.conn, parent_id)
            if parent is None or parent.consultation_id != c.id or parent.kind == "addendum":
                raise NotFound(
                    "opinion not found", fields=("opinion_id",), probe=("opinion", parent_id)
                )
            if actor.id != parent.author_id:
                raise Forbidden(
                    "only the author adds to a signed opinion", code=ErrorCode.NOT_AUTHOR
                )
            oid = store.add_opinion(
                tx.conn,
                consultation_id=c.id,
                author_id=actor.id,
                kind="addendum",
                parent_id=parent.id,
                body=body,
                signed_at=tx.now,
                sha256=digest,
            )
            tx.event(
                c.id,
                EventKind.ADDENDUM,
                {"opinion_id": oid, "parent_id": parent.id, "sha256": digest},
            )
            tx.audit(
                "consultation.addendum",
                "consultation",
                c.id,
                opinion_id=oid,
                parent_id=parent.id,
                sha256=digest,
            )
            return c, stored(summary.get_opinion(tx.conn, oid))

        c, opinion = await self.write(actor, work)
        await self.notify(c)
        return opinion
