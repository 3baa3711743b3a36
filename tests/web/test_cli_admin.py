"""``teleconsult admin ...``, run as an installer would: in its own process, on a
fresh database with no demo data."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from .test_cli import DB_NAME, run

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "staff_sample.csv"


def audit_rows(data_dir: Path) -> list[tuple[str, str | None, str]]:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        return list(conn.execute("SELECT action, actor_id, detail FROM audit_log ORDER BY seq"))
    finally:
        conn.close()


def ok(data_dir: Path, *args: str) -> str:
    result = run(data_dir, "admin", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_from_an_empty_database_to_a_staffed_community(tmp_path: Path) -> None:
    out = ok(
        tmp_path,
        "bootstrap",
        "--username",
        "admin",
        "--name",
        "系统管理员",
        "--institution",
        "省人民医院",
        "--kind",
        "specialist_hospital",
        "--region",
        "省会市",
    )
    assert re.search(r"temporary password \(shown once\): \S{12}", out), out
    again = run(
        tmp_path,
        "admin",
        "bootstrap",
        "--username",
        "admin2",
        "--name",
        "二号",
        "--institution",
        "省人民医院",
        "--kind",
        "specialist_hospital",
        "--region",
        "省会市",
    )
    assert again.returncode == 1
    assert "administrator exists already" in again.stdout

    ok(tmp_path, "add-institution", "--name", "河口镇卫生院", "--kind", "township_clinic",
       "--region", "青山县")  # fmt: skip
    ok(tmp_path, "add-agreement", "--from", "河口镇卫生院", "--to", "省人民医院",
       "--kind", "medical_alliance")  # fmt: skip
    ok(tmp_path, "add-department", "--institution", "省人民医院", "--code", "cardiology",
       "--name", "心血管内科")  # fmt: skip
    refused = run(tmp_path, "admin", "add-agreement", "--from", "省人民医院", "--to",
                  "河口镇卫生院", "--kind", "paired_support")  # fmt: skip
    assert refused.returncode == 1
    assert "refused:" in refused.stdout and "requesting_institution_id" in refused.stdout

    dry = ok(tmp_path, "import", str(SAMPLE), "--dry-run")
    assert "2 row(s) valid; nothing stored" in dry
    out = ok(tmp_path, "import", str(SAMPLE))
    assert "2 account(s) created" in out
    assert "hekou_li" in out and "cardio_wang" in out
    twice = run(tmp_path, "admin", "import", str(SAMPLE))
    assert twice.returncode == 1
    assert "ERROR row 2, username: an account with this username exists" in twice.stdout
    assert "nothing stored" in twice.stdout

    out = ok(tmp_path, "add-account", "--username", "coord", "--name", "何静", "--role",
             "coordinator", "--institution", "省人民医院")  # fmt: skip
    assert "temporary password" in out
    out = ok(tmp_path, "reset-password", "hekou_li")
    assert "temporary password for hekou_li" in out
    out = ok(tmp_path, "reset-second-factor", "hekou_li")
    assert "second factor of hekou_li removed" in out
    out = ok(tmp_path, "deactivate", "cardio_wang")
    assert "deactivated" in out

    rows = audit_rows(tmp_path)
    actions = [a for a, _, _ in rows]
    for action in (
        "admin.bootstrap",
        "admin.institution.add",
        "admin.agreement.add",
        "admin.department.add",
        "admin.import.preview",
        "admin.import.commit",
        "admin.account.add",
        "admin.account.reset_password",
        "admin.account.reset_second_factor",
        "admin.account.deactivate",
    ):
        assert action in actions, action
    # No account acted: the entries name the OS user who ran the command.
    for action, actor, detail in rows:
        if action.startswith("admin."):
            assert actor is None and '"cli_user"' in detail, (action, detail)
    assert "intact" in run(tmp_path, "audit", "verify").stdout
