"""The attachments file store: contents addressed by their SHA-256.

A file lives at ``<root>/<aa>/<bb>/<sha256>`` (the first two pairs of hex digits
spread the files over directories). The path is made from the hash alone, never
from anything a client sent (a file name, a title), so no upload can choose where
it is written. The same content uploaded twice is stored once.

An upload is first written to a temporary file in a separate ``incoming``
directory, hashed as it is written; only content that has been accepted is moved
into the store, with an atomic rename. A content that the malware scanner flags
is moved to ``quarantine`` instead, a directory beside the store that nothing
serves from. Everything here is blocking file I/O: the
async layers call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Incoming:
    """A file being received: written, hashed and counted chunk by chunk."""

    def __init__(self, directory: Path) -> None:
        """Open a new temporary file in ``directory``."""
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.sha256: str | None = None

    def write(self, data: bytes) -> None:
        """Append ``data`` to the file and the hash."""
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> str:
        """Flush the file to disk and return the SHA-256 of its content."""
        if self.sha256 is None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.sha256 = self._hash.hexdigest()
        return self.sha256

    def discard(self) -> None:
        """Close and delete the temporary file (if it was not moved into the store)."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class FileStore:
    """Content-addressed files under ``root``; uploads arrive in ``incoming``."""

    def __init__(self, root: Path, incoming: Path, quarantine: Path | None = None) -> None:
        """Use (and create) the directories.

        Args:
            root: where stored contents live (``<data_dir>/files``).
            incoming: where uploads are written while they arrive; on the same
                file system as ``root``, so that accepting one is a rename.
            quarantine: where flagged uploads are kept, never served
                (default: ``quarantine`` beside ``incoming``).
        """
        self.root = root
        self.incoming_dir = incoming
        self.quarantine_dir = quarantine or incoming.parent / "quarantine"
        root.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the content with this SHA-256 is (or would be) stored.

        Raises:
            ValueError: ``sha256`` is not 64 lower-case hex digits.
        """
        if not SHA256.match(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        """Whether the content is stored."""
        return self.path_for(sha256).is_file()

    def receive(self) -> Incoming:
        """Start receiving an upload into a new temporary file."""
        return Incoming(self.incoming_dir)

    def accept(self, incoming: Incoming) -> str:
        """Move a finished upload into the store (or drop it if already stored).

        Returns:
            The content's SHA-256.
        """
        sha256 = incoming.finish()
        target = self.path_for(sha256)
        if target.is_file():
            # Stored before: the bytes are the same, keep the one copy.
            incoming.discard()
            return sha256
        self._place(incoming.path, target)
        return sha256

    def _place(self, source: Path, target: Path) -> None:
        """Move a finished file of ``incoming`` to its place in the store.

        The one hook for what every stored content goes through (encryption at
        rest seals here: ``records.sealed_store``).
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def scratch(self) -> Path:
        """A new empty file name in ``incoming`` for a derived content (a cleaned copy)."""
        fd, name = tempfile.mkstemp(dir=self.incoming_dir, prefix="upload-", suffix=".part")
        os.close(fd)
        return Path(name)

    def accept_file(self, path: Path) -> tuple[str, int]:
        """Move a finished file of ``incoming`` (see ``scratch``) into the store.

        Returns:
            The content's SHA-256 and size.
        """
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                os.fsync(fh.fileno())
            sha256 = digest.hexdigest()
            target = self.path_for(sha256)
            if not target.is_file():
                self._place(path, target)
            return sha256, size
        finally:
            path.unlink(missing_ok=True)

    def quarantine(self, incoming: Incoming) -> Path:
        """Keep a finished upload in the quarantine directory (by its SHA-256).

        Returns:
            Where it is kept.
        """
        sha256 = incoming.finish()
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / sha256
        os.replace(incoming.path, target)
        return target

    def put_bytes(self, data: bytes) -> str:
        """Store a small content given in memory (a generated preview).

        Returns:
            Its SHA-256.
        """
        incoming = self.receive()
        try:
            incoming.write(data)
            return self.accept(incoming)
        finally:
            incoming.discard()

    def pending(self) -> list[Path]:
        """Temporary files of uploads that never finished (none after a clean stop)."""
        return sorted(self.incoming_dir.glob("upload-*.part"))

    def sweep(self, *, idle_seconds: float | None = None) -> int:
        """Remove what uploads that never finished left (a process killed while
        receiving one): every temporary file, or only those not written for
        ``idle_seconds`` (other processes may be receiving into the same
        directory). They hold a patient's document as sent, unsealed even with
        encryption at rest. Returns how many were removed."""
        cutoff = None if idle_seconds is None else time.time() - idle_seconds
        removed = 0
        for path in self.pending():
            try:
                if cutoff is None or path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished or removed meanwhile
        return removed
