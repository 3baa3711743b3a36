"""A real regional PACS for the tests: Debian's Orthanc with its DICOMweb plugin.

``Orthanc(folder).start()`` writes a configuration into ``folder`` (its own
storage and index directories, loopback HTTP and DICOM ports, HTTP basic
authentication with one user, the DICOMweb plugin at ``/dicom-web/``), runs
``Orthanc CONFIG.json`` and waits until ``/system`` answers with the
credentials; ``stop()`` ends that process by its id. ``upload(data)`` stores one
DICOM file through the REST API (``POST /instances``), as the imaging centre's
modalities would.

``orthanc_or_skip()`` fails under CI (which installs ``orthanc`` and
``orthanc-dicomweb``, see .ci/run) and skips elsewhere, like the browser tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

from .ports import free_port
from .requirements import require

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DATA = Path(__file__).parent / "data" / "dicom"
USER = "teleconsult"
PASSWORD = "pacs-test-secret"  # noqa: S105 - the throwaway test PACS


def orthanc_available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed."""
    return os.access(ORTHANC, os.X_OK) and PLUGIN.exists()


def orthanc_or_skip() -> None:
    """Fail under CI (which provides Orthanc), skip elsewhere."""
    require(
        orthanc_available(),
        "Orthanc with its DICOMweb plugin is needed (apt-get install orthanc orthanc-dicomweb)",
    )


class Orthanc:
    """One Orthanc process with its own directories and ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web/"

    def _request(
        self, method: str, path: str, data: bytes | None = None, auth: bool = True
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def start(self) -> None:
        config = {
            "Name": "teleconsult-test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,
            # A real PACS asks who is calling: HTTP basic, one account.
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
            # Chinese names: answer in UTF-8 (Orthanc defaults to Latin-1).
            "DefaultEncoding": "Utf8",
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config))
        with (self.folder / "orthanc.log").open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own arguments
                [ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "Orthanc exited: " + (self.folder / "orthanc.log").read_text()[-2000:]
                )
            try:
                status, _ = self._request("GET", "/system")
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.1)  # polling a starting process: there is no event to await
        raise RuntimeError("Orthanc did not answer within 60 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def upload(self, data: bytes) -> dict[str, Any]:
        """Store one DICOM file (``POST /instances``); Orthanc's answer."""
        status, body = self._request("POST", "/instances", data)
        if status != 200:
            raise RuntimeError(f"Orthanc refused the instance: {status} {body[:200]!r}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def unauthenticated_status(self, path: str) -> int:
        """The status of a request without credentials (401 when auth is on)."""
        return self._request("GET", path, auth=False)[0]


def sample(name: str, *, fresh: bool = False, **tags: Any) -> bytes:
    """A sample file of tests/data/dicom with some tags replaced (PatientID, ...).

    ``fresh``: new study, series and instance UIDs (another exam, not the same
    one filed again: Orthanc keeps the first copy of an instance).
    """
    ds = pydicom.dcmread(DATA / name)
    if fresh:
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
