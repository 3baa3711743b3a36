"""What starting ``teleconsult`` imports: not the libraries only some requests need.

Every server process, every command line (``teleconsult demo``, ``check``,
``recordings verify``...) and every test that starts one pays for what
``web.cli`` imports. These libraries are imported where they are used (a report
made, an upload parsed, a DICOM frame decoded, a FHIR Bundle read, a recording
exported, Redis configured); together they were about a third of the 2.3 s of
CPU that ``import web.cli`` took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ONLY_WHEN_USED = (
    "fpdf",  # the consultation report (records.report_layout)
    "fontTools",  # the report's font subset (records.report_font)
    "pydicom",  # DICOM uploads and frames (records.dicomfile)
    "numpy",  # DICOM frames, watermarked exports (media.export)
    "pypdf",  # PDF uploads (records.filetypes)
    "PIL",  # image uploads, exports
    "fhir",  # FHIR import and export (records.fhir_common, records.fhir_xml)
    "jsonschema",  # supervision files (records.supervision)
    "redis",  # several web processes (web.app.open_cluster, web.check)
)


def test_starting_the_command_imports_none_of_the_libraries_only_some_requests_need() -> None:
    probe = (
        "import json, sys; import web.cli; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "web" in loaded  # the probe ran on this checkout
    assert sorted(loaded & set(ONLY_WHEN_USED)) == []
