"""Malware scanning of uploads by ClamAV's daemon (clamd), over its Unix socket.

The client speaks clamd's ``INSTREAM`` command: ``zINSTREAM\\0``, then the file in
chunks each preceded by its length (4 bytes, big-endian), then a zero length;
clamd answers ``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR``
(``INSTREAM size limit exceeded`` when the file is larger than clamd's
``StreamMaxLength``, which must be at least the server's ``max_upload_bytes``).
The file is streamed from disk, never held in memory.

Scanning fails closed: when clamd is configured but cannot be reached, answers
garbage or an error, the upload is refused (``ScanUnavailable``), never let
through unscanned. Everything here blocks: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from records.errors import RecordsError
from records.vocab import ErrorCode

CHUNK = 64 * 1024
# The longest answer clamd gives (a signature name and a few words).
MAX_REPLY = 4096


class ScanUnavailable(RecordsError):
    """The scanner could not give a verdict (unreachable, an error, a bad answer)."""

    code = ErrorCode.SCAN_UNAVAILABLE


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What clamd found: ``signature`` is None for a clean file."""

    signature: str | None

    @property
    def clean(self) -> bool:
        """Whether nothing was found."""
        return self.signature is None


class ClamdScanner:
    """A client of one clamd, reached on its ``LocalSocket``."""

    def __init__(self, socket_path: Path, *, timeout: float = 60.0) -> None:
        """Remember where clamd listens.

        Args:
            socket_path: clamd's ``LocalSocket``.
            timeout: seconds for connecting and for each read or write.
        """
        self.socket_path = socket_path
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError as exc:
            sock.close()
            raise ScanUnavailable("the malware scanner cannot be reached") from exc
        return sock

    @staticmethod
    def _reply(sock: socket.socket) -> str:
        data = b""
        while not data.endswith(b"\0") and len(data) < MAX_REPLY:
            part = sock.recv(MAX_REPLY)
            if not part:
                break
            data += part
        return data.rstrip(b"\0").decode("utf-8", "replace").strip()

    def ping(self) -> bool:
        """Whether clamd answers ``PING`` with ``PONG``."""
        try:
            sock = self._connect()
        except ScanUnavailable:
            return False
        try:
            sock.sendall(b"zPING\0")
            return self._reply(sock) == "PONG"
        except OSError:
            return False
        finally:
            sock.close()

    def scan(self, path: Path) -> Verdict:
        """Scan the file at ``path``.

        Raises:
            ScanUnavailable: no verdict (clamd unreachable, an error, a size limit).
        """
        sock = self._connect()
        try:
            sock.sendall(b"zINSTREAM\0")
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    sock.sendall(struct.pack(">I", len(chunk)) + chunk)
            sock.sendall(struct.pack(">I", 0))
            reply = self._reply(sock)
        except OSError as exc:
            raise ScanUnavailable("the malware scanner stopped answering") from exc
        finally:
            sock.close()
        # "stream: OK" | "stream: Eicar-Signature.UNOFFICIAL FOUND" | "... ERROR"
        _, _, result = reply.partition(": ")
        if result == "OK":
            return Verdict(signature=None)
        if result.endswith(" FOUND"):
            return Verdict(signature=result.removesuffix(" FOUND").strip()[:200])
        raise ScanUnavailable("the malware scanner could not scan the file")
