"""The attachments store with encryption at rest: ``FileStore`` sealing what it accepts.

Kept apart from ``records.files`` (whose receiving, checking and quarantine are
other concerns) so that the one hook, sealing an upload before it is renamed
into the store, stays small and separate.
"""

from __future__ import annotations

from pathlib import Path

from records.files import FileStore, Incoming
from records.sealed import Keyring, seal_file


class SealingFileStore(FileStore):
    """The attachments store with every accepted content sealed before it is stored.

    Contents stay addressed by the SHA-256 of their *plaintext* (deduplication
    and the records do not change); the upload is sealed in the ``incoming``
    directory and only then renamed into the store, so no plaintext copy ever
    sits under ``files/``.
    """

    def __init__(self, root: Path, incoming: Path, *, keyring: Keyring) -> None:
        """Like ``FileStore``, sealing under ``keyring``."""
        super().__init__(root, incoming)
        self.keyring = keyring

    def accept(self, incoming: Incoming) -> str:
        """Seal a finished upload, then move it into the store (see ``FileStore.accept``)."""
        sha256 = incoming.finish()
        if not self.path_for(sha256).is_file():
            seal_file(incoming.path, self.keyring)
        return super().accept(incoming)
