"""Pre-call checks: one row per check a participant ran, never changed afterwards."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from records.models import PrecallCheck
from records.schema import precall_checks
from records.store.base import first_row, new_id


def add_precall_check(
    conn: sa.Connection,
    *,
    consultation_id: str,
    participant_id: str,
    checked_at: datetime,
    verdict: str,
    report: dict[str, Any],
) -> PrecallCheck:
    """Store a finished check; the stored row."""
    cid = new_id()
    conn.execute(
        precall_checks.insert().values(
            id=cid,
            consultation_id=consultation_id,
            participant_id=participant_id,
            checked_at=checked_at,
            verdict=verdict,
            report=report,
        )
    )
    row = first_row(conn, sa.select(precall_checks).where(precall_checks.c.id == cid))
    if row is None:
        raise RuntimeError("a pre-call check written in this transaction is missing")
    return PrecallCheck.from_row(row)


def latest_precall_checks(conn: sa.Connection, consultation_id: str) -> list[PrecallCheck]:
    """The newest check of each participant of a consultation, newest first."""
    rows = conn.execute(
        sa.select(precall_checks)
        .where(precall_checks.c.consultation_id == consultation_id)
        .order_by(precall_checks.c.checked_at.desc(), precall_checks.c.id)
    ).mappings()
    latest: dict[str, PrecallCheck] = {}
    for row in rows:
        check = PrecallCheck.from_row(row)
        latest.setdefault(check.participant_id, check)
    return list(latest.values())
