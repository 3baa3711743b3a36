"""Recordings kept for their retention: checked against their hashes, purged at their date.

Audio/video process records are kept at least 3 years (``MIN_RETENTION_DAYS``
in ``recording``); each row carries its own ``retain_until``. ``verify``
re-hashes every kept file (``teleconsult recordings verify``), ``purge``
deletes the files whose date has passed (``teleconsult recordings purge``):
the row first, then the file, so a crash in between leaves an orphan file,
never a kept row without its file. The legs and their files while recording
are ``recording``'s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from records import sealed, store
from records.models import Recording
from records.vocab import ErrorCode
from signaling.errors import NotFound, RuleViolation
from signaling.workflow.base import Context, Service, Tx


@dataclass(frozen=True, kw_only=True)
class Check:
    """One recording's file compared with its stored hash."""

    recording: Recording
    ok: bool
    problem: str | None = None


class Retention(Service):
    """Verifies the kept recording files and purges those past their retention date."""

    def __init__(self, ctx: Context, *, root: Path, keyring: sealed.Keyring | None) -> None:
        """Wire the service.

        Args:
            ctx: the app's database, clock and notifier.
            root: the recordings directory (the rows' paths are relative to it).
            keyring: the keys of files sealed at rest (None: files in plaintext).
        """
        super().__init__(ctx)
        self.root = root
        self.keyring = keyring

    async def verify(self) -> list[Check]:
        """Re-hash every kept file and compare with the records.

        An encrypted file is decrypted on the way (every chunk authenticated)
        and its plaintext hashed; one that does not decrypt is a mismatch.
        """
        kept = await self.read(
            lambda conn: store.list_recordings(conn, statuses=["finished", "recovered"])
        )
        checks = []
        for rec in kept:
            path = self.root / rec.path
            if not path.exists():
                checks.append(Check(recording=rec, ok=False, problem="file missing"))
                continue
            try:
                digest = await asyncio.to_thread(sealed.plain_sha256, path, self.keyring)
            except sealed.SealError as exc:
                checks.append(Check(recording=rec, ok=False, problem=f"does not decrypt: {exc}"))
                continue
            if digest != rec.sha256:
                checks.append(Check(recording=rec, ok=False, problem="SHA-256 mismatch"))
            else:
                checks.append(Check(recording=rec, ok=True))
        return checks

    async def purge(self, recording_ids: list[str] | None = None) -> list[Recording]:
        """Delete files whose retention has passed.

        Args:
            recording_ids: only these (each must be past its retention date);
                None: every recording past its date.

        Raises:
            RuleViolation: a named recording is younger than its retention date
                (``retention_not_reached``); nothing is deleted then.
        """

        def work(tx: Tx) -> list[Recording]:
            now = tx.now
            kept = store.list_recordings(tx.conn, statuses=["finished", "recovered", "failed"])
            if recording_ids is not None:
                wanted = {r.id: r for r in kept if r.id in set(recording_ids)}
                missing = set(recording_ids) - set(wanted)
                if missing:
                    raise NotFound(f"no such recording: {', '.join(sorted(missing))}")
                young = [r.id for r in wanted.values() if not _expired(r, now)]
                if young:
                    raise RuleViolation(
                        f"retention date not reached: {', '.join(young)}",
                        code=ErrorCode.RETENTION_NOT_REACHED,
                    )
                targets = list(wanted.values())
            else:
                targets = [r for r in kept if _expired(r, now)]
            for rec in targets:
                store.update_recording(tx.conn, rec.id, status="purged")
                tx.audit("recording.purge", "recording", rec.id)
            return targets

        targets = await self.write(None, work)
        # Files go once their rows say so: a crash in between can leave a file
        # that no kept row refers to, never a kept row without its file.
        for rec in targets:
            (self.root / rec.path).unlink(missing_ok=True)
        return targets


def _expired(rec: Recording, now: Any) -> bool:
    return rec.retain_until is not None and rec.retain_until <= now
