"""Audited transactions shared by the use-case services.

Every service acts on behalf of an ``Actor`` and writes what it did to the audit
log; a refused look at something the actor may not see (a ``NotFound`` carrying a
probe) rolls its transaction back, and the attempt itself is then recorded in a
transaction of its own, so that probing across institutions leaves a trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from records import audit
from records.clock import Clock
from records.db import Database
from records.models import Account
from signaling.errors import NotFound


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who is acting, and from where (for the audit log)."""

    account: Account
    client_addr: str | None = None

    @property
    def id(self) -> str:
        """The account id."""
        return self.account.id

    @property
    def role(self) -> str:
        """The account's role."""
        return self.account.role


def denied_action(kind: str) -> str:
    """The audit action of a refused look at an object of ``kind``."""
    return f"{kind}.denied"


class Audited:
    """The audit and transaction helpers of one service (its database and clock)."""

    def __init__(
        self, db: Database, clock: Clock, denied: Callable[[str], str] = denied_action
    ) -> None:
        """Use ``db`` and ``clock``; ``denied`` names the action of a refused look."""
        self.db = db
        self.clock = clock
        self.denied = denied

    async def audit(
        self,
        conn: AsyncConnection,
        actor: Actor | None,
        action: str,
        object_type: str,
        object_id: str | None,
        **detail: Any,
    ) -> None:
        """Append one audit entry for ``actor`` (None: the system) in ``conn``'s transaction."""
        await audit.append(
            conn,
            at=self.clock.now(),
            actor_id=actor.id if actor else None,
            action=action,
            object_type=object_type,
            object_id=object_id,
            client_addr=actor.client_addr if actor else None,
            detail=detail,
        )

    @asynccontextmanager
    async def tx(self, actor: Actor, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """A transaction on behalf of ``actor``; a refused probe is audited after it."""
        try:
            if write:
                async with self.db.write() as conn:
                    yield conn
            else:
                async with self.db.read() as conn:
                    yield conn
        except NotFound as exc:
            if exc.probe is not None:
                kind, object_id = exc.probe
                async with self.db.write() as conn:
                    await self.audit(conn, actor, self.denied(kind), kind, object_id)
            raise
