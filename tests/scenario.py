"""One way for tests to set up a consultation: through the real API of the test app.

``scenario`` (a fixture in ``tests/conftest.py``) logs in the demo users, picks a
demo patient (recording a consent first if asked), requests a consultation and
walks it to any lifecycle state the way people would, then optionally joins
participants over ``/ws``::

    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    a, b = c.sockets["clinic1"], c.sockets["cardio1"]

The demo community (``records/demo.py``) has three patients of clinic1:
``刘大爷`` (the default) consented to consultation and recording, ``陈阿姨`` and
``小明`` to nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import ClientSession, CookieJar

from records.demo import DEMO_PASSWORD
from signaling.workflow.lifecycle import State

from .web.calls import Socket, connect, join

Scope = Literal["consultation", "recording"]

# The demo patient with consent to both consultation and recording.
CONSENTED = "刘大爷"
OPINION = {
    "findings": "心电图示V1-V4 ST段压低",
    "impression": "不稳定型心绞痛可能",
    "recommendations": "建议转诊行冠脉CTA；阿司匹林100mg qd",
}
REFERRAL = {"reason": "需门诊行运动平板试验"}
REQUEST = {
    "reason": "胸闷两周，心电图ST段改变",
    "question": "是否需要转上级医院行冠脉造影？",
}
# The demo specialist who takes a department's requests unless told otherwise.
SPECIALIST = {
    "cardiology": "cardio1",
    "respiratory": "resp1",
    "paediatrics": "paed1",
    "dermatology": "derm1",
}
# The steps from a fresh request to each state. "escalate" is the matching
# service's overdue check with the manual clock moved past the urgency's limit.
PATHS: dict[State, tuple[str, ...]] = {
    State.REQUESTED: (),
    State.ESCALATED: ("escalate",),
    State.ACCEPTED: ("accept",),
    State.LIVE: ("accept", "start"),
    State.ENDED: ("accept", "start", "end"),
    State.SIGNED: ("accept", "start", "end", "opinion"),
    State.REFERRED: ("accept", "start", "end", "referral"),
    State.CANCELLED: ("cancel",),
    State.DECLINED: ("decline",),
}


@dataclass
class User:
    """A logged-in test user with their own cookie jar."""

    username: str
    # A TestClient, or an aiohttp ClientSession with a base_url: both take paths.
    client: Any
    csrf: str
    account: dict[str, Any]

    def _headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}

    async def get(self, path: str) -> tuple[int, Any]:
        resp = await self.client.get(path)
        return resp.status, await _json(resp)

    async def post(self, path: str, json: Any = None) -> tuple[int, Any]:
        resp = await self.client.post(
            path, json=json if json is not None else {}, headers=self._headers()
        )
        return resp.status, await _json(resp)

    async def delete(self, path: str) -> tuple[int, Any]:
        resp = await self.client.delete(path, headers=self._headers())
        return resp.status, await _json(resp)


async def _json(resp: Any) -> Any:
    if resp.status == 204:
        return None
    return await resp.json()


@dataclass
class Consultation:
    """A consultation the scenario built, and the people and sockets around it."""

    json: dict[str, Any]  # the consultation as the API last returned it
    patient_id: str
    clinic: Any  # the requesting clinic doctor (a logged-in ``User``)
    specialist: Any  # the department's specialist who accepted (or would)
    users: dict[str, Any]  # everyone the scenario logged in, by username
    sockets: dict[str, Socket] = field(default_factory=dict)  # joined over /ws
    joins: dict[str, dict[str, Any]] = field(default_factory=dict)  # their "joined" replies
    opinion: dict[str, Any] | None = None  # the signed opinion or referral

    @property
    def id(self) -> str:
        return str(self.json["id"])

    @property
    def url(self) -> str:
        return f"/api/consultations/{self.id}"

    @property
    def state(self) -> str:
        return str(self.json["state"])


def tab_of(username: str) -> str:
    """The tab id a participant joined with (a page coming back reuses it)."""
    return f"tab-{username}"


class Scenario:
    """Builds test data through the HTTP API of the running test app."""

    def __init__(
        self,
        login: Callable[[str], Awaitable[Any]],
        *,
        matching: Any = None,
        clock: Any = None,
    ) -> None:
        self._login = login
        self._matching = matching
        self._clock = clock
        self.users: dict[str, Any] = {}
        self._ids: dict[str, str] | None = None

    async def user(self, username: str) -> Any:
        """``username`` logged in (one session per user, reused)."""
        if username not in self.users:
            self.users[username] = await self._login(username)
        return self.users[username]

    async def ids(self) -> dict[str, str]:
        """Ids of the demo patients (by name) and departments (by code), as clinic1 sees them."""
        if self._ids is None:
            clinic = await self.user("clinic1")
            status, data = await clinic.get("/api/patients")
            assert status == 200, data
            ids = {p["name"]: p["id"] for p in data["patients"]}
            status, data = await clinic.get("/api/departments")
            assert status == 200, data
            ids.update({d["code"]: d["id"] for d in data["departments"]})
            self._ids = ids
        return dict(self._ids)

    async def patient(
        self, name: str = CONSENTED, *, consent: Collection[Scope] = (), clinic: str = "clinic1"
    ) -> str:
        """The id of the demo patient ``name``, after recording a consent to ``consent``."""
        pid = (await self.ids())[name]
        if consent:
            status, data = await (await self.user(clinic)).post(
                f"/api/patients/{pid}/consents",
                {
                    "scope_consultation": "consultation" in consent,
                    "scope_recording": "recording" in consent,
                    "given_by": name,
                    "relationship": "self",
                },
            )
            assert status == 201, data
        return pid

    async def consultation(
        self,
        state: State | str = State.REQUESTED,
        *,
        patient: str = CONSENTED,
        consent: Collection[Scope] = (),
        department: str = "cardiology",
        urgency: str = "routine",
        clinic: str = "clinic1",
        specialist: str | None = None,
        joined: Collection[str] = (),
        opinion: dict[str, Any] = OPINION,
        referral: dict[str, Any] = REFERRAL,
        **fields: Any,
    ) -> Consultation:
        """A consultation about ``patient`` in ``state``.

        Args:
            state: where to take it (a ``State`` or its value). ``escalated``
                needs the scenario's matching service and manual clock (the
                clock moves on).
            patient: a demo patient's name.
            consent: scopes of a consent to record for the patient first.
            department: the code of the department asked.
            urgency: routine, urgent or emergency.
            clinic: who requests (and starts, ends and cancels).
            specialist: who accepts (and declines, signs or refers); by default
                the demo specialist of ``department``.
            joined: usernames that connect to ``/ws`` and join the call once the
                consultation is accepted. Two or more take it live by joining
                (as in a real call) instead of the start button, so they need
                ``live`` or a state after it.
            opinion: the body signed for ``signed``.
            referral: the body sent for ``referred``.
            **fields: more (or other) fields of the request body.
        """
        doctor = await self.user(clinic)
        expert = await self.user(specialist or SPECIALIST[department])
        ids = await self.ids()
        pid = await self.patient(patient, consent=consent, clinic=clinic)
        status, data = await doctor.post(
            "/api/consultations",
            {
                "patient_id": pid,
                "department_id": ids[department],
                "urgency": urgency,
                **REQUEST,
                **fields,
            },
        )
        assert status == 201, data
        c = Consultation(data["consultation"], pid, doctor, expert, self.users)
        steps = PATHS[State(state)]
        live_by_joining = len(joined) >= 2 and "start" in steps
        if live_by_joining:
            steps = tuple(s for s in steps if s != "start")
        if joined and "accept" not in steps:
            raise ValueError(f"nobody can join a call that is {state}")
        if len(joined) >= 2 and not live_by_joining:
            raise ValueError(f"two who join take the call live, not {state}")
        stale = False
        for step in steps:
            if step == "escalate":
                await self._escalate(c, urgency)
                stale = True
                continue
            who, body = {
                "accept": (expert, None),
                "start": (doctor, None),
                "end": (doctor, None),
                "cancel": (doctor, {"reason": "患者已自行转院"}),
                "decline": (expert, {"reason": "不属本科范围"}),
                "opinion": (expert, opinion),
                "referral": (expert, referral),
            }[step]
            status, data = await who.post(f"{c.url}/{step}", body)
            assert status in (200, 201), (step, data)
            if "consultation" in data:
                c.json, stale = data["consultation"], False
            else:
                c.opinion, stale = data["opinion"], True
            if step == "accept" and joined:
                await self._join(c, joined)
                stale = live_by_joining
        if stale:
            status, data = await doctor.get(c.url)
            assert status == 200, data
            c.json = data["consultation"]
        assert c.state == state, (state, c.json)
        return c

    async def _escalate(self, c: Consultation, urgency: str) -> None:
        if self._matching is None or self._clock is None:
            raise ValueError("escalation needs the matching service and the manual clock")
        self._clock.advance(self._matching.escalate_after[urgency] + 1)
        escalated = await self._matching.escalate_overdue()
        assert c.id in [e.id for e in escalated]

    async def _join(self, c: Consultation, usernames: Collection[str]) -> None:
        for name in usernames:
            sock = await connect(await self.user(name))
            reply = await join(sock, c.id, tab=tab_of(name))
            assert reply["type"] == "joined", (name, reply)
            c.sockets[name], c.joins[name] = sock, reply
        # The last one to join is the last whose join the server handles (going
        # live among it); once its ping is answered, that is done. What came
        # meanwhile is put back for the test to read.
        last = c.sockets[name]
        last.put_back(await last.drain())


@asynccontextmanager
async def over_http(base_url: str) -> AsyncIterator[Scenario]:
    """A scenario against a server reached over HTTP (a live app or a server process),
    with API sessions of its own; without the manual clock it cannot escalate."""
    sessions: list[ClientSession] = []

    async def login(username: str) -> User:
        session = ClientSession(base_url=base_url, cookie_jar=CookieJar(unsafe=True))
        sessions.append(session)
        body = {"username": username, "password": DEMO_PASSWORD}
        async with session.post("/api/session", json=body) as resp:
            assert resp.status == 200, await resp.text()
            data = await resp.json()
        return User(username, session, data["csrf_token"], data["account"])

    try:
        yield Scenario(login)
    finally:
        for session in sessions:
            await session.close()
