"""The cluster's hot path to Redis: PUBLISH and SUBSCRIBE on plain connections.

Every relayed frame between web processes is one PUBLISH and one message read.
Measured on the 2-core test machine: redis-py's asyncio client spends about
260 us on a one-command pipeline and 32 us on each message it reads, against
about 5 us for the same reading with hiredis's parser on an asyncio stream. So
the frames go here: commands packed by ``hiredis.pack_command`` and written in
batches without waiting for their replies (a reader drains them, logging any
error), and subscribed messages parsed by ``hiredis.Reader``. Everything else
(claims, presence, scans) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Address:
    """Where Redis is and how to log in, from a ``redis_url``."""

    host: str | None
    port: int
    path: str | None
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def of(cls, url: str) -> Address:
        """Parse ``redis://[user:password@]host[:port][/db]``, ``rediss://`` or ``unix://path``."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("a redis://, rediss:// or unix:// URL is needed")
        return cls(
            host=None if parts.scheme == "unix" else (parts.hostname or "localhost"),
            port=parts.port or 6379,
            path=parts.path if parts.scheme == "unix" else None,
            tls=parts.scheme == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A logged-in connection."""
        if self.path is not None:
            reader, writer = await asyncio.open_unix_connection(self.path)
        else:
            context = ssl.create_default_context() if self.tls else None
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context)
        if self.password is not None:
            auth = ("AUTH", self.username, self.password) if self.username else None
            writer.write(_pack(*(auth or ("AUTH", self.password))))
            reply = await _one_reply(reader)
            if isinstance(reply, hiredis.ReplyError):
                writer.close()
                raise ConnectionError(f"Redis refused the login: {reply}")
        return reader, writer


def _pack(*args: str) -> bytes:
    # hiredis's stub types its argument as a 1-tuple; it takes any number.
    packed: bytes = hiredis.pack_command(cast(Any, args))
    return packed


async def _one_reply(reader: asyncio.StreamReader) -> object:
    parser = hiredis.Reader(encoding="utf-8")
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            raise ConnectionError("Redis closed the connection")
        parser.feed(data)
        reply = parser.gets()
        if reply is not False:
            return reply


class Publisher:
    """PUBLISH in batches on one connection, replies drained in the background."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self._writer: asyncio.StreamWriter | None = None
        self._drain: asyncio.Task[None] | None = None

    async def publish(self, batch: list[tuple[str, str]]) -> None:
        """Send ``(channel, message)`` pairs in order; reconnect once if the link broke."""
        data = b"".join(_pack("PUBLISH", ch, msg) for ch, msg in batch)
        for attempt in (1, 2):
            try:
                writer = await self._connected()
                writer.write(data)
                await writer.drain()
                return
            except (ConnectionError, OSError):
                await self.close()
                if attempt == 2:
                    raise

    async def _connected(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.is_closing():
            reader, self._writer = await self.address.connect()
            self._drain = asyncio.get_running_loop().create_task(self._replies(reader))
        return self._writer

    async def _replies(self, reader: asyncio.StreamReader) -> None:
        # Each PUBLISH answers how many received it; only errors matter.
        parser = hiredis.Reader(encoding="utf-8")
        while data := await reader.read(READ_CHUNK):
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    log.warning("cluster: Redis refused a publish: %s", reply)

    async def close(self) -> None:
        """Close the connection."""
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
            self._drain = None
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self._writer = None


class Subscription:
    """SUBSCRIBE on a connection of its own."""

    def __init__(self, address: Address, channels: list[str]) -> None:
        self.address = address
        self.channels = channels
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader(encoding="utf-8")
        self._early: list[str] = []

    async def open(self) -> None:
        """Connect and subscribe; returns once Redis confirmed every channel."""
        self._reader, self._writer = await self.address.connect()
        self._parser = hiredis.Reader(encoding="utf-8")
        self._writer.write(_pack("SUBSCRIBE", *self.channels))
        await self._writer.drain()
        confirmed = 0
        while confirmed < len(self.channels):
            for reply in await self._read():
                if reply[0] == "subscribe":
                    confirmed += 1
                elif reply[0] == "message":
                    self._early.append(reply[2])

    async def _read(self) -> list[list[str]]:
        assert self._reader is not None  # noqa: S101 - open() comes first (our own call order)
        data = await self._reader.read(READ_CHUNK)
        if not data:
            raise ConnectionError("Redis closed the subscription")
        self._parser.feed(data)
        out = []
        while (reply := self._parser.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3:
                out.append(reply)
        return out

    async def messages(self) -> AsyncIterator[list[str]]:
        """Batches of messages as they come (raises when the link breaks)."""
        if self._early:
            yield self._early
            self._early = []
        while True:
            batch = [r[2] for r in await self._read() if r[0] == "message"]
            if batch:
                yield batch

    def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
