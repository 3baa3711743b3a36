"""An OpenAPI-driven fuzz of every route (schemathesis): no 5xx, no traceback.

The schema is the app's own OpenAPI document (``build_spec(all_routes())``, what
``/api/openapi.json`` serves). For each operation, schemathesis generates valid
and invalid requests (bodies, path parameters, query strings), half of them
aimed at real objects of the demo community, and sends them as a logged-in user
to a real server on loopback. Every answer must be below 500 and the server must
log no ERROR (an unhandled exception is logged by ``web.errors``).

Deterministic for CI: hypothesis is derandomized (the same examples every run)
and bounded (``EXAMPLES`` per operation and mode); the whole file takes well
under a minute.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from records.demo import DEMO_PASSWORD
from web.app import VERSION, all_routes, create_app
from web.openapi import build_spec
from web.settings import Secret

from ..conftest import DB_NAME, ManualClock, make_settings
from ..orthanc import PASSWORD as ORTHANC_PASSWORD
from ..orthanc import USER as ORTHANC_USER
from ..orthanc import Orthanc, orthanc_available, orthanc_or_skip

SCHEMA = schemathesis.openapi.from_dict(
    build_spec(all_routes(), title="teleconsult API", version=VERSION)
)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Generated examples per operation, in each of the two modes.
EXAMPLES = 8
# Who sends them: the requesting clinic's doctor, the department's specialist (who
# may accept, sign and add to the consultation aimed at) and an administrator (the
# only one past the role check of /api/admin/...).
USERS = ("clinic1", "cardio1", "admin1")
# Logging out ends the fuzzing session itself; it takes no input to fuzz.
SKIPPED = {"DELETE /api/session"}


class ErrorLog(logging.Handler):
    """Every ERROR the server logs (an unhandled exception is one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        out = [self.format(r) for r in self.records]
        self.records.clear()
        return out


class LiveServer:
    """The app served on loopback from a thread with its own event loop."""

    def __init__(self, data_dir: Path, database_url: str = "", **overrides: Any) -> None:
        settings = make_settings(data_dir, database_url=database_url, **overrides)
        self.app = create_app(settings, clock=ManualClock())
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> None:
        self.thread.start()
        self._run(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self._run(site.start())
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def login(base: str, username: str) -> tuple[requests.Session, dict[str, str]]:
    session = requests.Session()
    resp = session.post(
        f"{base}/api/session", json={"username": username, "password": DEMO_PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return session, {"X-CSRF-Token": resp.json()["csrf_token"]}


class Fuzz:
    """The server, a logged-in session and real ids for path parameters."""

    def __init__(self, server: LiveServer, errors: ErrorLog, *, pacs: bool = False) -> None:
        self.server = server
        self.errors = errors
        self.pacs = pacs  # a (real, empty) PACS is configured
        self.session, self.headers = login(server.url, "clinic1")
        self.cookies = {"tc_session": self.session.cookies["tc_session"]}
        self.ids = self._objects()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        resp = self.session.request(
            method, self.server.url + path, headers=headers, timeout=30, **kwargs
        )
        assert resp.status_code < 300, (method, path, resp.text)
        return resp.json() if resp.content else None

    def _objects(self) -> dict[str, list[str]]:
        """A consultation, patient, consent and document of clinic1 to aim at."""
        patients = self._call("GET", "/api/patients")["patients"]
        departments = self._call("GET", "/api/departments")["departments"]
        pid = patients[0]["id"]
        made = self._call(
            "POST",
            "/api/consultations",
            json={
                "patient_id": pid,
                "department_id": departments[0]["id"],
                "urgency": "routine",
                "reason": "胸闷两周",
                "question": "是否需要冠脉造影？",
            },
        )["consultation"]
        document = self._call(
            "POST",
            f"/api/patients/{pid}/documents",
            params={"consultation_id": made["id"], "filename": "lab.txt"},
            data="血红蛋白 135 g/L".encode(),
            headers={"Content-Type": "text/plain"},
        )["document"]
        consent = self._call("GET", f"/api/patients/{pid}")["consents"][0]
        return {
            "patient_id": [p["id"] for p in patients],
            "consultation_id": [made["id"]],
            "consent_id": [consent["id"]],
            "document_id": [document["id"]],
            "department_id": [d["id"] for d in departments],
        }

    def as_user(self, username: str) -> Fuzz:
        """The same server and objects, logged in as ``username``."""
        other = object.__new__(Fuzz)
        other.server, other.errors, other.ids = self.server, self.errors, self.ids
        other.pacs = self.pacs
        other.session, other.headers = login(self.server.url, username)
        other.cookies = {"tc_session": other.session.cookies["tc_session"]}
        return other

    def strategy(self, operation: Any) -> st.SearchStrategy[Any]:
        """Valid and invalid requests, with generated ids or (half of them) real ones.

        The session cookie and CSRF header are fixed: what is fuzzed is the input
        of a logged-in user (authentication has tests of its own).
        """
        names = [p.name for p in operation.path_parameters]
        real = {n: self.ids[n][0] for n in names if n in self.ids}
        auth: dict[str, Any] = {"cookies": self.cookies, "headers": self.headers}
        strategies = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode, **auth))
            if real:
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters=real, **auth)
                )
        return st.one_of(strategies)


@pytest.fixture(scope="module")
def fuzz(
    tmp_path_factory: pytest.TempPathFactory, demo_template: Path | str, postgres: Any
) -> Iterator[Fuzz]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    # The suite's database: a copy of the demo file, or a database from the template.
    name = postgres.create(template=str(demo_template)) if postgres else ""
    if postgres is None:
        shutil.copy(demo_template, data_dir / DB_NAME)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    # The PACS routes answer 5xx without a PACS (pacs_not_configured): they are
    # fuzzed against a real, empty one (an attach then finds no such study).
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc")) if orthanc_available() else None
    overrides: dict[str, Any] = {}
    if pacs is not None:
        pacs.start()
        overrides = {
            "pacs_url": pacs.dicomweb_url,
            "pacs_username": ORTHANC_USER,
            "pacs_password": Secret(ORTHANC_PASSWORD),
        }
    server = LiveServer(data_dir, database_url=postgres.url(name) if postgres else "", **overrides)
    server.start()
    try:
        yield Fuzz(server, errors, pacs=pacs is not None)
    finally:
        server.stop()
        if pacs is not None:
            pacs.stop()
        logging.getLogger().removeHandler(errors)
        if postgres:
            postgres.drop(name)


@pytest.fixture(scope="module")
def users(fuzz: Fuzz) -> dict[str, Fuzz]:
    return {name: fuzz if name == "clinic1" else fuzz.as_user(name) for name in USERS}


@pytest.mark.parametrize("username", USERS)
@pytest.mark.parametrize(
    "operation",
    [op for op in OPERATIONS if op.label not in SKIPPED],
    ids=lambda op: op.label,
)
def test_no_request_makes_the_server_fail(
    users: dict[str, Fuzz], username: str, operation: Any
) -> None:
    fuzz = users[username]
    if "/pacs/" in operation.path and not fuzz.pacs:
        orthanc_or_skip()
    fuzz.errors.take()

    @settings(
        max_examples=EXAMPLES * 2,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz.strategy(operation))
    def check(case: Any) -> None:
        response = case.call(
            base_url=fuzz.server.url, session=fuzz.session, headers=fuzz.headers, timeout=30
        )
        logged = fuzz.errors.take()
        assert not logged, (case.as_curl_command(), logged)
        case.validate_response(response, checks=[not_a_server_error])

    check()


# What the fuzz found (each answered 500 before it was fixed).
FOUND = [
    "/api/recordings?page=" + "9" * 30,
    "/api/recordings?min_duration_ms=" + "9" * 30,
    "/api/recordings?max_duration_ms=99999999999999999999",
    "/api/recordings?from=0001-01-01T00:00:00%2B01:00",
    "/api/recordings?to=0001-01-01T00:30:00%2B05:00",
]


@pytest.mark.parametrize("path", FOUND)
def test_what_the_fuzz_found_is_refused_as_bad_input(fuzz: Fuzz, path: str) -> None:
    fuzz.errors.take()
    resp = fuzz.session.get(fuzz.server.url + path, headers=fuzz.headers, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_fields"
    assert fuzz.errors.take() == []


def test_every_route_is_fuzzed() -> None:
    labels = {op.label for op in OPERATIONS}
    assert labels == {f"{r.method} {r.path}" for r in all_routes()}
    assert SKIPPED <= labels
