"""Replay: who may find and open recordings, and HTTP Range streaming."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from records import sealed
from records.schema import accounts, audit_log
from web.app import create_app
from web.keys import DB, RECORDING
from web.settings import Settings

from ..conftest import ManualClock, copy_of, logins, make_settings, new_copy
from ..pgcluster import Databases
from ..scenario import Scenario
from .calls import LEG_END_TIMEOUT
from .encryption import ENCRYPTION
from .test_recording import record_leg


@dataclass(frozen=True)
class RecordedCall:
    """A recorded call kept for the session: its database (a SQLite file or a
    PostgreSQL template database) and its recordings folder."""

    database: Path | str
    recordings: Path
    cid: str


class RecordedCalls:
    """One recorded call per encryption setting, recorded the first time a test
    asks and copied for each test after (a real call costs a few seconds)."""

    def __init__(self, folder: Path, demo_template: Path | str, postgres: Databases | None):
        self.folder, self.demo_template, self.postgres = folder, demo_template, postgres
        self.made: dict[str, RecordedCall] = {}

    def get(self, encryption: str) -> RecordedCall:
        if encryption not in self.made:
            data_dir = self.folder / encryption
            data_dir.mkdir()
            database, url = new_copy(self.demo_template, data_dir, self.postgres)
            settings = make_settings(data_dir, database_url=url, **ENCRYPTION[encryption])
            # A loop of its own, on a thread of its own: not the test's.
            with ThreadPoolExecutor(1) as thread:
                cid = thread.submit(asyncio.run, record_call(settings)).result()
            self.made[encryption] = RecordedCall(database, data_dir / "recordings", cid)
        return self.made[encryption]

    def drop(self) -> None:
        if self.postgres is not None:
            for call in self.made.values():
                self.postgres.drop(str(call.database))


async def record_call(settings: Settings) -> str:
    """A consultation between clinic1 and cardio1, both recorded, then ended; its id."""
    server = TestServer(create_app(settings, clock=ManualClock()))
    await server.start_server()
    try:
        async with logins(server) as login:
            scenario = Scenario(login)
            c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
            a, b = c.sockets["clinic1"], c.sockets["cardio1"]
            await a.send({"type": "chat", "text": "开始会诊"})
            await asyncio.gather(
                record_leg(a, "--codec", "vp8", "--seconds", "2"),
                record_leg(b, "--codec", "vp8", "--seconds", "2"),
            )
            # Each sender closes its connection when done: to the call that is an
            # interrupted leg (the participant is still in it); both are stored.
            ended = 0
            while ended < 2:
                leg = await a.recv("recording", within=LEG_END_TIMEOUT)
                ended += leg["state"] == "interrupted"
            await b.send({"type": "end"})
            while (await a.recv("state"))["state"] != "ended":
                pass
            return c.id
    finally:
        await server.close()


@pytest.fixture(scope="session")
def recorded_calls(
    tmp_path_factory: pytest.TempPathFactory,
    demo_template: Path | str,
    postgres: Databases | None,
) -> Iterator[RecordedCalls]:
    calls = RecordedCalls(tmp_path_factory.mktemp("recorded"), demo_template, postgres)
    yield calls
    calls.drop()


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: Databases | None,
    recorded_calls: RecordedCalls,
) -> Iterator[Settings]:
    """The test's settings; a test that asks for ``recorded`` starts from a copy of
    the recorded call (its database and its files) instead of the demo community."""
    encryption = encryption_of(request)
    if "recorded" not in request.fixturenames:
        demo_database = request.getfixturevalue("demo_database")
        yield make_settings(tmp_path, database_url=demo_database, **ENCRYPTION[encryption])
        return
    call = recorded_calls.get(encryption)
    shutil.copytree(call.recordings, tmp_path / "recordings")
    copy = copy_of(call.database, tmp_path, postgres)
    yield make_settings(tmp_path, database_url=next(copy), **ENCRYPTION[encryption])
    next(copy, None)  # drops a PostgreSQL copy


def encryption_of(request: pytest.FixtureRequest) -> str:
    """The test's encryption setting (``settings`` is parametrized indirectly)."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("settings", "plaintext")) if callspec else "plaintext"


@pytest.fixture
async def recorded(
    request: pytest.FixtureRequest, recorded_calls: RecordedCalls, scenario: Scenario
) -> dict[str, Any]:
    """A consultation between clinic1 and cardio1, both recorded, then ended
    (``settings`` copied it in): its id, the demo ids, and its two doctors."""
    return {
        "cid": recorded_calls.get(encryption_of(request)).cid,
        "ids": await scenario.ids(),
        "clinic": await scenario.user("clinic1"),
        "cardio": await scenario.user("cardio1"),
    }


async def test_reviewer_finds_and_opens_a_recorded_consultation(
    recorded: dict[str, Any], login_as: Any
) -> None:
    review = await login_as("review1")
    status, data = await review.get("/api/recordings")
    assert status == 200 and data["total"] == 1
    [item] = data["items"]
    assert item["consultation_id"] == recorded["cid"]
    assert item["recordings"] == 2 and item["department"]["code"] == "cardiology"
    assert item["specialist"]["display_name"] == "张伟"

    status, data = await review.get(f"/api/consultations/{recorded['cid']}/replay")
    assert status == 200
    recs = data["recordings"]
    assert sorted(r["participant"]["display_name"] for r in recs) == ["张伟", "王建国"]
    assert all(r["offset_ms"] >= 0 and r["duration_ms"] > 1000 for r in recs)
    kinds = [e["kind"] for e in data["events"]]
    assert "chat" in kinds and "ended" in kinds and "recording_finished" in kinds
    chat = next(e for e in data["events"] if e["kind"] == "chat")
    assert chat["offset_ms"] >= 0 and chat["data"]["text"] == "开始会诊"


async def _audited(app: Any, action: str, object_id: str) -> int:
    async with app[DB].read() as conn:
        rows = await conn.execute(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == action, audit_log.c.object_id == object_id)
        )
        return int(rows.scalar_one())


async def test_the_replay_page_comes_with_its_players_and_audits_the_replay_once(
    recorded: dict[str, Any], login_as: Any, app: Any
) -> None:
    """The page is rendered with its replay: each video's source is in the HTML
    (it loads while the page is parsed), and opening it is one audited replay."""
    cid = recorded["cid"]
    review = await login_as("review1")
    resp = await review.client.get(f"/consultations/{cid}/replay")
    html = await resp.text()
    assert resp.status == 200
    assert await _audited(app, "replay.start", cid) == 1
    _, data = await review.get(f"/api/consultations/{cid}/replay")
    recs = data["recordings"]
    assert len(recs) == 2
    # Each player comes with the viewer's watermark over it (the first picture
    # shows under it before any script ran): who and from where, and the time.
    mark = f"{review.account['display_name']} · {review.account['institution']['name']}"
    figures = html.split("<figure ")[1:]
    assert len(figures) == len(recs)
    first = min(r["offset_ms"] for r in recs)
    for rec, figure in zip(recs, figures, strict=True):
        assert f'data-recording-id="{rec["id"]}"' in figure
        # Each player where it stands as the page opens, at the first recorded
        # moment: the first recorded in the call, a later one not in it yet.
        if rec["offset_ms"] == first:
            assert 'data-state="inside"' in figure
            assert '<span class="player-note"></span>' in figure
        else:
            assert 'data-state="before"' in figure
            assert '<span class="player-note">尚未进入会诊</span>' in figure
        assert f'<video src="/api/recordings/{rec["id"]}/content" preload="auto"' in figure
        overlay = figure.split('<svg class="wm-overlay wm-first"')[1].split("</svg>")[0]
        assert f">{mark}</text>" in overlay
        assert re.search(r">\d{4}/\d\d/\d\d \d\d:\d\d:\d\d</text>", overlay)
    page = json.loads(html.split('<script type="application/json" id="tc-page">')[1].split("</")[0])
    assert [r["id"] for r in page["replay"]["recordings"]] == [r["id"] for r in recs]
    assert page["replay"]["events"] == data["events"]
    # The page's open and the API's: one audited replay each.
    assert await _audited(app, "replay.start", cid) == 2


async def test_the_replay_page_of_a_foreign_consultation_is_a_404_without_data(
    recorded: dict[str, Any], login_as: Any, app: Any
) -> None:
    cid = recorded["cid"]
    outsider = await login_as("clinic2")
    resp = await outsider.client.get(f"/consultations/{cid}/replay")
    html = await resp.text()
    missing = await outsider.client.get(f"/consultations/{'0' * 32}/replay")
    assert resp.status == missing.status == 404
    assert "<video" not in html and "开始会诊" not in html and "/api/recordings/" not in html
    assert '"replay": null' in html
    assert await _audited(app, "replay.denied", cid) == 1
    assert await _audited(app, "replay.start", cid) == 0


FILTERS = [
    ("department_id={cardiology}", 1),
    ("department_id={respiratory}", 0),
    ("clinic_id={clinic}", 1),
    ("min_duration_ms=1000", 1),
    ("max_duration_ms=100", 0),
    ("from=2000-01-01T00:00:00%2B00:00", 1),
    ("to=2000-01-01T00:00:00%2B00:00", 0),
    ("page=2&per_page=1", 1),  # total stays 1; the page is empty
]


async def test_filters_and_paging(recorded: dict[str, Any], login_as: Any) -> None:
    review = await login_as("review1")
    clinic = recorded["clinic"].account["institution"]["id"]
    for params, expected in FILTERS:
        query = params.format(clinic=clinic, **recorded["ids"])
        status, data = await review.get(f"/api/recordings?{query}")
        assert status == 200, data
        assert data["total"] == expected, query
        if "page=2" in query:
            assert data["items"] == []


async def test_bad_filters_are_named(login_as: Any) -> None:
    review = await login_as("review1")
    for query, field in [
        ("from=yesterday", "from"),
        ("min_duration_ms=-1", "min_duration_ms"),
        ("department_id=x", "department_id"),
        ("per_page=1000", "per_page"),
    ]:
        status, data = await review.get(f"/api/recordings?{query}")
        assert (status, data["error"]["fields"]) == (400, [field])


async def test_the_replay_names_each_institution_and_marks_the_viewers_own(
    scenario: Scenario, login_as: Any
) -> None:
    """The open reads the institutions the replay names (the clinic, the
    hospital, each recorded person's) and the viewer's own, not the whole
    directory: a doctor invited from a third institution, who never joined,
    replays under a mark with that institution's name."""
    c = await scenario.consultation("live", joined=("clinic1", "cardio1"))
    status, data = await c.clinic.post(f"{c.url}/participants", {"username": "county1"})
    assert status == 201, data
    a = c.sockets["clinic1"]
    await record_leg(a, "--codec", "vp8", "--seconds", "1")
    while (await a.recv("recording", within=LEG_END_TIMEOUT))["state"] != "interrupted":
        pass
    await a.send({"type": "end"})
    while (await a.recv("state"))["state"] != "ended":
        pass

    county = await login_as("county1")
    own = county.account["institution"]
    assert own["id"] not in (
        c.clinic.account["institution"]["id"],
        c.specialist.account["institution"]["id"],
    )
    resp = await county.client.get(f"/consultations/{c.id}/replay")
    assert resp.status == 200
    html = await resp.text()
    mark = f"{county.account['display_name']} · {own['name']}"
    assert f">{mark}</text>" in html

    _, data = await county.get(f"/api/consultations/{c.id}/replay")
    assert data["consultation"]["clinic"]["name"] == c.clinic.account["institution"]["name"]
    assert data["consultation"]["hospital"]["name"] == c.specialist.account["institution"]["name"]
    [rec] = data["recordings"]
    assert rec["participant"]["institution"] == c.clinic.account["institution"]["name"]


async def test_outsiders_get_404_and_are_audited(
    recorded: dict[str, Any], login_as: Any, app: Any
) -> None:
    cid = recorded["cid"]
    _, data = await recorded["clinic"].get(f"/api/consultations/{cid}/replay")
    rec_id = data["recordings"][0]["id"]
    for outsider in ("clinic2", "resp1", "coord1"):
        user = await login_as(outsider)
        real = await user.get(f"/api/consultations/{cid}/replay")
        fake = await user.get(f"/api/consultations/{'0' * 32}/replay")
        assert real[0] == fake[0] == 404 and real[1] == fake[1], outsider
        resp = await user.client.get(f"/api/recordings/{rec_id}/content")
        assert resp.status == 404
        _, listed = await user.get("/api/recordings")
        assert listed["total"] == 0
    async with app[DB].read() as conn:
        denied = (
            (
                await conn.execute(
                    sa.select(audit_log.c.object_id).where(audit_log.c.action == "replay.denied")
                )
            )
            .scalars()
            .all()
        )
    assert cid in denied and rec_id in denied


@pytest.mark.parametrize("settings", list(ENCRYPTION), indirect=True)
async def test_range_requests(recorded: dict[str, Any], app: Any, settings: Settings) -> None:
    clinic = recorded["clinic"]
    _, data = await clinic.get(f"/api/consultations/{recorded['cid']}/replay")
    rec = data["recordings"][0]
    url = rec["url"]
    full = await clinic.client.get(url)
    assert full.status == 200
    whole = await full.read()
    assert full.headers["Content-Type"] == "video/webm"
    assert full.headers["X-Content-SHA256"] == hashlib.sha256(whole).hexdigest() == rec["sha256"]
    size = len(whole)

    cases = [
        ("bytes=0-99", 206, whole[0:100], f"bytes 0-99/{size}"),
        ("bytes=100-", 206, whole[100:], f"bytes 100-{size - 1}/{size}"),
        ("bytes=-50", 206, whole[-50:], f"bytes {size - 50}-{size - 1}/{size}"),
    ]
    for header, status, expected, content_range in cases:
        resp = await clinic.client.get(url, headers={"Range": header})
        assert resp.status == status, header
        assert await resp.read() == expected, header
        assert resp.headers["Content-Range"] == content_range
    resp = await clinic.client.get(url, headers={"Range": f"bytes={size + 10}-"})
    assert resp.status == 416

    # On disk: the plaintext itself, or a sealed file that does not contain it.
    files = sorted((settings.data_dir / "recordings").rglob("*.webm"))
    assert len(files) == 2
    for path in files:
        raw = path.read_bytes()
        if settings.keyring() is None:
            assert not sealed.is_sealed(path)
        else:
            assert raw.startswith(sealed.MAGIC)
            assert whole[:4096] not in raw and whole[-4096:] not in raw
            assert not raw.startswith(whole[:4])  # no EBML header in the clear


@pytest.mark.parametrize("settings", ["aes-256-gcm"], indirect=True)
async def test_verify_decrypts_and_finds_a_damaged_encrypted_file(
    recorded: dict[str, Any], app: Any, settings: Settings
) -> None:
    checks = await app[RECORDING].files.verify()
    assert [c.ok for c in checks] == [True, True]
    path = settings.data_dir / "recordings" / checks[0].recording.path
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit in the middle of the ciphertext
    path.write_bytes(bytes(raw))
    checks = await app[RECORDING].files.verify()
    bad = [c for c in checks if not c.ok]
    assert len(bad) == 1 and bad[0].problem is not None
    assert bad[0].problem.startswith("does not decrypt") and "tampered" in bad[0].problem


async def test_download_is_audited_and_carries_the_hash(
    recorded: dict[str, Any], login_as: Any, app: Any
) -> None:
    review = await login_as("review1")
    _, data = await review.get(f"/api/consultations/{recorded['cid']}/replay")
    rec = data["recordings"][0]
    resp = await review.client.get(rec["url"] + "?download=1")
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    body = await resp.read()
    assert hashlib.sha256(body).hexdigest() == resp.headers["X-Content-SHA256"]
    async with app[DB].read() as conn:
        actions = (
            await conn.execute(
                sa.select(audit_log.c.action, audit_log.c.actor_id).where(
                    audit_log.c.object_id.in_([rec["id"], recorded["cid"]])
                )
            )
        ).all()
    assert ("recording.download", review.account["id"]) in actions
    assert ("replay.start", review.account["id"]) in actions


async def test_a_player_of_an_opened_replay_streams_under_that_replays_audit(
    recorded: dict[str, Any], login_as: Any, app: Any
) -> None:
    """The replay's one audit entry names its recordings, and its players' requests
    are checked without an entry of their own; a file fetched outside an opened
    replay is audited when a player opens it, and an outsider gets the 404 of an
    unknown id, audited, whether or not some other session opened the replay."""
    cid = recorded["cid"]
    review = await login_as("review1")
    resp = await review.client.get(f"/consultations/{cid}/replay")
    assert resp.status == 200
    async with app[DB].read() as conn:
        [detail] = (
            await conn.execute(
                sa.select(audit_log.c.detail).where(
                    audit_log.c.action == "replay.start", audit_log.c.object_id == cid
                )
            )
        ).scalars()
    _, data = await review.get(f"/api/consultations/{cid}/replay")
    ids = [r["id"] for r in data["recordings"]]
    assert detail["recording_ids"] == ids
    for rec in data["recordings"]:
        # What a player asks for: the start, then wherever it seeks.
        for header in ("bytes=0-", "bytes=100-"):
            part = await review.client.get(rec["url"], headers={"Range": header})
            assert part.status == 206 and len(await part.read()) > 0
        assert await _audited(app, "recording.stream", rec["id"]) == 0

    # The clinic doctor may replay too, but opened no replay: the opening is audited.
    clinic = await login_as("clinic1")
    part = await clinic.client.get(data["recordings"][0]["url"], headers={"Range": "bytes=0-"})
    assert part.status == 206
    assert await _audited(app, "recording.stream", ids[0]) == 1

    outsider = await login_as("clinic2")
    for header in ("bytes=0-", "bytes=100-"):
        refused = await outsider.client.get(data["recordings"][0]["url"], headers={"Range": header})
        assert refused.status == 404
        body = await refused.json()
        assert body["error"]["code"] == "not_found"
    assert await _audited(app, "replay.denied", ids[0]) == 2


async def test_a_player_of_an_opened_replay_is_still_checked_against_the_account_as_it_is(
    recorded: dict[str, Any], login_as: Any, app: Any
) -> None:
    """The replay's players are served without a transaction of their own, but a
    reviewer moved to another hospital after opening the replay gets the 404 of
    an unknown id for its files from then on, audited as any refused look."""
    cid = recorded["cid"]
    review = await login_as("review1")
    resp = await review.client.get(f"/consultations/{cid}/replay")
    assert resp.status == 200
    _, data = await review.get(f"/api/consultations/{cid}/replay")
    url = data["recordings"][0]["url"]
    part = await review.client.get(url, headers={"Range": "bytes=0-"})
    assert part.status == 206 and (await part.read())[:4] == b"\x1a\x45\xdf\xa3"

    # To the requesting clinic: a reviewer there may not replay this consultation.
    other = data["consultation"]["clinic"]["id"]
    await app[DB].run_write(
        lambda conn: conn.execute(
            sa.update(accounts).where(accounts.c.username == "review1").values(institution_id=other)
        )
    )
    refused = await review.client.get(url, headers={"Range": "bytes=100-"})
    assert refused.status == 404
    assert (await refused.json())["error"]["code"] == "not_found"
    assert await _audited(app, "replay.denied", data["recordings"][0]["id"]) == 1
