"""Issue 14, part 3: a patient's records fetched from the hospital's FHIR server.

A small FHIR server stands in for the hospital's (a real aiohttp server on a
loopback port): it finds the patient by identifier and serves ``$everything`` in
two pages of a published Synthea Bundle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from records.fhir_common import RESIDENT_ID_SYSTEM
from web.keys import SETTINGS
from web.settings import Settings

from ..conftest import make_settings
from ..scenario import Scenario
from .test_fhir_samples import expected_counts, load, shown_counts
from .test_summary import LIU_NID


class FakeFhir:
    def __init__(self) -> None:
        self.bundle = load("synthea-buster-hoeger")
        self.patient = next(
            e["resource"]
            for e in self.bundle["entry"]
            if e["resource"]["resourceType"] == "Patient"
        )
        self.searched: list[str] = []
        self.server: TestServer | None = None

    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/fhir"))

    async def search(self, request: web.Request) -> web.Response:
        self.searched.append(request.query.get("identifier", ""))
        found = request.query.get("identifier") == f"{RESIDENT_ID_SYSTEM}|{LIU_NID}"
        entry = [{"resource": self.patient, "search": {"mode": "match"}}] if found else []
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "entry": entry})

    async def everything(self, request: web.Request) -> web.Response:
        assert request.match_info["id"] == self.patient["id"]
        entries = [
            {"fullUrl": e["fullUrl"], "resource": e["resource"]} for e in self.bundle["entry"]
        ]
        half = len(entries) // 2
        if request.query.get("page") == "2":
            return web.json_response(
                {"resourceType": "Bundle", "type": "searchset", "entry": entries[half:]}
            )
        next_url = f"{self.url()}/Patient/{self.patient['id']}/$everything?page=2"
        return web.json_response(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": next_url}],
                "entry": entries[:half],
            }
        )


@pytest.fixture
async def fake_fhir() -> AsyncIterator[FakeFhir]:
    fake = FakeFhir()
    app = web.Application()
    app.router.add_get("/fhir/Patient", fake.search)
    app.router.add_get("/fhir/Patient/{id}/$everything", fake.everything)
    fake.server = TestServer(app)
    await fake.server.start_server()
    yield fake
    await fake.server.close()


@pytest.fixture
def settings(tmp_path: Path, demo_database: str, fake_fhir: FakeFhir) -> Settings:
    return make_settings(tmp_path, database_url=demo_database, fhir_server_url=fake_fhir.url())


async def test_fetch_by_resident_id_imports_every_page(
    scenario: Scenario, fake_fhir: FakeFhir
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await clinic.post(f"/api/patients/{pid}/fhir/fetch", {})
    assert status == 200, data
    assert fake_fhir.searched == [f"{RESIDENT_ID_SYSTEM}|{LIU_NID}"]
    assert data["imported"]["bundle_type"] == "searchset"
    assert data["imported"]["left_out"] == []
    assert shown_counts(data["summary"]) == expected_counts(fake_fhir.bundle)


async def test_an_identifier_the_server_does_not_know_is_404(
    scenario: Scenario, fake_fhir: FakeFhir
) -> None:
    clinic = await scenario.user("clinic1")
    pid = await scenario.patient()
    status, data = await clinic.post(
        f"/api/patients/{pid}/fhir/fetch", {"identifier": "urn:oid:1.2.3|nobody"}
    )
    assert (status, data["error"]["code"]) == (404, "not_found")
    assert data["error"]["fields"] == ["identifier"]


async def test_a_stranger_cannot_make_the_server_search(
    scenario: Scenario, fake_fhir: FakeFhir
) -> None:
    pid = await scenario.patient()
    other = await scenario.user("county1")
    status, data = await other.post(f"/api/patients/{pid}/fhir/fetch", {})
    assert status == 404, data
    assert fake_fhir.searched == []


class TestNotConfigured:
    @pytest.fixture
    def settings(self, tmp_path: Path, demo_database: str) -> Settings:
        return make_settings(tmp_path, database_url=demo_database)

    async def test_without_a_server_it_says_so(self, scenario: Scenario) -> None:
        clinic = await scenario.user("clinic1")
        pid = await scenario.patient()
        status, data = await clinic.post(f"/api/patients/{pid}/fhir/fetch", {})
        assert (status, data["error"]["code"]) == (404, "not_found")
        assert data["error"]["fields"] == ["fhir_server_url"]

    async def test_a_server_that_does_not_answer_is_503(
        self, scenario: Scenario, app: Any, unused_tcp_port: int
    ) -> None:
        settings = app[SETTINGS]
        object.__setattr__(settings, "fhir_server_url", f"http://127.0.0.1:{unused_tcp_port}/fhir")
        clinic = await scenario.user("clinic1")
        pid = await scenario.patient()
        status, data = await clinic.post(f"/api/patients/{pid}/fhir/fetch", {})
        assert (status, data["error"]["code"]) == (503, "fhir_server_unavailable")
