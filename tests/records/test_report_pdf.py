"""The report's pieces without a server: its hash, the font it is set in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from records import report_font, report_pdf
from records.models import Opinion

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def opinion(oid: str, kind: str, minutes: int, sha: str, parent: str | None = None) -> Opinion:
    return Opinion(
        id=oid,
        consultation_id="c1",
        author_id="a1",
        kind=kind,
        parent_id=parent,
        body={},
        signed_at=T0 + timedelta(minutes=minutes),
        sha256=sha * 64,
    )


def test_the_report_hash_covers_the_signed_texts_in_signing_order() -> None:
    main = opinion("o1", "opinion", 0, "a")
    first = opinion("o2", "addendum", 5, "b", "o1")
    second = opinion("o3", "addendum", 9, "c", "o1")
    digest = report_pdf.report_digest("c1", "p1", [second, main, first])
    assert digest == report_pdf.report_digest("c1", "p1", [main, first, second])
    # Another consultation, another patient or another signed text: another hash.
    assert digest != report_pdf.report_digest("c2", "p1", [main, first, second])
    assert digest != report_pdf.report_digest("c1", "p2", [main, first, second])
    changed = opinion("o3", "addendum", 9, "d", "o1")
    assert digest != report_pdf.report_digest("c1", "p1", [main, first, changed])
    # Reports printed before each addendum; never one without the opinion itself.
    earlier = report_pdf.earlier_digests("c1", "p1", [main, first, second])
    assert earlier == {
        report_pdf.report_digest("c1", "p1", [main]),
        report_pdf.report_digest("c1", "p1", [main, first]),
    }
    assert digest not in earlier


def test_an_opinion_and_its_addendum_signed_in_the_same_instant_keep_their_order() -> None:
    main = opinion("z9", "opinion", 0, "a")
    addendum = opinion("a1", "addendum", 0, "b", "z9")
    assert report_pdf.signing_order([addendum, main]) == [main, addendum]


def test_times_are_printed_in_beijing_time() -> None:
    assert report_pdf.beijing(T0) == "2026-11-23 16:00"
    assert report_pdf.beijing(None) == "—"


def test_the_simplified_chinese_face_is_cut_and_made_truetype(tmp_path: Path) -> None:
    assert report_font.face_index(report_font.DEFAULT_FONT) == 2  # JP, KR, SC, ...
    data = report_font.subset_truetype(report_font.DEFAULT_FONT, ["会诊报告单 刘大爷"])
    path = tmp_path / "subset.ttf"
    path.write_bytes(data)
    font = TTFont(path)
    assert "glyf" in font and "CFF " not in font
    cmap = font.getBestCmap()
    assert {ord(ch) for ch in "会诊报告单刘大爷A1"} <= set(cmap)
    assert ord("鬱") not in cmap  # only what the report uses
    assert "Noto Sans CJK SC" in font["name"].getDebugName(4)


@pytest.mark.parametrize("name", ["missing.ttc", "font.txt"])
def test_an_unusable_font_is_refused_naming_the_fix(tmp_path: Path, name: str) -> None:
    with pytest.raises(report_font.ReportFontMissing) as caught:
        report_font.face_index(tmp_path / name)
    assert caught.value.code == "report_font_missing"
    assert "fonts-noto-cjk" in caught.value.message and name in caught.value.message


def test_a_file_that_is_not_a_font_is_refused(tmp_path: Path) -> None:
    for name in ("broken.ttc", "broken.otf"):
        (tmp_path / name).write_bytes(b"\x00\x01\x00\x00 not really")
        with pytest.raises(report_font.ReportFontMissing):
            report_font.face_index(tmp_path / name)
