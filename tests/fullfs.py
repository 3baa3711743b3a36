"""A disk that fills at once, for the tests of what a full disk does: a small
tmpfs mounted by the test (the tests run as root under CI), not a stand-in."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .requirements import require


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` (empty), unmounted after."""
    require(
        os.geteuid() == 0 and shutil.which("mount") is not None,
        "the full-disk test mounts a tmpfs: it needs root",
    )
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)  # noqa: S603,S607
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)  # noqa: S603,S607


@contextmanager
def tiny_filesystem(path: Path, free_bytes: int, size: int = 1024 * 1024) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes at ``path`` with about ``free_bytes`` left: a disk
    that fills at once.

    Yields the filler file: removing it frees the disk."""
    with tmpfs(path, size):
        filler = path / "filler"
        filler.write_bytes(b"\0" * (size - free_bytes))
        yield filler


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` with a file until it has no page left.

    Returns the file: removing it frees the space again."""
    filler = folder / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler
