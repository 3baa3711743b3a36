"""The login page's ``next``: only ever a path of this site, whatever a browser makes of it.

Browsers drop tabs and newlines anywhere in a URL and read ``\\`` as ``/``, so
``/login?next=/%09/evil.example`` used to answer ``Location: //evil.example``
(another host) to a logged-in user, and the login form would have sent a new one
there too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from ..conftest import LoginAs
from .test_pages import Page

# Each is sent exactly as written (already percent-encoded, as in a link).
BYPASSES = [
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D/evil.example",
    "/%09%0A/evil.example",
    "%09//evil.example",
    "%20//evil.example",
    "%00//evil.example",
    "//evil.example",
    "///evil.example",
    "/%2F/evil.example",
    "/%2f/evil.example",
    "%2F%2Fevil.example",
    "/%252F/evil.example",
    "/%25252F/evil.example",
    "/%5Cevil.example",
    "/%5C/evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%5c%5cevil.example",
    "/%255Cevil.example",
    "/%2509/evil.example",
    "https://evil.example/",
    "https:evil.example",
    "https:/evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java%09script:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    # Not links this site makes (its own are percent-encoded ASCII): refused too.
    "/%E3%80%82/evil.example",
    "/%C2%A0/evil.example",
    "",
]

# Paths of this site keep working (what ``_require_session`` and the pages send).
LOCAL = [
    "/",
    "/queue",
    "/consultations/0123456789abcdef0123456789abcdef",
    "/consultations/0123456789abcdef0123456789abcdef/call?lang=en",
    "/recordings?department_id=abc&page=2",
    "/recordings?q=%E5%88%98",
    "/a/b%20c",
]


def _login_url(next_value: str) -> URL:
    return URL("/login?next=" + next_value, encoded=True)


async def _location(user: Any, next_value: str) -> str:
    resp = await user.client.get(_login_url(next_value), allow_redirects=False)
    assert resp.status == 303, (next_value, resp.status)
    return str(resp.headers["Location"])


@pytest.mark.parametrize("next_value", BYPASSES)
async def test_a_logged_in_user_is_never_sent_to_another_site(
    login_as: LoginAs, next_value: str
) -> None:
    user = await login_as("clinic1")
    assert await _location(user, next_value) == "/"


@pytest.mark.parametrize("next_value", BYPASSES)
async def test_the_login_form_never_sends_anyone_to_another_site(
    anon: TestClient[Any, Any], next_value: str
) -> None:
    resp = await anon.get(_login_url(next_value), allow_redirects=False)
    assert resp.status == 200
    assert Page(await resp.text()).json_blocks["tc-page"]["next"] == "/"


@pytest.mark.parametrize("next_value", LOCAL)
async def test_paths_of_this_site_are_kept(
    login_as: LoginAs, anon: TestClient[Any, Any], next_value: str
) -> None:
    link = URL("/login?" + urlencode({"next": next_value}), encoded=True)
    user = await login_as("clinic1")
    resp = await user.client.get(link, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, next_value)
    resp = await anon.get(link)
    assert Page(await resp.text()).json_blocks["tc-page"]["next"] == next_value


async def test_a_page_that_asks_for_login_comes_back_after_it(
    anon: TestClient[Any, Any], login_as: LoginAs
) -> None:
    target = "/recordings?page=2"
    resp = await anon.get(target, allow_redirects=False)
    assert resp.status == 303
    login_link = URL(resp.headers["Location"], encoded=True)
    user = await login_as("review1")
    resp = await user.client.get(login_link, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, target)
