"""The HTML pages against the real app: language, redirects, roles, CSP-safe markup."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiohttp.test_utils import TestClient

from web.i18n import LOCALE_COOKIE

PAGES_BY_USER = {
    "clinic1": "/clinic",
    "cardio1": "/queue",
    "coord1": "/coordinator",
    "review1": "/recordings",
    "admin1": "/admin",
}


class Page(HTMLParser):
    """What the tests look at in a page: scripts, styles, attributes, text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html_lang = ""
        self.metas: dict[str, str] = {}
        self.scripts: list[dict[str, str | None]] = []
        self.json_blocks: dict[str, Any] = {}
        self.style_elements = 0
        self.style_attributes: list[str] = []
        self.handler_attributes: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        for name, _ in attrs:
            if name == "style":
                self.style_attributes.append(tag)
            if name.startswith("on"):
                self.handler_attributes.append(f"{tag}[{name}]")
        if tag == "html":
            self.html_lang = attributes.get("lang") or ""
        elif tag == "meta" and attributes.get("name"):
            self.metas[attributes["name"] or ""] = attributes.get("content") or ""
        elif tag == "style":
            self.style_elements += 1
        elif tag == "script":
            self._script = {**attributes, "body": ""}
            self.scripts.append(self._script)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            if self._script.get("type") == "application/json":
                self.json_blocks[self._script.get("id") or ""] = json.loads(
                    self._script["body"] or "null"
                )
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script["body"] = (self._script["body"] or "") + data
        elif data.strip():
            self.text.append(data.strip())

    def assert_csp_safe(self) -> None:
        """Nothing the strict CSP would block: no inline code, no inline style."""
        assert self.style_elements == 0
        assert self.style_attributes == []
        assert self.handler_attributes == []
        for script in self.scripts:
            if script.get("type") == "application/json":
                continue
            assert script.get("src"), f"inline script: {script}"
            assert not (script["body"] or "").strip()
            assert (script.get("src") or "").startswith("/static/")


async def fetch(client: TestClient[Any, Any], path: str) -> tuple[int, str, Any]:
    resp = await client.get(path, allow_redirects=False)
    return resp.status, await resp.text(), resp


async def test_login_page_is_chinese_by_default(anon: TestClient[Any, Any]) -> None:
    status, html, resp = await fetch(anon, "/login")
    assert status == 200
    assert resp.headers["Content-Language"] == "zh-CN"
    assert resp.headers["Cache-Control"] == "no-store"
    page = Page(html)
    assert page.html_lang == "zh-CN"
    assert "登录" in page.text
    assert "login-form" in page.ids
    page.assert_csp_safe()
    assert page.json_blocks["tc-strings"]["state.accepted"] == "已接受"
    assert page.json_blocks["tc-page"]["next"] == "/"


async def test_a_pages_strings_come_as_utf8_and_its_data_cannot_close_the_script(
    anon: TestClient[Any, Any],
) -> None:
    # UTF-8, not \uXXXX escapes: a third of the bytes for each Chinese character.
    hostile = "/</script><script>alert(1)</script>"
    _, html, _ = await fetch(anon, f"/login?next={quote(hostile)}")
    assert '"state.accepted": "已接受"' in html
    assert "\\u5df2" not in html
    # What a request puts in the page's data stays inside its <script> element.
    assert "</script><script>" not in html
    assert Page(html).json_blocks["tc-page"]["next"] in ("/", hostile)


async def test_login_page_in_english_with_the_cookie(anon: TestClient[Any, Any]) -> None:
    anon.session.cookie_jar.update_cookies({LOCALE_COOKIE: "en"})
    status, html, _ = await fetch(anon, "/login")
    page = Page(html)
    assert status == 200
    assert page.html_lang == "en"
    assert "Sign in" in page.text
    assert "登录" not in page.text
    assert page.json_blocks["tc-strings"]["state.accepted"] == "Accepted"


async def test_unknown_language_cookie_falls_back_to_default(anon: TestClient[Any, Any]) -> None:
    anon.session.cookie_jar.update_cookies({LOCALE_COOKIE: "fr"})
    _, html, _ = await fetch(anon, "/login")
    assert Page(html).html_lang == "zh-CN"


async def test_language_switch_sets_cookie_and_redirects_back(
    anon: TestClient[Any, Any],
) -> None:
    status, _, resp = await fetch(anon, "/login?next=%2Fqueue&lang=en")
    assert status == 303
    location = urlsplit(resp.headers["Location"])
    assert (location.path, parse_qs(location.query)) == ("/login", {"next": ["/queue"]})
    assert resp.cookies[LOCALE_COOKIE].value == "en"
    _, html, _ = await fetch(anon, "/login?next=%2Fqueue")
    page = Page(html)
    assert page.html_lang == "en"
    assert page.json_blocks["tc-page"]["next"] == "/queue"
    status, _, resp = await fetch(anon, "/login?lang=zh_CN")
    assert resp.headers["Location"] == "/login"
    _, html, _ = await fetch(anon, "/login")
    assert Page(html).html_lang == "zh-CN"


async def test_unknown_language_is_ignored(anon: TestClient[Any, Any]) -> None:
    status, _, resp = await fetch(anon, "/login?lang=xx")
    assert status == 303
    assert LOCALE_COOKIE not in resp.cookies


@pytest.mark.parametrize("next_path", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_login_next_stays_on_this_site(anon: TestClient[Any, Any], next_path: str) -> None:
    _, html, _ = await fetch(anon, f"/login?next={next_path}")
    assert Page(html).json_blocks["tc-page"]["next"] == "/"


@pytest.mark.parametrize("path", ["/", "/clinic", "/queue", "/coordinator"])
async def test_pages_need_login(anon: TestClient[Any, Any], path: str) -> None:
    status, _, resp = await fetch(anon, path)
    assert status == 303
    assert resp.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(("username", "path"), PAGES_BY_USER.items())
async def test_home_redirects_by_role(login_as: Any, username: str, path: str) -> None:
    user = await login_as(username)
    status, _, resp = await fetch(user.client, "/")
    assert status == 303
    assert resp.headers["Location"] == path


async def test_the_replay_page_renders_without_patient_data(login_as: Any) -> None:
    user = await login_as("review1")
    status, html, _ = await fetch(user.client, f"/consultations/{'0' * 32}/replay")
    assert status == 404  # the page, saying the consultation was not found
    page = Page(html)
    page.assert_csp_safe()
    assert user.account["display_name"] in " ".join(page.text)


@pytest.mark.parametrize(("username", "path"), PAGES_BY_USER.items())
async def test_role_pages_render(login_as: Any, username: str, path: str) -> None:
    user = await login_as(username)
    status, html, resp = await fetch(user.client, path)
    assert status == 200, html
    assert resp.headers["Cache-Control"] == "no-store"
    page = Page(html)
    page.assert_csp_safe()
    assert page.metas["csrf-token"] == user.csrf
    assert {"logout", "tc-strings", "tc-page"} <= page.ids
    assert user.account["display_name"] in page.text
    assert user.account["institution"]["name"] in " ".join(page.text)
    data = page.json_blocks["tc-page"]
    assert data["account"]["id"] == user.account["id"]
    assert data["page"] == path.strip("/")
    assert [s["src"] for s in page.scripts if s.get("src")] == [f"/static/js/{data['page']}.js"]


async def test_pages_render_no_patient_data(login_as: Any) -> None:
    user = await login_as("clinic1")
    _, body = await user.get("/api/patients")
    _, html, _ = await fetch(user.client, "/clinic")
    for patient in body["patients"]:
        assert patient["name"] not in html
        assert patient["national_id_masked"] not in html


@pytest.mark.parametrize(("username", "path"), [("clinic1", "/queue"), ("cardio1", "/clinic")])
async def test_other_roles_pages_send_home(login_as: Any, username: str, path: str) -> None:
    user = await login_as(username)
    status, _, resp = await fetch(user.client, path)
    assert status == 303
    assert resp.headers["Location"] == "/"


async def test_logged_in_login_page_goes_on(login_as: Any) -> None:
    user = await login_as("clinic1")
    status, _, resp = await fetch(user.client, "/login?next=/clinic")
    assert status == 303
    assert resp.headers["Location"] == "/clinic"


async def test_junior_specialist_sees_practice_notice(login_as: Any) -> None:
    junior = await login_as("cardio_junior")
    _, html, _ = await fetch(junior.client, "/queue")
    page = Page(html)
    assert "practice-notice" in page.ids
    assert page.json_blocks["tc-page"]["account"]["eligible"] is False
    senior = await login_as("cardio1")
    _, html, _ = await fetch(senior.client, "/queue")
    assert "practice-notice" not in Page(html).ids


async def test_english_role_page(login_as: Any) -> None:
    user = await login_as("cardio1")
    user.client.session.cookie_jar.update_cookies({LOCALE_COOKIE: "en"})
    _, html, _ = await fetch(user.client, "/queue")
    page = Page(html)
    assert page.html_lang == "en"
    assert "Consultation queue" in page.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/api.js", "javascript"),
        ("/static/js/clinic.js", "javascript"),
        ("/static/css/app.css", "text/css"),
        ("/static/img/favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_files(anon: TestClient[Any, Any], path: str, content_type: str) -> None:
    resp = await anon.get(path)
    assert resp.status == 200
    assert content_type in resp.headers["Content-Type"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_every_page_module_exists(anon: TestClient[Any, Any]) -> None:
    for name in ("login", "home", "clinic", "queue", "coordinator", "ui", "push"):
        resp = await anon.get(f"/static/js/{name}.js")
        assert resp.status == 200, name


async def test_static_does_not_escape_its_folder(anon: TestClient[Any, Any]) -> None:
    resp = await anon.get("/static/../pages.py")
    assert resp.status in (403, 404)


async def test_the_consultation_page_for_those_who_may_see_it(login_as: Any, scenario: Any) -> None:
    made = await scenario.consultation()
    clinic, c = made.clinic, made.json
    path = f"/consultations/{c['id']}"
    # The requesting clinic, a specialist of the department and the hospital's
    # coordinator see the page: a frame, without patient data.
    for username in ("clinic1", "cardio1", "coord1"):
        user = clinic if username == "clinic1" else await login_as(username)
        status, html, resp = await fetch(user.client, path)
        assert status == 200, (username, html)
        assert resp.headers["Cache-Control"] == "no-store"
        page = Page(html)
        page.assert_csp_safe()
        assert [s["src"] for s in page.scripts if s.get("src")] == ["/static/js/consultation.js"]
        assert {"records", "records-list", "viewer", "opinion-card", "timeline"} <= page.ids
        data = page.json_blocks["tc-page"]
        assert data["consultation_id"] == c["id"]
        assert data["participant"] is (username == "clinic1")
        strings = page.json_blocks["tc-strings"]
        assert strings["records.show"] == "向所有人展示"
        assert strings["cons.kind.opinion"] == "会诊意见"
        assert "刘大爷" not in html
    # Another clinic, another department, an unknown id: as if it did not exist.
    for username in ("clinic2", "derm1"):
        outsider = await login_as(username)
        status, _, _ = await fetch(outsider.client, path)
        assert status == 404, username
    status, _, _ = await fetch(clinic.client, f"/consultations/{'0' * 32}")
    assert status == 404
    status, _, resp = await fetch((await login_as("clinic1")).client, path + "?lang=en")
    assert status == 303 and resp.headers["Location"] == path


async def test_the_consultation_page_needs_login(anon: TestClient[Any, Any]) -> None:
    status, _, resp = await fetch(anon, f"/consultations/{'0' * 32}")
    assert status == 303
    assert resp.headers["Location"].startswith("/login?next=")


async def test_the_call_page_has_the_records_panel(scenario: Any) -> None:
    made = await scenario.consultation("accepted")
    cardio, c = made.specialist, made.json
    cardio.client.session.cookie_jar.update_cookies({LOCALE_COOKIE: "en"})
    status, html, _ = await fetch(cardio.client, f"/consultations/{c['id']}/call")
    assert status == 200
    page = Page(html)
    page.assert_csp_safe()
    assert {"records", "viewer-show", "records-file", "write-opinion"} <= page.ids
    assert page.json_blocks["tc-strings"]["records.show"] == "Show to all"
    assert "Write the opinion" in page.text
    for sheet in ("/static/css/records.css", "/static/js/records.js"):
        resp = await cardio.client.get(sheet)
        assert resp.status == 200, sheet


async def test_the_vendored_pdfjs_is_served_as_javascript(anon: TestClient[Any, Any]) -> None:
    # Module scripts and module workers are refused unless served as JavaScript.
    for name in ("pdf.min.mjs", "pdf.worker.min.mjs"):
        resp = await anon.get(f"/static/vendor/pdfjs-6.5.438/{name}")
        assert resp.status == 200, name
        assert "javascript" in resp.headers["Content-Type"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
