"""The content-addressed file store, content-based type detection and safe names."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from records.files import FileStore
from records.filetypes import UnreadableContent, analyse, display_name, sniff

from .samples import DICOM_PATIENT, LAB_REPORT, dicom, image, pdf


@pytest.fixture
def files(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "files", tmp_path / "incoming")


def stored(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def receive(files: FileStore, data: bytes) -> str:
    incoming = files.receive()
    for i in range(0, len(data), 1000):
        incoming.write(data[i : i + 1000])
    return files.accept(incoming)


def test_content_is_stored_once_under_its_hash(files: FileStore, tmp_path: Path) -> None:
    data = b"same bytes" * 500
    digest = hashlib.sha256(data).hexdigest()
    assert receive(files, data) == digest
    assert receive(files, data) == digest
    assert stored(files.root) == [f"{digest[:2]}/{digest[2:4]}/{digest}"]
    assert files.path_for(digest).read_bytes() == data
    assert files.has(digest)
    assert files.pending() == []  # no temporary file left behind
    assert files.put_bytes(b"preview") == hashlib.sha256(b"preview").hexdigest()
    assert len(stored(files.root)) == 2


def test_a_discarded_upload_leaves_nothing(files: FileStore) -> None:
    incoming = files.receive()
    incoming.write(b"half a file")
    assert files.pending() == [incoming.path]
    incoming.discard()
    assert files.pending() == []
    assert stored(files.root) == []


def test_the_sweep_removes_unfinished_uploads_idle_for_long_enough(files: FileStore) -> None:
    stale, live = files.receive(), files.receive()
    stale.write(b"a letter sent before a crash")
    live.write(b"a letter being sent now")
    day_ago = time.time() - 86_400
    os.utime(stale.path, (day_ago, day_ago))
    assert files.sweep(idle_seconds=3600) == 1
    assert files.pending() == [live.path]  # another process may be receiving it
    assert files.sweep() == 1  # at the start of the only process: everything
    assert files.pending() == []
    stale.discard()  # the handle a crashed process would have lost
    live.discard()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab", "A" * 64, "g" * 64, ""])
def test_paths_are_made_from_a_hash_only(files: FileStore, bad: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        files.path_for(bad)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"%PDF-1.7\n", "pdf"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
        (b"\x00" * 128 + b"DICM", "dicom"),
        (b"DICM" + b"\x00" * 128, None),
        (b"hello", None),
    ],
)
def test_sniffing_reads_the_first_bytes(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind


def write(tmp_path: Path, data: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pdf_pages_are_counted(tmp_path: Path) -> None:
    found = analyse(write(tmp_path, pdf(pages=3)))
    assert (found.kind, found.media_type, found.pages) == ("pdf", "application/pdf", 3)


@pytest.mark.parametrize(("fmt", "kind"), [("JPEG", "jpeg"), ("PNG", "png")])
def test_images_have_their_size(tmp_path: Path, fmt: str, kind: str) -> None:
    found = analyse(write(tmp_path, image(fmt, 40, 30)))
    assert found.kind == kind
    assert (found.meta["width"], found.meta["height"]) == (40, 30)


@pytest.mark.parametrize(
    "data",
    [b"\xff\xd8\xff" + b"not really a jpeg" * 10, b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10],
)
def test_an_image_pillow_cannot_open_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UnreadableContent) as info:
        analyse(write(tmp_path, data))
    assert info.value.code == "invalid_image"


def test_utf8_text_is_accepted_and_anything_else_is_not(tmp_path: Path) -> None:
    found = analyse(write(tmp_path, LAB_REPORT.encode()))
    assert (found.kind, found.media_type, found.meta) == ("text", "text/plain", {"lines": 3})
    for data in (
        LAB_REPORT.encode("gb18030"),  # not UTF-8
        b"text with a \x00 NUL",
        bytes(range(256)),
        b"",
        "截断".encode()[:-1],  # a character cut in half at the end
    ):
        with pytest.raises(UnreadableContent) as info:
            analyse(write(tmp_path, data))
        assert info.value.code == "unsupported_type", data[:20]


def test_dicom_tags_and_preview_without_patient_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    found = analyse(write(tmp_path, dicom()))
    assert found.kind == "dicom"
    assert found.meta == {
        "modality": "CT",
        "study_date": "2026-11-20",
        "body_part": "CHEST",
        "rows": 64,
        "columns": 64,
        "frames": 1,
        "photometric": "MONOCHROME2",
        "has_pixels": True,
        "preview": True,
    }
    assert DICOM_PATIENT not in repr(found.meta)
    assert "P123456" not in repr(found.meta)
    assert DICOM_PATIENT not in caplog.text
    assert found.preview_png is not None
    with Image.open(io.BytesIO(found.preview_png)) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "L", (64, 64))
        row = [img.getpixel((x, 32)) for x in range(64)]
    # Window 1000 +- 1000 over a ramp 0..4000: black at the left, white from the middle.
    assert row[0] == 0
    assert row[-1] == 255
    assert row[40] == 255
    assert 0 < row[8] < 255


def test_dicom_monochrome1_is_inverted_and_min_max_without_a_window(tmp_path: Path) -> None:
    found = analyse(write(tmp_path, dicom(photometric="MONOCHROME1", window=None)))
    assert found.preview_png is not None
    with Image.open(io.BytesIO(found.preview_png)) as img:
        assert img.getpixel((0, 0)) == 255
        assert img.getpixel((63, 0)) == 0


def test_multi_frame_dicom_previews_the_first_frame(tmp_path: Path) -> None:
    found = analyse(write(tmp_path, dicom(frames=3)))
    assert found.meta["frames"] == 3
    assert found.preview_png is not None
    with Image.open(io.BytesIO(found.preview_png)) as img:
        assert img.size == (64, 64)


def test_dicom_without_pixels_has_no_preview(tmp_path: Path) -> None:
    found = analyse(write(tmp_path, dicom(pixels=False)))
    assert found.kind == "dicom"
    assert found.meta["has_pixels"] is False
    assert found.meta["preview"] is False
    assert found.meta["rows"] is None
    assert found.preview_png is None


def test_a_broken_dicom_header_is_refused(tmp_path: Path) -> None:
    data = b"\x00" * 128 + b"DICM" + b"\xff" * 64
    with pytest.raises(UnreadableContent) as info:
        analyse(write(tmp_path, data))
    assert info.value.code == "invalid_dicom"


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("../../etc/passwd", "text", "passwd"),
        ("C:\\x\\y.pdf", "pdf", "y.pdf"),
        ("..", "pdf", "document.pdf"),
        (None, "dicom", "document.dcm"),
        ("", "png", "document.png"),
        ("evil\x00name\n.txt", "text", "evilname.txt"),
        ("report\r\n\x1b[31m.pdf", "pdf", "report[31m.pdf"),
        ("invoice\u202efdp.exe", "pdf", "invoicefdp.exe"),  # no right-to-left override
        ("化验单:2026?.pdf", "pdf", "化验单_2026_.pdf"),
        (" /tmp/ ", "text", "document.txt"),
    ],
)
def test_display_names_are_safe(raw: str | None, kind: str, expected: str) -> None:
    assert display_name(raw, kind) == expected


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = display_name("检" * 300 + ".pdf", "pdf")
    assert len(name) == 120
    assert name.endswith("检.pdf")
