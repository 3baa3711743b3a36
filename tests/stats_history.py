"""A year of consultation history for the statistics tests, written with the real
schema (``records.store``) on top of the demo community.

Seeded, so every run makes the same few hundred consultations: across twelve
months, the demo hospital's four departments and a second hospital's (which a
coordinator of the first must not count), the four requesting institutions,
the three urgencies and every outcome (waiting, escalated, declined, cancelled
before and after acceptance, accepted, live, ended, signed, referred, with an
addendum now and then), with recordings finished, failed, recovered, purged or
interrupted, or none (no consent).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from records import store
from records.db import Database
from records.schema import accounts, departments, institutions, patients

DECLINE_REASONS = ("超出本科诊疗范围", "资料不全，请补充检查结果", "建议转皮肤科", "")
CANCEL_REASONS = ("患者已转院", "患者家属拒绝", "病情好转")
SHA = "0" * 64


@dataclass(frozen=True)
class History:
    """What was made: the ids the tests filter by."""

    hospital: str
    other_hospital: str
    departments: dict[str, str]
    clinics: list[str]
    count: int


async def make_history(
    db: Database, *, now: datetime, count: int = 320, seed: int = 11, start: datetime | None = None
) -> History:
    """Write ``count`` consultations requested over the year before ``now``."""
    rng = random.Random(seed)  # noqa: S311 - repeatable test data, not secrets
    first = start or datetime(now.year - 1, now.month, 1, tzinfo=UTC)
    span = (now - timedelta(hours=1) - first).total_seconds()

    def work(conn: sa.Connection) -> History:
        hospital = conn.execute(
            sa.select(institutions.c.id).where(institutions.c.kind == "specialist_hospital")
        ).scalar_one()
        clinics = list(
            conn.execute(
                sa.select(institutions.c.id)
                .where(institutions.c.kind != "specialist_hospital")
                .order_by(institutions.c.name)
            ).scalars()
        )
        other = store.add_institution(
            conn, name="市第二人民医院", kind="specialist_hospital", region="市区"
        )
        other_dept = store.add_department(conn, institution_id=other, code="neuro", name="神经内科")
        depts = dict(
            conn.execute(
                sa.select(departments.c.code, departments.c.id).where(
                    departments.c.institution_id == hospital
                )
            ).all()
        )
        people = dict(conn.execute(sa.select(accounts.c.username, accounts.c.id)).all())
        patient = conn.execute(sa.select(patients.c.id).limit(1)).scalar_one()
        choices = [*depts.values(), *depts.values(), other_dept]
        for _ in range(count):
            created = first + timedelta(seconds=rng.uniform(0, span))
            dept = rng.choice(choices)
            urgency = rng.choices(["emergency", "urgent", "routine"], weights=[1, 2, 6])[0]
            cid = store.add_consultation(
                conn,
                patient_id=patient,
                requesting_institution_id=rng.choice(clinics),
                requested_by=people["clinic1"],
                department_id=dept,
                consulted_institution_id=other if dept == other_dept else hospital,
                urgency=urgency,
                reason="胸闷",
                question="是否需要转诊？",
                created_at=created,
            )
            store.add_event(
                conn, consultation_id=cid, at=created, kind="requested", actor_id=people["clinic1"]
            )
            _outcome(conn, rng, cid, created, now, people, urgency)
        return History(
            hospital=hospital,
            other_hospital=other,
            departments=depts,
            clinics=clinics,
            count=count,
        )

    return await db.run_write(work)


def _outcome(
    conn: sa.Connection,
    rng: random.Random,
    cid: str,
    created: datetime,
    now: datetime,
    people: dict[str, str],
    urgency: str,
) -> None:
    """Walk one consultation to a random outcome, every step before ``now``
    (emergencies about eight times faster, so that some meet their 12 h)."""
    specialist, coord = people["cardio1"], people["coord1"]
    pace = 0.12 if urgency in ("emergency", "urgent") else 1.0

    def at(after: datetime, lo: float, hi: float) -> datetime | None:
        moment = after + timedelta(hours=rng.uniform(lo, hi) * pace)
        return moment if moment < now else None

    def event(kind: str, when: datetime, actor: str | None, **data: str) -> None:
        store.add_event(conn, consultation_id=cid, at=when, kind=kind, actor_id=actor, data=data)

    def state(value: str, **values: object) -> None:
        store.set_consultation(conn, cid, state=value, **values)

    fate = rng.choices(
        ["waiting", "declined", "cancelled", "accepted", "done"], weights=[1, 1, 1, 1, 6]
    )[0]
    if fate == "waiting":
        if rng.random() < 0.5 and (when := at(created, 2, 20)):
            event("escalated", when, None)
            state("escalated", escalated=True)
        return
    if fate == "declined":
        if when := at(created, 0.2, 70):
            reason = rng.choice(DECLINE_REASONS)
            event("declined", when, specialist, reason=reason)
            state("declined", decline_reason=reason)
        return
    if fate == "cancelled":
        if when := at(created, 0.2, 90):
            event("cancelled", when, people["clinic1"], reason=rng.choice(CANCEL_REASONS))
            state("cancelled")
        return
    accepted = at(created, 0.05, 60)
    if accepted is None:
        return
    if rng.random() < 0.2:
        event("assigned", accepted, coord)
    else:
        event("accepted", accepted, specialist)
    state("accepted", assigned_specialist_id=specialist)
    if fate == "accepted":
        if rng.random() < 0.5 and (when := at(accepted, 1, 100)):
            event("cancelled", when, people["clinic1"], reason=rng.choice(CANCEL_REASONS))
            state("cancelled")
        return
    live = at(accepted, 0.1, 30)
    if live is None:
        return
    event("live", live, None)
    state("live")
    _recordings(conn, rng, cid, live, people)
    ended = at(live, 0.2, 1.5)
    if ended is None:
        return
    event("ended", ended, specialist)
    state("ended")
    signed = at(ended, 0.05, 120)
    if signed is None:
        return
    kind = "referral" if rng.random() < 0.2 else "opinion"
    parent = store.add_opinion(
        conn,
        consultation_id=cid,
        author_id=specialist,
        kind=kind,
        body={"text": "意见"},
        signed_at=signed,
        sha256=SHA,
    )
    event("signed" if kind == "opinion" else "referred", signed, specialist)
    state("signed" if kind == "opinion" else "referred")
    if rng.random() < 0.15 and (later := at(signed, 1, 48)):
        store.add_opinion(
            conn,
            consultation_id=cid,
            author_id=specialist,
            kind="addendum",
            parent_id=parent,
            body={"text": "补充"},
            signed_at=later,
            sha256=SHA,
        )
        event("addendum", later, specialist)


def _recordings(
    conn: sa.Connection, rng: random.Random, cid: str, live: datetime, people: dict[str, str]
) -> None:
    """No recording (no consent), or one leg per participant ending one of several ways."""
    plan = rng.choices(
        ["none", "finished", "failed", "recovered", "purged", "interrupted"],
        weights=[2, 6, 1, 1, 1, 1],
    )[0]
    if plan == "none":
        return
    for who in ("clinic1", "cardio1"):
        status = "finished"
        if who == "cardio1" and plan in ("failed", "recovered", "purged"):
            status = plan
        rid = store.add_recording(
            conn,
            consultation_id=cid,
            participant_id=people[who],
            part=1,
            path=f"{cid}/{who}-1.webm",
            container="webm",
            started_at=live,
        )
        store.update_recording(conn, rid, status=status, finished_at=live + timedelta(hours=1))
    if plan == "interrupted":
        store.add_event(
            conn,
            consultation_id=cid,
            at=live + timedelta(minutes=5),
            kind="recording_interrupted",
            actor_id=people["clinic1"],
            data={},
        )
