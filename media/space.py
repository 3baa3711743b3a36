"""Whether the recordings' disk can take a recording: one verdict for ``/readyz``,
``teleconsult check`` and the recorder's resumption after a full disk.

Blocking (a file is created and the file system asked): call it off the loop.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def disk_space(directory: Path, min_free_bytes: int) -> tuple[bool, str, int | None]:
    """Whether ``directory`` can be written and has ``min_free_bytes`` free.

    Returns:
        (ok, what went wrong or "", free bytes if known).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".check-"):
            pass
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        return False, f"not writable: {exc.strerror or exc}", None
    if free < min_free_bytes:
        return False, "low disk space", free
    return True, "", free
