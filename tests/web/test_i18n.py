"""The message catalogs: complete for Chinese, in step with the sources.

Extraction uses babel.cfg, the same mapping ``pybabel extract`` uses, so a string
added to a template or to ``web/i18n.py`` without updating the catalogs fails here
(see babel.cfg for the two commands that fix it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from web.i18n import JS_STRINGS, LOCALE_DIR, LOCALES, I18n

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def catalog(locale: str) -> Catalog:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=locale)


def msgids(cat: Catalog) -> set[str]:
    return {m.id for m in cat if m.id and isinstance(m.id, str)}


def extracted() -> set[str]:
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        found.update([message] if isinstance(message, str) else [m for m in message if m])
    return found


def test_sources_have_messages() -> None:
    found = extracted()
    # Both kinds of source are seen: a template string and a JS string from i18n.py.
    assert "Sign in" in found
    assert JS_STRINGS["state.accepted"] in found


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_matches_sources(locale: str) -> None:
    in_sources = extracted()
    in_catalog = msgids(catalog(locale))
    assert not in_sources - in_catalog, "not in the catalog; run the commands in babel.cfg"
    assert not in_catalog - in_sources, "obsolete in the catalog; run the commands in babel.cfg"


def test_every_chinese_message_is_translated() -> None:
    cat = catalog("zh_CN")
    untranslated = [m.id for m in cat if m.id and not m.string]
    fuzzy = [m.id for m in cat if m.id and m.fuzzy]
    assert untranslated == []
    assert fuzzy == []


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_placeholders(locale: str) -> None:
    for m in catalog(locale):
        if m.id and m.string:
            assert set(PLACEHOLDER.findall(str(m.string))) == set(PLACEHOLDER.findall(str(m.id))), (
                m.id
            )


def test_environments_translate() -> None:
    i18n = I18n()
    zh = i18n.choose(None, "zh_CN")
    en = i18n.choose("en", "zh_CN")
    assert zh.gettext("Sign in") == "登录"
    assert en.gettext("Sign in") == "Sign in"
    assert i18n.choose("xx", "en").locale == "en"
    assert zh.js_strings()["state.accepted"] == "已接受"
    assert set(zh.js_strings()) == set(JS_STRINGS)
    template = zh.env.from_string('{{ _("Welcome, %(name)s", name=who) }}')
    assert template.render(who="<b>王</b>") == "&lt;b&gt;王&lt;/b&gt;，您好"
