"""Parsing what a PACS sends: QIDO-RS JSON and WADO-RS multipart/related bodies."""

from __future__ import annotations

import pytest

from records import dicomweb
from records.errors import UnreadableContent


def element(vr: str, *values: object) -> dict[str, object]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def study(uid: str, date: str | None = "20261118", **extra: object) -> dict[str, object]:
    item: dict[str, object] = {
        "0020000D": element("UI", uid),
        "00100020": element("LO", "360101199003070011"),
        "00080061": element("CS", "MR", "SR"),
        "00081030": element("LO", "Brain MR"),
        "00201206": element("IS", 2),
        "00201208": element("IS", "17"),
        "00100010": element("PN", {"Alphabetic": "Zhang^San", "Ideographic": "张^三"}),
        "00100030": element("DA", "19900307"),
    }
    if date:
        item["00080020"] = element("DA", date)
    item.update(extra)
    return item


def test_studies_are_read_newest_first_without_identity() -> None:
    found = dicomweb.parse_studies(
        [study("1.2.3", "20250101"), study("1.2.4", None), study("1.2.5")], limit=10
    )
    assert [s.study_uid for s in found] == ["1.2.5", "1.2.3", "1.2.4"]
    first = found[0]
    assert first.date == "2026-11-18"
    assert first.modalities == ("MR", "SR")
    assert (first.series, first.instances) == (2, 17)
    assert first.description == "Brain MR"
    assert first.patient_id == "360101199003070011"
    assert first.birth_date == "1990-03-07"
    assert dicomweb.same_name(first.patient_names, "张三")
    assert dicomweb.same_name(first.patient_names, "zhang san")
    assert not dicomweb.same_name(first.patient_names, "张三丰")
    assert not dicomweb.same_name(first.patient_names, "")


def test_untrusted_study_entries_are_dropped_or_cleaned() -> None:
    found = dicomweb.parse_studies(
        [
            study("../../etc"),  # not a UID: it would go into a URL path
            study("1." + "1" * 70),  # too long for a UID
            {"0020000D": "1.2.3"},  # not the JSON model
            "not an object",
            study("1.2.9", "2026-11-18", **{"00201206": element("IS", "-3")}),
            study("1.2.10", **{"00081030": element("LO", "a\x00b\x1bc" + "x" * 100)}),
        ],
        limit=10,
    )
    assert [s.study_uid for s in found] == ["1.2.10", "1.2.9"]
    assert found[1].date is None and found[1].series is None
    assert found[0].description == "abc" + "x" * 61


def test_a_search_answer_that_is_not_a_list_is_refused() -> None:
    assert dicomweb.parse_studies(None, limit=5) == []
    with pytest.raises(UnreadableContent) as err:
        dicomweb.parse_studies({"error": "x"}, limit=5)
    assert err.value.code == "pacs_bad_answer"


def test_instances_come_in_series_then_instance_order_and_are_bounded() -> None:
    def inst(series: str, number: int, uid: str, series_number: int) -> dict[str, object]:
        return {
            "0020000E": element("UI", series),
            "00080018": element("UI", uid),
            "00200013": element("IS", number),
            "00200011": element("IS", series_number),
            "0008103E": element("LO", f"series {series_number}"),
        }

    payload = [inst("1.9", 2, "1.9.2", 3), inst("1.8", 1, "1.8.1", 1), inst("1.9", 1, "1.9.1", 3)]
    found = dicomweb.parse_instances(payload, limit=10)
    assert [i.instance_uid for i in found] == ["1.8.1", "1.9.1", "1.9.2"]
    assert found[1].series_description == "series 3"
    with pytest.raises(UnreadableContent):
        dicomweb.parse_instances(payload, limit=2)


def multipart(boundary: str, *parts: bytes, preamble: bytes = b"") -> bytes:
    out = preamble
    for part in parts:
        out += b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
        out += part + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def test_wado_multipart_bodies_give_their_dicom_parts() -> None:
    kind = 'multipart/related; type="application/dicom"; boundary=xyz'
    # The bytes of a part may hold CRLF and dashes; only the full delimiter splits.
    one, two = b"DICM\r\n--xy\r\nz\x00\x01", b"second"
    assert dicomweb.dicom_parts(kind, multipart("xyz", one, two)) == [one, two]
    assert dicomweb.dicom_parts(kind, multipart("xyz", one, preamble=b"hello\r\n")) == [one]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("application/dicom", b"DICM"),
        ("multipart/related", b"--x\r\n\r\nDICM\r\n--x--"),
        ('multipart/related; boundary="x"', b"--x\r\nContent-Type: application/dicom\r\n\r\nDICM"),
        ('multipart/related; boundary="x"', b"no parts at all"),
        ('multipart/related; boundary="x"', b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--"),
    ],
)
def test_wado_bodies_that_cannot_be_trusted_are_refused(kind: str, body: bytes) -> None:
    with pytest.raises(UnreadableContent) as err:
        dicomweb.dicom_parts(kind, body)
    assert err.value.code == "pacs_bad_answer"
