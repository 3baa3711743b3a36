"""Serving a stored file (a document, a recording) with HTTP Range, encrypted or not.

A plaintext file goes out through aiohttp's ``FileResponse`` (sendfile,
conditional requests). An encrypted one (``records.sealed``) is read through
the decrypting reader: only the 64 KiB chunks a range touches are decrypted,
off the event loop, the first chunk on its own (so that the first bytes go out
at once), then a megabyte at a time. It answers like ``FileResponse`` does
(206 with ``Content-Range``, 416 with ``bytes */size``, ``If-Range``,
``If-None-Match``), with the plaintext's SHA-256 as a strong ETag.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

from aiohttp import hdrs, web

from records import sealed

log = logging.getLogger(__name__)

BLOCK = 1024 * 1024
# The first block of a response is one sealed chunk: a player needs the first
# few kilobytes (the header, the first cluster) to start, and should not wait
# for a megabyte to be decrypted before the first byte goes out.
FIRST_BLOCK = sealed.CHUNK


def _open(path: Path, keyring: sealed.Keyring | None) -> tuple[BinaryIO, int, float] | None:
    """The decrypting reader, plaintext size and mtime; None for a plaintext file."""
    if not sealed.is_sealed(path):
        return None
    fh = sealed.open_plain(path, keyring)
    return fh, sealed.plain_size(fh), path.stat().st_mtime


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return f'"{etag}"' in tags


def _if_range_holds(request: web.Request, etag: str, mtime: float) -> bool:
    value = request.headers.get(hdrs.IF_RANGE)
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == f'"{etag}"'
    try:
        return mtime <= parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return False


async def stored_file(
    request: web.Request,
    path: Path,
    keyring: sealed.Keyring | None,
    *,
    headers: dict[str, str],
    etag: str | None = None,
) -> web.StreamResponse:
    """A response with the plaintext of ``path`` (Range supported).

    Args:
        request: the request (its ``Range`` and conditional headers are honoured).
        path: the stored file, sealed or not.
        keyring: the master keys (None: encryption off).
        headers: headers to send (type, disposition, cache policy).
        etag: a strong validator of the plaintext (its SHA-256); for sealed files.
    """
    opened = await asyncio.to_thread(_open, path, keyring)
    if opened is None:
        return web.FileResponse(path, headers=headers)
    fh, size, mtime = opened
    try:
        return await _send(request, fh, size, mtime, headers, etag)
    finally:
        await asyncio.to_thread(fh.close)


async def _send(
    request: web.Request,
    fh: BinaryIO,
    size: int,
    mtime: float,
    headers: dict[str, str],
    etag: str | None,
) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    response.headers[hdrs.LAST_MODIFIED] = format_datetime(
        datetime.fromtimestamp(int(mtime), UTC), usegmt=True
    )
    validator = etag or f"{int(mtime * 1e9):x}-{size:x}"
    response.headers[hdrs.ETAG] = f'"{validator}"'
    none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if none_match is not None and _etag_matches(none_match, validator):
        response.set_status(304)
        await response.prepare(request)
        return response

    start, count = 0, size
    if hdrs.RANGE in request.headers and _if_range_holds(request, validator, mtime):
        try:
            rng = request.http_range
        except ValueError:
            rng = None
        if rng is None or (rng.start is not None and rng.start >= 0 and rng.start >= size):
            response.set_status(416)
            response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
            response.content_length = 0
            await response.prepare(request)
            return response
        if rng.start is not None:
            if rng.start < 0:  # the tail: bytes=-N
                start = max(size + rng.start, 0)
                count = size - start
            else:
                start = rng.start
                count = min(rng.stop if rng.stop is not None else size, size) - start
            response.set_status(206)
            response.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{start + count - 1}/{size}"
    response.content_length = count
    await response.prepare(request)
    if request.method == hdrs.METH_HEAD:
        return response
    first = min(count, FIRST_BLOCK)
    blocks = itertools.chain(
        sealed.read_range(fh, start, first, first),
        sealed.read_range(fh, start + first, count - first, BLOCK),
    )
    while True:
        try:
            data = await asyncio.to_thread(next, blocks, b"")
        except sealed.SealError:
            # Headers are gone already: cut the connection rather than send
            # bytes that failed authentication (the length will not match).
            log.exception("a stored file failed to decrypt while it was served")
            with contextlib.suppress(Exception):
                if request.transport is not None:
                    request.transport.close()
            return response
        if not data:
            break
        await response.write(data)
    await response.write_eof()
    return response
