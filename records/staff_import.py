"""Staff lists as hospitals keep them: CSV or XLSX, one account per row.

``parse`` reads the file into rows of text; ``check`` validates every row against
the directory (institutions by name, departments by code, usernames taken) and
names each problem by row and column, as the spreadsheet shows them (row 1 is
the header, so the first person is row 2). Nothing here stores anything: the
administration service commits the rows in one transaction, and only when no
row has a problem.

Columns (header in English or Chinese, any order; * required):

=================  ==============  ==================================================
username *         用户名          3-64 of a-z 0-9 . _ -
display_name *     姓名
role *             角色            clinic_doctor 基层医生, specialist 专科医生,
                                   coordinator 协调员, reviewer 质控人员, admin 管理员
institution *      机构            the institution's name, as in the directory
departments        科室            department codes of that institution, ``;`` between
title              职称
licence_no         执业证书编号    15 digits; required for doctors
practice_start     执业起始日期    YYYY-MM-DD (or a date cell); required for doctors
phone              电话
=================  ==============  ==================================================

CSV may be UTF-8 (with or without BOM) or GB18030, which is what Excel on a
Chinese Windows saves.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from records.vocab import Role

# A list larger than any county's staff is refused before it is read further.
MAX_ROWS = 2000


@dataclass(frozen=True)
class Column:
    """One column of the staff list."""

    key: str
    zh: str
    required: bool


COLUMNS: tuple[Column, ...] = (
    Column("username", "用户名", True),
    Column("display_name", "姓名", True),
    Column("role", "角色", True),
    Column("institution", "机构", True),
    Column("departments", "科室", False),
    Column("title", "职称", False),
    Column("licence_no", "执业证书编号", False),
    Column("practice_start", "执业起始日期", False),
    Column("phone", "电话", False),
)
_HEADERS = {c.key: c.key for c in COLUMNS} | {c.zh: c.key for c in COLUMNS}

ROLE_WORDS: Mapping[str, Role] = {r.value: r for r in Role} | {
    "基层医生": Role.CLINIC_DOCTOR,
    "专科医生": Role.SPECIALIST,
    "协调员": Role.COORDINATOR,
    "质控人员": Role.REVIEWER,
    "管理员": Role.ADMIN,
}
# Doctors carry a licence and a practice-start date (the three-year rule needs it).
DOCTORS = frozenset({Role.CLINIC_DOCTOR, Role.SPECIALIST})

USERNAME = re.compile(r"^[a-z0-9._-]{3,64}$")
# 医师执业证书编码: 15 digits.
LICENCE = re.compile(r"^[0-9]{15}$")
PHONE = re.compile(r"^\+?[0-9 -]{5,20}$")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one cell (or with the file: row 0, column "")."""

    row: int
    column: str
    code: str
    message: str


@dataclass(frozen=True)
class StaffRow:
    """One valid person of the list, with the directory's ids resolved."""

    row: int
    username: str
    display_name: str
    role: str
    institution_id: str
    institution: str
    department_ids: tuple[str, ...]
    departments: tuple[str, ...]
    title: str | None
    licence_no: str | None
    practice_start: date | None
    phone: str | None


class UnreadableFile(ValueError):
    """The file is neither a CSV nor an XLSX workbook that can be read."""


def _cell(value: Any) -> str | date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number typed into a cell (a licence, a phone)
    text = str(value).strip()
    return text or None


def _xlsx_rows(data: bytes) -> list[list[Any]]:
    # Imported here: only this path needs it, and it is slow to import.
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise UnreadableFile("not a readable XLSX workbook") from exc
    try:
        sheet = book.worksheets[0]
        rows: list[list[Any]] = []
        for values in sheet.iter_rows(values_only=True):
            rows.append(list(values))
            if len(rows) > MAX_ROWS + 1:
                break
        return rows
    finally:
        book.close()


def _csv_rows(data: bytes) -> list[list[Any]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnreadableFile("the CSV file is neither UTF-8 nor GB18030 text")
    if "\x00" in text:
        raise UnreadableFile("not a text file")
    rows: list[list[Any]] = []
    for values in csv.reader(io.StringIO(text)):
        rows.append(list(values))
        if len(rows) > MAX_ROWS + 1:
            break
    return rows


def parse(data: bytes) -> tuple[list[dict[str, str | date | None]], list[Problem]]:
    """Read a CSV or XLSX staff list into one dict per row (by column key).

    XLSX is told by its content (a zip archive), not by its name.

    Returns:
        The rows (each with ``"_row"``, its row number in the sheet), and the
        problems of the file as a whole (a missing or unknown column).

    Raises:
        UnreadableFile: neither a readable workbook nor text.
    """
    raw = _xlsx_rows(data) if data[:4] == b"PK\x03\x04" else _csv_rows(data)
    raw = [r for r in raw if any(_cell(v) is not None for v in r)] if raw else []
    if not raw:
        return [], [Problem(0, "", "empty", "the file has no header row")]
    if len(raw) > MAX_ROWS + 1:
        return [], [Problem(0, "", "too_many_rows", f"more than {MAX_ROWS} rows")]
    header = [str(_cell(h) or "").lower() if _cell(h) else "" for h in raw[0]]
    problems: list[Problem] = []
    keys: list[str | None] = []
    for name in header:
        key = _HEADERS.get(name) or _HEADERS.get(name.strip())
        if name and key is None:
            problems.append(Problem(1, name, "unknown_column", f"unknown column {name!r}"))
        keys.append(key)
    for column in COLUMNS:
        if column.required and column.key not in keys:
            problems.append(
                Problem(1, column.key, "missing_column", f"the column {column.key} is missing")
            )
    rows: list[dict[str, str | date | None]] = []
    for number, values in enumerate(raw[1:], start=2):
        row: dict[str, str | date | None] = {"_row": str(number)}
        for key, value in zip(keys, values, strict=False):
            if key is not None:
                row[key] = _cell(value)
        rows.append(row)
    return rows, problems


def _text(row: Mapping[str, str | date | None], key: str) -> str | None:
    value = row.get(key)
    if isinstance(value, date):
        return value.isoformat()
    return value


def check(
    rows: list[dict[str, str | date | None]],
    *,
    institutions: Mapping[str, str],
    departments: Mapping[tuple[str, str], str],
    taken: set[str],
    today: date,
) -> tuple[list[StaffRow], list[Problem]]:
    """Validate every row; the valid ones resolved, and every problem by row and column.

    Args:
        rows: what ``parse`` read.
        institutions: institution id by name.
        departments: department id by (institution id, code).
        taken: usernames that have an account already.
        today: practice cannot start after it.
    """
    good: list[StaffRow] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for row in rows:
        n = int(str(row["_row"]))
        before = len(problems)

        def bad(column: str, code: str, message: str, n: int = n) -> None:
            problems.append(Problem(n, column, code, message))

        for column in COLUMNS:
            if column.required and not row.get(column.key):
                bad(column.key, "required", f"{column.key} is required")
        username = (_text(row, "username") or "").strip()
        if username:
            if not USERNAME.match(username):
                bad("username", "bad_username", "3-64 characters of a-z, 0-9, '.', '_', '-'")
            elif username in seen:
                bad("username", "duplicate_in_file", f"the same username as row {seen[username]}")
            elif username in taken:
                bad("username", "username_taken", "an account with this username exists")
            seen.setdefault(username, n)
        display_name = _text(row, "display_name") or ""
        if len(display_name) > 100:
            bad("display_name", "too_long", "at most 100 characters")
        role_word = _text(row, "role")
        role = ROLE_WORDS.get(role_word.lower() if role_word else "")
        if role_word and role is None:
            bad("role", "unknown_role", f"unknown role {role_word!r}")
        institution = _text(row, "institution")
        institution_id = institutions.get(institution) if institution else None
        if institution and institution_id is None:
            bad("institution", "unknown_institution", f"no institution is called {institution!r}")
        codes = tuple(
            c.strip() for c in re.split(r"[;；,，、]", _text(row, "departments") or "") if c.strip()
        )
        department_ids: list[str] = []
        for code in codes:
            did = departments.get((institution_id, code)) if institution_id else None
            if did is None:
                if institution_id:
                    bad(
                        "departments",
                        "unknown_department",
                        f"{institution} has no department {code!r}",
                    )
            else:
                department_ids.append(did)
        if role == Role.SPECIALIST and not codes:
            bad("departments", "required", "a specialist serves at least one department")
        licence = _text(row, "licence_no")
        if licence and not LICENCE.match(licence):
            bad("licence_no", "bad_licence", "a licence number has 15 digits")
        start_value = row.get("practice_start")
        practice_start: date | None = None
        if isinstance(start_value, date):
            practice_start = start_value
        elif start_value:
            try:
                practice_start = date.fromisoformat(start_value)
            except ValueError:
                bad("practice_start", "bad_date", "write the date as YYYY-MM-DD")
        if practice_start is not None and practice_start > today:
            bad("practice_start", "bad_date", "the practice cannot start in the future")
        if role in DOCTORS:
            if not licence:
                bad("licence_no", "required", "doctors need a licence number")
            if start_value is None:
                bad("practice_start", "required", "doctors need a practice-start date")
        phone = _text(row, "phone")
        if phone and not PHONE.match(phone):
            bad("phone", "bad_phone", "not a phone number")
        title = _text(row, "title")
        if title and len(title) > 100:
            bad("title", "too_long", "at most 100 characters")
        if len(problems) == before and role is not None and institution_id and institution:
            good.append(
                StaffRow(
                    row=n,
                    username=username,
                    display_name=display_name,
                    role=role.value,
                    institution_id=institution_id,
                    institution=institution,
                    department_ids=tuple(department_ids),
                    departments=codes,
                    title=title,
                    licence_no=licence,
                    practice_start=practice_start,
                    phone=phone,
                )
            )
    return good, problems
