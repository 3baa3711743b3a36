"""The attachments store with encryption at rest: ``FileStore`` sealing what it accepts.

Kept apart from ``records.files`` (whose receiving, checking and quarantine are
other concerns) so that the one hook, sealing an upload before it is renamed
into the store, stays small and separate.
"""

from __future__ import annotations

from pathlib import Path

from records.files import FileStore
from records.sealed import Keyring, seal_file


class SealingFileStore(FileStore):
    """The attachments store with every accepted content sealed before it is stored.

    Contents stay addressed by the SHA-256 of their *plaintext* (deduplication
    and the records do not change); the upload is sealed in the ``incoming``
    directory and only then renamed into the store, so no plaintext copy ever
    sits under ``files/``.
    """

    def __init__(
        self, root: Path, incoming: Path, quarantine: Path | None = None, *, keyring: Keyring
    ) -> None:
        """Like ``FileStore``, sealing under ``keyring`` (quarantined files are not stored)."""
        super().__init__(root, incoming, quarantine)
        self.keyring = keyring

    def _place(self, source: Path, target: Path) -> None:
        """Seal a finished upload or cleaned copy in ``incoming``, then move it in."""
        seal_file(source, self.keyring)
        super()._place(source, target)
