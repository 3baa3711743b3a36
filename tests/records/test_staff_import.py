"""Staff lists as hospitals keep them: the parsing and row checks, without a database."""

from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from records.staff_import import UnreadableFile, check, parse

INSTITUTIONS = {"省人民医院": "h" * 32, "河口镇卫生院": "c" * 32}
DEPARTMENTS = {("h" * 32, "cardiology"): "d" * 32}
TODAY = date(2026, 11, 30)


def checked(data: bytes, taken: set[str] | None = None) -> tuple[list, list]:  # type: ignore[type-arg]
    rows, problems = parse(data)
    good, bad = check(
        rows,
        institutions=INSTITUTIONS,
        departments=DEPARTMENTS,
        taken=taken or set(),
        today=TODAY,
    )
    return good, problems + bad


def test_a_gb18030_csv_with_chinese_headers_and_role_words() -> None:
    text = (
        "姓名,用户名,角色,机构,科室,执业证书编号,执业起始日期\n"
        "王立新,cardio_wang,专科医生,省人民医院,cardiology,110420100000002,2009-09-01\n"
    )
    good, problems = checked(text.encode("gb18030"))
    assert problems == []
    [row] = good
    assert (row.username, row.role, row.department_ids) == (
        "cardio_wang",
        "specialist",
        ("d" * 32,),
    )
    assert row.practice_start == date(2009, 9, 1)


def test_xlsx_date_cells_and_numeric_licences_are_read_as_written() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        ["username", "display_name", "role", "institution", "licence_no", "practice_start"]
    )
    sheet.append(["hekou_li", "李春梅", "clinic_doctor", "河口镇卫生院", 110420100000001,
                  datetime(2012, 7, 1)])  # fmt: skip
    buf = io.BytesIO()
    book.save(buf)
    good, problems = checked(buf.getvalue())
    assert problems == []
    assert good[0].licence_no == "110420100000001"
    assert good[0].practice_start == date(2012, 7, 1)


def test_a_missing_column_and_an_unknown_one_are_named_in_the_header_row() -> None:
    _, problems = checked(b"username,display_name,role,hobby\nx_y_z,A,admin,chess\n")
    found = {(p.row, p.column, p.code) for p in problems}
    assert (1, "institution", "missing_column") in found
    assert (1, "hobby", "unknown_column") in found


def test_doctors_need_a_licence_and_a_start_date() -> None:
    _, problems = checked(
        "username,display_name,role,institution\nhekou_li,李春梅,clinic_doctor,河口镇卫生院\n".encode()
    )
    assert {(p.row, p.column, p.code) for p in problems} == {
        (2, "licence_no", "required"),
        (2, "practice_start", "required"),
    }


def test_binary_that_is_not_a_workbook_is_unreadable() -> None:
    with pytest.raises(UnreadableFile):
        parse(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnreadableFile):
        parse(b"\xff\xfe\x00\x00\x81\x30\x81")
