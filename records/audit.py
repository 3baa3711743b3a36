"""The append-only, hash-chained audit log.

Entry *n* stores ``hash = SHA-256(canonical JSON of its fields + hash of entry n-1)``.
Editing an entry breaks its hash; inserting or removing one breaks the sequence or
the link to the previous hash; removing the newest entries is caught by the
``audit_head`` row, which appending updates in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from records.db import upsert
from records.schema import audit_head, audit_log

GENESIS = "0" * 64


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor_id: str | None,
    action: str,
    object_type: str,
    object_id: str | None,
    client_addr: str | None,
    detail: dict[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 that chains one entry to the previous one."""
    canonical = json.dumps(
        [
            seq,
            at.astimezone(UTC).isoformat(timespec="microseconds"),
            actor_id,
            action,
            object_type,
            object_id,
            client_addr,
            detail,
            prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((canonical).encode()).hexdigest()


def append(
    conn: sa.Connection,
    *,
    at: datetime,
    actor_id: str | None,
    action: str,
    object_type: str,
    object_id: str | None = None,
    client_addr: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry inside the caller's write transaction.

    Only the services' shared base (``signaling.workflow.base``) calls this: it is
    the one door to the audit log.

    Args:
        conn: a connection inside ``Database.run_write()``.
        at: when it happened.
        actor_id: the account that acted, or None for the system.
        action: a dotted verb, e.g. ``patient.read``.
        object_type: what kind of object was touched.
        object_id: which one.
        client_addr: the client's network address.
        detail: small JSON-able facts; never names, ID numbers or free text.

    Returns:
        The entry's sequence number.
    """
    detail = detail or {}
    # Locking the head row serializes appenders on PostgreSQL (SQLite has one writer).
    last, prev = _locked_head(conn)
    seq = last + 1
    digest = entry_hash(
        seq=seq,
        at=at,
        actor_id=actor_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        client_addr=client_addr,
        detail=detail,
        prev_hash=prev,
    )
    conn.execute(
        audit_log.insert().values(
            seq=seq,
            at=at,
            actor_id=actor_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            client_addr=client_addr,
            detail=detail,
            prev_hash=prev,
            hash=digest,
        )
    )
    conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return seq


def _locked_head(conn: sa.Connection) -> tuple[int, str]:
    query = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    head = conn.execute(query.with_for_update()).first()
    if head is None:
        # Migration 0006 creates the row; a database without it gets it here. ON
        # CONFLICT, because concurrent first appends would otherwise all insert it
        # and all but one fail (14 of 20 did, on PostgreSQL, before 0006).
        conn.execute(
            upsert(conn, audit_head).values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing()
        )
        head = conn.execute(query.with_for_update()).one()
    return int(head.seq), str(head.hash)


@dataclass
class Verification:
    """The outcome of checking the chain."""

    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def verify(conn: sa.Connection, *, batch: int = 5000) -> Verification:
    """Walk the whole chain and report every break.

    Args:
        conn: any connection.
        batch: rows fetched per query.

    Returns:
        The number of entries checked and a description of each problem.
    """
    result = Verification()
    expected_seq, prev = 1, GENESIS
    last_seq = 0
    while True:
        rows = (
            (
                conn.execute(
                    sa.select(audit_log)
                    .where(audit_log.c.seq > last_seq)
                    .order_by(audit_log.c.seq)
                    .limit(batch)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            result.entries += 1
            if row["seq"] != expected_seq:
                result.problems.append(
                    f"entry {row['seq']}: expected sequence {expected_seq} "
                    "(an entry was removed or inserted)"
                )
            if row["prev_hash"] != prev:
                result.problems.append(f"entry {row['seq']}: does not link to the previous entry")
            digest = entry_hash(
                seq=row["seq"],
                at=row["at"],
                actor_id=row["actor_id"],
                action=row["action"],
                object_type=row["object_type"],
                object_id=row["object_id"],
                client_addr=row["client_addr"],
                detail=row["detail"],
                prev_hash=row["prev_hash"],
            )
            if digest != row["hash"]:
                result.problems.append(f"entry {row['seq']}: content does not match its hash")
            prev, expected_seq, last_seq = row["hash"], row["seq"] + 1, row["seq"]
    head = (conn.execute(sa.select(audit_head).where(audit_head.c.id == 1))).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != last_seq or head_hash != prev:
        result.problems.append(
            f"the chain ends at entry {last_seq} but the head records entry {head_seq} "
            "(newest entries were removed or the head was edited)"
        )
    return result
