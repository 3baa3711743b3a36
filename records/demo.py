"""Demo data: a county medical community to try the product with.

One county hospital, three township clinics, one provincial specialist hospital
with cardiology, respiratory medicine, paediatrics and dermatology, and an account
for each role (password ``demo1234``). ``cardio_junior`` has one year of practice,
to show the three-year rule. Every name and ID number here is invented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa

from records import audit, store
from records.clock import Clock
from records.db import Database
from records.identity import check_digit
from records.schema import institutions

DEMO_PASSWORD = "demo1234"  # noqa: S105 - the documented demo password


@dataclass(frozen=True)
class DemoLogin:
    """A demo account to print for the person trying the product."""

    username: str
    role: str
    institution: str
    note: str = ""


def _years_ago(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def demo_national_id(region: str, birth: date, serial: int) -> str:
    """A well-formed but invented resident ID number."""
    first17 = f"{region}{birth:%Y%m%d}{serial:03d}"
    return first17 + check_digit(first17)


async def load_demo(
    db: Database, *, hash_password: Callable[[str], str], clock: Clock
) -> list[DemoLogin]:
    """Load the demo community unless institutions already exist.

    Args:
        db: the database (already migrated).
        hash_password: the configured password hasher.
        clock: the source of "now" (practice years are counted from it).

    Returns:
        The demo logins (empty if data was already there).
    """
    now = clock.now()
    password = hash_password(DEMO_PASSWORD)

    def load(conn: sa.Connection) -> list[DemoLogin]:
        today = now.date()
        if conn.execute(sa.select(sa.func.count()).select_from(institutions)).scalar():
            return []
        county = store.add_institution(
            conn, name="青山县人民医院", kind="county_hospital", region="青山县"
        )
        clinics = [
            store.add_institution(conn, name=name, kind="township_clinic", region="青山县")
            for name in ("城关镇卫生院", "河口镇卫生院", "石桥乡卫生院")
        ]
        hospital = store.add_institution(
            conn, name="省人民医院", kind="specialist_hospital", region="省会市"
        )
        # The county medical community (医联体): every clinic and the county
        # hospital may ask the provincial hospital.
        for requesting in (county, *clinics):
            store.add_agreement(
                conn,
                requesting_institution_id=requesting,
                consulting_institution_id=hospital,
                kind="medical_alliance",
                since=today,
                created_at=now,
            )
        depts = {
            code: store.add_department(conn, institution_id=hospital, code=code, name=name)
            for code, name in (
                ("cardiology", "心血管内科"),
                ("respiratory", "呼吸与危重症医学科"),
                ("paediatrics", "儿科"),
                ("dermatology", "皮肤科"),
            )
        }
        logins: list[DemoLogin] = []
        accounts = (
            ("clinic1", "王建国", "clinic_doctor", clinics[0], "执业医师", 15, (), "城关镇卫生院"),
            ("clinic2", "李秀英", "clinic_doctor", clinics[1], "执业医师", 9, (), "河口镇卫生院"),
            ("clinic3", "赵明", "clinic_doctor", clinics[2], "执业助理医师", 4, (), "石桥乡卫生院"),
            ("county1", "陈志强", "clinic_doctor", county, "主治医师", 11, (), "青山县人民医院"),
            (
                "cardio1",
                "张伟",
                "specialist",
                hospital,
                "主任医师",
                22,
                ("cardiology",),
                "省人民医院",
            ),
            (
                "cardio2",
                "刘芳",
                "specialist",
                hospital,
                "副主任医师",
                9,
                ("cardiology",),
                "省人民医院",
            ),
            (
                "cardio_junior",
                "孙浩",
                "specialist",
                hospital,
                "住院医师",
                1,
                ("cardiology",),
                "省人民医院",
            ),
            (
                "resp1",
                "周敏",
                "specialist",
                hospital,
                "主任医师",
                18,
                ("respiratory",),
                "省人民医院",
            ),
            (
                "paed1",
                "吴婷",
                "specialist",
                hospital,
                "副主任医师",
                10,
                ("paediatrics",),
                "省人民医院",
            ),
            (
                "derm1",
                "郑磊",
                "specialist",
                hospital,
                "主治医师",
                6,
                ("dermatology",),
                "省人民医院",
            ),
            ("coord1", "何静", "coordinator", hospital, None, None, (), "省人民医院"),
            ("review1", "冯军", "reviewer", hospital, None, None, (), "省人民医院"),
            ("admin1", "系统管理员", "admin", hospital, None, None, (), "省人民医院"),
        )
        ids: dict[str, str] = {}
        for n, (username, name, role, inst, title, years, served, inst_name) in enumerate(accounts):
            ids[username] = store.add_account(
                conn,
                username=username,
                password_hash=password,
                display_name=name,
                role=role,
                institution_id=inst,
                created_at=now,
                licence_no=f"1104{n:011d}" if years is not None else None,
                title=title,
                practice_start=_years_ago(today, years) if years is not None else None,
                department_ids=[depts[c] for c in served],
            )
            note = "under 3 years of practice" if username == "cardio_junior" else ""
            logins.append(DemoLogin(username, role, inst_name, note))
        patients = (
            ("刘大爷", "male", date(1951, 3, 14), "13800000001"),
            ("陈阿姨", "female", date(1962, 11, 2), None),
            ("小明", "male", date(2019, 6, 30), "13800000003"),
        )
        for serial, (name, sex, birth, phone) in enumerate(patients, start=1):
            pid = store.add_patient(
                conn,
                institution_id=clinics[0],
                name=name,
                sex=sex,
                birth_date=birth,
                national_id=demo_national_id("360101", birth, serial),
                phone=phone,
                created_by=ids["clinic1"],
                created_at=now - timedelta(days=serial),
            )
            if serial == 1:
                store.add_consent(
                    conn,
                    patient_id=pid,
                    scope_consultation=True,
                    scope_recording=True,
                    given_by=name,
                    relationship="self",
                    taken_by=ids["clinic1"],
                    given_at=now - timedelta(hours=2),
                )
        store.add_roster_entry(
            conn,
            department_id=depts["cardiology"],
            account_id=ids["cardio1"],
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=11),
            created_by=ids["coord1"],
        )
        audit.append(
            conn,
            at=now,
            actor_id=None,
            action="demo.load",
            object_type="system",
            detail={"accounts": len(accounts)},
        )
        return logins

    return await db.run_write(load)
