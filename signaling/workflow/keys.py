"""Key rotation for encryption at rest: every stored file under the current key.

``teleconsult keys rotate`` walks the attachments store and the recordings
directory one file at a time. A sealed file wrapped under an older master key
gets its data key re-wrapped under the current one (``records.sealed``: the
bulk ciphertext is copied, not re-encrypted); a plaintext file (stored before
encryption was turned on, or whose sealing a full disk prevented) is sealed.
The TOTP secrets of the second factor (sealed values in the database) are
sealed anew under the current key too. Each changed file is audited as it is
done, so an interrupted run is resumed by running it again: what is done
already is skipped. The old key must stay in the keyring until a run reports
nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from records import sealed, sealed_values, store
from records.files import SHA256
from signaling.workflow.base import Context, Service, Tx
from signaling.workflow.second_factor import totp_context

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".webm", ".mp4")


@dataclass
class Rotation:
    """What a rotation run did."""

    key_id: str
    sealed: list[str] = field(default_factory=list)
    rewrapped: list[str] = field(default_factory=list)
    current: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    # TOTP secrets of the second factor (database values, not files) sealed anew.
    secrets: int = 0


def stored_files(files_root: Path, recordings_root: Path) -> Iterator[tuple[str, Path]]:
    """(name relative to the data directory, path) of every stored content and kept recording.

    Files being written (``.partial``), remuxed (``.tmp``) or sealed are left alone.
    """
    for path in sorted(files_root.glob("??/??/*")):
        if path.is_file() and SHA256.match(path.name):
            yield f"{files_root.name}/{path.relative_to(files_root)}", path
    for path in sorted(recordings_root.rglob("*")):
        if path.is_file() and path.suffix in RECORDING_SUFFIXES:
            yield f"{recordings_root.name}/{path.relative_to(recordings_root)}", path


class KeyService(Service):
    """Re-wraps or seals every stored file under the current master key."""

    def __init__(
        self, ctx: Context, *, keyring: sealed.Keyring, files_root: Path, recordings_root: Path
    ) -> None:
        """Wire the service.

        Args:
            ctx: database, clock and notifier (for the audit entries).
            keyring: the current master key first, then the ones being retired.
            files_root: the attachments store (``<data_dir>/files``).
            recordings_root: the recordings directory.
        """
        super().__init__(ctx)
        self.keyring = keyring
        self.files_root = files_root
        self.recordings_root = recordings_root

    async def rotate(self) -> Rotation:
        """Bring every stored file under the current key, one file at a time (audited)."""
        report = Rotation(key_id=self.keyring.current_id.hex())
        for root in (self.files_root, self.recordings_root):
            for temp in await asyncio.to_thread(sealed.leftover_temps, root):
                temp.unlink(missing_ok=True)
        names = await asyncio.to_thread(
            lambda: list(stored_files(self.files_root, self.recordings_root))
        )
        for name, path in names:
            try:
                action = await asyncio.to_thread(self._one, path)
            except (sealed.SealError, OSError) as exc:
                log.error("could not bring %s under the current key: %s", name, exc)
                report.failed[name] = str(exc)
                continue
            if action is None:
                report.current += 1
                continue
            (report.sealed if action == "file.seal" else report.rewrapped).append(name)
            await self._audit(action, name, report.key_id)

        await self._reseal_secrets(report)

        def summary(tx: Tx) -> None:
            tx.audit(
                "keys.rotate",
                "keyring",
                report.key_id,
                sealed=len(report.sealed),
                rewrapped=len(report.rewrapped),
                current=report.current,
                failed=len(report.failed),
                secrets=report.secrets,
            )

        await self.write(None, summary)
        return report

    async def _reseal_secrets(self, report: Rotation) -> None:
        """Seal every TOTP secret under the current key (one transaction, audited per account)."""
        keyring = self.keyring

        def work(tx: Tx) -> None:
            for account_id, text in store.second_factor_secrets(tx.conn):
                try:
                    fresh = sealed_values.reseal_value(text, keyring, totp_context(account_id))
                except sealed.SealError as exc:
                    log.error("the second factor of an account cannot be opened: %s", exc)
                    report.failed[f"second factor of account {account_id}"] = str(exc)
                    continue
                if fresh is None:
                    continue
                store.set_second_factor_secret(tx.conn, account_id, fresh)
                tx.audit("second_factor.reseal", "account", account_id, key_id=report.key_id)
                report.secrets += 1

        await self.write(None, work)

    def _one(self, path: Path) -> str | None:
        if sealed.seal_file(path, self.keyring):
            return "file.seal"
        if sealed.rewrap_file(path, self.keyring):
            return "file.rewrap"
        return None

    async def _audit(self, action: str, name: str, kid: str) -> None:
        def work(tx: Tx) -> None:
            tx.audit(action, "file", name, key_id=kid)

        await self.write(None, work)
