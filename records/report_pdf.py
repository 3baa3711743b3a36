"""The consultation report (会诊报告单): a PDF for the patient's paper record.

One A4 document per consultation with a signed opinion or referral: the request
(who asked whom, about what, how urgently, when), the patient with the resident
ID number masked, the signed opinion or referral and every signed addendum, each
with its SHA-256, the times of the consultation, and a verification block: the
report's own SHA-256 and a URL (also as a QR code) where a logged-in user who
may see the consultation checks it against what the server keeps.

The report's SHA-256 (``report_digest``) is taken over the canonical JSON of the
consultation's id, the patient's id and the signed documents it shows (id, kind,
parent, SHA-256 of the signed body, in signing order). It does not cover the
PDF's bytes (a document cannot contain its own hash); it says which signed texts
the printed page claims to carry, and every one of those is itself hashed. A
report printed before a later addendum keeps verifying, as superseded.

The labels are in Chinese, the language of the record. Times are Beijing time.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from records import report_font
from records.canonical import canonical_json
from records.models import Account, Consultation, Department, Event, Institution, Opinion, Patient

# China keeps one time zone and no daylight saving time.
BEIJING = timezone(timedelta(hours=8), "CST")
TITLE = "会诊报告单"

URGENCY = {"routine": "普通", "urgent": "紧急", "emergency": "急诊"}
SEX = {"male": "男", "female": "女", "other": "其他"}
KIND = {"opinion": "会诊意见", "referral": "转诊意见（建议线下面诊）", "addendum": "补充意见"}
# The fields of a signed body, in the order they are printed, with their labels.
FIELDS = {
    "opinion": (
        ("findings", "所见"),
        ("impression", "印象"),
        ("recommendations", "建议"),
        ("notes", "备注"),
    ),
    "referral": (("reason", "转诊理由"), ("department", "建议就诊科室")),
    "addendum": (("text", "补充内容"),),
}
SIGNED_KINDS = ("opinion", "referral")
DISCLAIMER = "本报告为远程会诊意见，供申请方医生参考；诊疗决定由申请方医生结合患者实际情况作出。"
HOW_TO_VERIFY = (
    "扫描二维码或在浏览器中打开校验网址，使用有权查看本会诊的账号登录，"
    "即可核对本报告与系统存档的签署内容是否一致。"
)

# Layout (millimetres, A4 portrait).


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything the report shows (read by the workflow in one transaction)."""

    consultation: Consultation
    patient: Patient
    department: Department
    requesting_institution: Institution
    consulted_institution: Institution
    people: Mapping[str, Account]
    events: Sequence[Event]
    opinions: Sequence[Opinion]
    generated_at: datetime


def signing_order(opinions: Iterable[Opinion]) -> list[Opinion]:
    """Signed documents in the order they were signed (ties: the opinion first, then by id)."""
    return sorted(opinions, key=lambda o: (o.signed_at, o.kind == "addendum", o.id))


def has_signed_outcome(opinions: Iterable[Opinion]) -> bool:
    """Whether a signed opinion or referral exists (what a report needs)."""
    return any(o.kind in SIGNED_KINDS for o in opinions)


def report_digest(consultation_id: str, patient_id: str, opinions: Iterable[Opinion]) -> str:
    """The report's SHA-256 (hex) over the signed documents it shows (module docstring)."""
    signed = [
        {"id": o.id, "kind": o.kind, "parent_id": o.parent_id, "sha256": o.sha256}
        for o in signing_order(opinions)
    ]
    body = {"consultation_id": consultation_id, "patient_id": patient_id, "signed": signed}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def earlier_digests(consultation_id: str, patient_id: str, opinions: Iterable[Opinion]) -> set[str]:
    """The digests of reports printed before the latest signed documents were added."""
    ordered = signing_order(opinions)
    return {
        report_digest(consultation_id, patient_id, ordered[:n])
        for n in range(1, len(ordered))
        if has_signed_outcome(ordered[:n])
    }


def verification_url(base_url: str, consultation_id: str, digest: str) -> str:
    """Where the report's QR code leads: the verification page of this site."""
    return f"{base_url.rstrip('/')}/reports/verify/{consultation_id}?sha256={digest}"


def beijing(at: datetime | None) -> str:
    """A time as printed on the report (Beijing time, to the minute)."""
    if at is None:
        return "—"
    if at.tzinfo is None:  # stored times are UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _all_text(data: ReportData, digest: str, url: str) -> list[str]:
    """Every string the report may draw (the font subset needs each character)."""
    c, p = data.consultation, data.patient
    texts = [
        TITLE,
        DISCLAIMER,
        HOW_TO_VERIFY,
        "患者信息会诊申请过程北京时间姓名性别出生日期岁身份证号申请机构医生会诊科室紧急程度",
        "理由问题接诊通话开始结束专家签署电子执业证书编号内容报告校验码网址第页共生成",
        "（）：·—",
        *URGENCY.values(),
        *SEX.values(),
        *KIND.values(),
        *(label for fields in FIELDS.values() for _, label in fields),
        p.name,
        p.sex,
        p.national_id_masked,
        c.reason,
        c.question,
        c.urgency,
        c.id,
        data.department.name,
        data.requesting_institution.name,
        data.consulted_institution.name,
        digest,
        url,
    ]
    for account in data.people.values():
        texts += [account.display_name, account.title or "", account.licence_no or ""]
    for o in data.opinions:
        texts += [str(v) for v in o.body.values()]
    return texts


def build_report(data: ReportData, *, base_url: str, font_path: Path) -> tuple[bytes, str, str]:
    """The report as PDF bytes, with its SHA-256 and verification URL.

    Args:
        data: what the report shows; its opinions hold a signed opinion or referral.
        base_url: the site's address as people reach it (``https://host``).
        font_path: the CJK font (a ``.ttc`` collection, ``.otf`` or ``.ttf``).

    Returns:
        ``(pdf, digest, url)``.

    Raises:
        ReportFontMissing: the font file is missing or not a usable font.
    """
    # fpdf2 (and the fontTools it brings) is imported only when a report is made.
    from records.report_layout import Layout

    c = data.consultation
    digest = report_digest(c.id, c.patient_id, data.opinions)
    url = verification_url(base_url, c.id, digest)
    font = report_font.subset_truetype(font_path, _all_text(data, digest, url))
    # fpdf2 takes a font by file name (and reads it again when it writes the PDF).
    with tempfile.TemporaryDirectory(prefix="report-font-") as tmp:
        path = Path(tmp) / "subset.ttf"
        path.write_bytes(font)
        pdf = Layout(data, digest=digest, url=url, font=path).build()
    return pdf, digest, url
