"""One vocabulary: every event kind and error code has a label in both catalogs and
every code an HTTP status; the closed sets named elsewhere agree with the enums.

The visible defect this guards against: a reassigned consultation showed the raw
token ``reassigned`` on the Chinese consultation page, because the page's strings
had no label for that kind.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from media import errors as media_errors
from records import filetypes
from records.vocab import (
    ConsultationState,
    DocumentKind,
    ErrorCode,
    EventKind,
    Relationship,
    Role,
    Sex,
    Urgency,
)
from signaling.workflow import lifecycle
from web import schemas
from web.errors import HTTP_CODES, STATUS
from web.i18n import ERROR_LABELS, EVENT_LABELS, JS_STRINGS, LOCALE_DIR, LOCALES, I18n

ROOT = Path(__file__).resolve().parents[2]


def catalog(locale: str) -> Catalog:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=locale)


LABELLED = [("event", kind, EVENT_LABELS.get(kind)) for kind in EventKind] + [
    ("error", code, ERROR_LABELS.get(code)) for code in ErrorCode
]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_event_kind_and_error_code_has_a_label(locale: str) -> None:
    cat = catalog(locale)
    missing = []
    for what, word, msgid in LABELLED:
        message = cat.get(msgid) if msgid else None
        if message is None:
            missing.append(f"{what} {word}: no label in {locale}")
        elif locale == "zh_CN" and (not message.string or message.string == msgid):
            missing.append(f"{what} {word}: {msgid!r} is not translated")
        # en falls back to the msgid, which is the English label.
    assert missing == []


def test_the_labels_reach_every_page() -> None:
    zh = I18n().choose(None, "zh_CN").js_strings()
    for kind in EventKind:
        assert zh[f"event.{kind}"] not in ("", kind, EVENT_LABELS[kind]), kind
    for code in ErrorCode:
        assert zh[f"error.{code}"] not in ("", code, ERROR_LABELS[code]), code
    # Nothing but the vocabulary is labelled under these prefixes (JS-only keys aside).
    assert {k.removeprefix("event.") for k in JS_STRINGS if k.startswith("event.")} == set(
        EventKind
    )
    client_side = {"csrf", "rate_limited", "network", "unknown"}
    assert {k.removeprefix("error.") for k in JS_STRINGS if k.startswith("error.")} == set(
        ErrorCode
    ) | client_side


def test_every_error_code_has_one_http_status() -> None:
    assert set(STATUS) == set(ErrorCode)
    assert all(400 <= status <= 599 for status in STATUS.values())
    # aiohttp's own errors get a code whose status is theirs.
    for status, code in HTTP_CODES.items():
        assert STATUS[code] == status, code


def _code_literals(path: Path) -> set[str]:
    """String literals a file passes as an error code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func).rsplit(".", 1)[-1]
            args: list[ast.expr] = [k.value for k in node.keywords if k.arg == "code"]
            if name in ("ApiError", "error_response") and len(node.args) > 1:
                args.append(node.args[1])
            if name in ("ProtocolError", "api_error", "_error") and node.args:
                args.append(node.args[0])
            found.update(a.value for a in args if isinstance(a, ast.Constant))
        elif isinstance(node, ast.Dict):
            # {"type": "error", "code": "..."} sent over the WebSocket
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "code"
                    and isinstance(value, ast.Constant)
                    and any(isinstance(v, ast.Constant) and v.value == "error" for v in node.values)
                ):
                    found.add(value.value)
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign | ast.AnnAssign)
                    and ast.unparse(
                        stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
                    )
                    == "code"
                    and isinstance(stmt.value, ast.Constant)
                ):
                    found.add(stmt.value.value)
    return found


def test_every_code_in_the_sources_is_in_the_vocabulary() -> None:
    files = [
        p
        for package in ("signaling", "web", "records", "media")
        for p in (ROOT / package).rglob("*.py")
    ]
    used = {code: str(p.relative_to(ROOT)) for p in files for code in _code_literals(p)}
    assert used, "the scan found nothing: has the way errors are raised changed?"
    assert {c: f for c, f in used.items() if c not in set(ErrorCode)} == {}


def test_media_codes_are_in_the_vocabulary() -> None:
    # media/ imports nothing of records/, so it keeps strings; they must agree.
    for cls in (media_errors.MediaError, media_errors.SeamBroken, media_errors.RecordingFailed):
        assert cls.code in set(ErrorCode)


def test_closed_sets_elsewhere_agree_with_the_enums() -> None:
    assert lifecycle.State is ConsultationState
    assert set(get_args(schemas.PatientIn.model_fields["sex"].annotation)) == set(Sex)
    assert set(get_args(schemas.ConsentIn.model_fields["relationship"].annotation)) == set(
        Relationship
    )
    assert set(get_args(schemas.ConsultationIn.model_fields["urgency"].annotation)) == set(Urgency)
    assert set(filetypes.MEDIA_TYPES) == set(DocumentKind)
    for prefix, enum in (
        ("state", ConsultationState),
        ("urgency", Urgency),
        ("role", Role),
        ("sex", Sex),
        ("relationship", Relationship),
    ):
        labelled = {k.split(".", 1)[1] for k in JS_STRINGS if k.startswith(prefix + ".")}
        assert labelled == set(enum), prefix


def test_the_scripts_name_only_event_kinds_that_exist() -> None:
    kinds: set[str] = set()
    for script in (ROOT / "web" / "static" / "js").glob("*.js"):
        text = script.read_text(encoding="utf-8")
        # timeline events are ``e`` or ``event`` in the scripts (documents and tracks
        # have kinds of their own)
        kinds.update(re.findall(r"\b(?:e|event)\.kind === \"(\w+)\"", text))
        for group in re.findall(r"_KINDS = new Set\(\[([^\]]*)\]\)", text):
            kinds.update(re.findall(r"\"(\w+)\"", group))
    assert kinds, "the scan found nothing: have the scripts changed?"
    assert kinds - set(EventKind) == set()


# -- the visible defect -----------------------------------------------------------


def timeline_text(strings: dict[str, str], event: dict[str, Any]) -> str:
    """What consultation.js writes for a timeline event (its ``eventText``;
    tests/e2e/test_vocabulary_browser.py checks the page itself)."""
    script = (ROOT / "web" / "static" / "js" / "consultation.js").read_text(encoding="utf-8")
    assert "const key = `event.${e.kind}`;" in script, "eventText changed: update this mirror"
    key = f"event.{event['kind']}"
    if key not in strings:
        return strings["cons.event.other"].replace("%(kind)s", event["kind"])
    params = {
        "name": event["actor"]["display_name"] if event["actor"] else strings["cons.system"],
        "text": event["data"].get("text", ""),
        "title": event["data"].get("title", ""),
    }
    return re.sub(r"%\((\w+)\)s", lambda m: str(params.get(m.group(1), "")), strings[key])


def json_block(html: str, block_id: str) -> Any:
    match = re.search(
        rf'<script type="application/json" id="{block_id}">(.*?)</script>', html, re.S
    )
    assert match, block_id
    return json.loads(match.group(1))


async def test_a_reassigned_consultation_is_labelled_in_chinese(scenario: Any) -> None:
    c = await scenario.consultation("accepted")
    clinic, coord = c.clinic, await scenario.user("coord1")
    url = c.url
    department = c.json["department"]["id"]
    _, specialists = await coord.get(f"/api/departments/{department}/specialists")
    other = next(s["id"] for s in specialists["specialists"] if s["display_name"] == "刘芳")
    status, data = await coord.post(f"{url}/assign", {"specialist_id": other})
    assert status == 200, data

    # The page (Chinese by default) and the JSON its script draws the timeline from.
    resp = await clinic.client.get(f"/consultations/{data['consultation']['id']}")
    assert resp.status == 200
    strings = json_block(await resp.text(), "tc-strings")
    _, detail = await clinic.get(url)
    events = {e["kind"]: e for e in detail["consultation"]["events"]}
    assert "reassigned" in events

    shown = timeline_text(strings, events["reassigned"])
    assert "reassigned" not in shown
    assert shown == f"{events['reassigned']['actor']['display_name']} 重新分配了会诊"
    for event in detail["consultation"]["events"]:
        assert event["kind"] not in timeline_text(strings, event), event["kind"]
