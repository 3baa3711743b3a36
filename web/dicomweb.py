"""The DICOMweb adapter: QIDO-RS and WADO-RS over aiohttp, for ``PacsService``.

A regional PACS is reached with the server's own credentials (HTTP basic, as
Orthanc, dcm4chee behind a proxy and most hospital gateways take them); the
doctors never see them. Every request has the configured timeout, answers are
read up to a bound (a JSON search up to ``MAX_JSON``, an instance up to the
upload limit) and the parsing is ``records.dicomweb``'s. Failures become
``PacsError`` with a stable code; nothing the PACS sent is logged.

``dicomweb-client`` (the reference Python client) is built on ``requests``,
which would block the event loop or need a thread per call; the two requests
needed here are small enough to write on the app's own HTTP client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from records import dicomweb
from records.errors import UnreadableContent
from records.vocab import ErrorCode
from signaling.errors import PacsError

log = logging.getLogger(__name__)

MAX_JSON = 8 * 1024 * 1024
# Uncompressed (explicit VR little endian): the PACS transcodes what it can, so
# the viewer can decode every frame without JPEG decoders on this server.
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
WADO_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class DicomWebClient:
    """A DICOMweb endpoint (``base_url`` is the root: ``https://pacs/dicom-web/``)."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str = "",
        password: str = "",
        timeout: float = 20.0,
        max_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        """Remember the endpoint; the HTTP session opens on first use."""
        self.base_url = base_url.rstrip("/") + "/"
        # Sent with every request (aiohttp 3.14 deprecates BasicAuth for this).
        self.headers = (
            {"Authorization": aiohttp.encode_basic_auth(username, password)} if username else {}
        )
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def _get(
        self,
        path: str,
        accept: str,
        limit: int,
        params: list[tuple[str, str]] | None = None,
        passed: tuple[int, ...] = (204, 404),
    ) -> tuple[int, str, bytes]:
        """GET under the root: (status, content type, body); a status in ``passed``
        comes back with an empty body, any other but 200 raises ``PacsError``."""
        url = self.base_url + path
        try:
            # No redirects: the credentials go to the configured PACS and nowhere else.
            async with self._http().get(
                url, params=params, headers={"Accept": accept}, allow_redirects=False
            ) as resp:
                if resp.status in (401, 403):
                    raise PacsError(
                        f"the PACS refused this server's credentials ({resp.status})",
                        code=ErrorCode.PACS_REFUSED,
                    )
                if resp.status in passed:
                    return resp.status, resp.headers.get("Content-Type", ""), b""
                if resp.status != 200:
                    raise PacsError(f"the PACS answered {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise PacsError(
                            f"the PACS's answer is larger than {limit} bytes",
                            code=ErrorCode.PACS_BAD_ANSWER,
                        )
                return resp.status, resp.headers.get("Content-Type", ""), bytes(body)
        except TimeoutError as exc:
            raise PacsError("the PACS did not answer in time", code=ErrorCode.PACS_TIMEOUT) from exc
        except aiohttp.ClientError as exc:
            log.warning("PACS unreachable: %s", type(exc).__name__)
            raise PacsError("the PACS cannot be reached") from exc

    async def search(self, path: str, params: list[tuple[str, str]]) -> Any:
        """A QIDO-RS query: the decoded JSON (None when nothing matched)."""
        status, _kind, body = await self._get(path, "application/dicom+json", MAX_JSON, params)
        if status != 200 or not body.strip():
            return None
        try:
            return await asyncio.to_thread(json.loads, body)
        except ValueError as exc:
            raise PacsError(
                "the PACS's answer is not JSON", code=ErrorCode.PACS_BAD_ANSWER
            ) from exc

    async def retrieve(self, path: str) -> list[bytes]:
        """A WADO-RS retrieve: the DICOM files of the answer."""
        status, kind, body = await self._get(
            path, WADO_ACCEPT, self.max_bytes, passed=(404, 406, 415, 500, 501)
        )
        if status != 200:
            # The PACS cannot transcode this one (406 by the standard; Orthanc
            # answers 500 for JPEG 2000 and RLE): take it as it is stored. The
            # viewer decodes what pydicom can here (RLE itself, JPEG and JPEG 2000
            # through Pillow); anything else stays downloadable, not viewable.
            status, kind, body = await self._get(path, WADO_ANY, self.max_bytes)
        if status != 200:
            raise PacsError(
                f"the PACS has no such instance ({status})", code=ErrorCode.PACS_BAD_ANSWER
            )
        try:
            return dicomweb.dicom_parts(kind, body)
        except UnreadableContent as exc:
            raise PacsError(exc.message, code=ErrorCode.PACS_BAD_ANSWER) from exc
