"""The WebSocket endpoint: an adapter from aiohttp onto signaling's Channel.

One authenticated socket per browser tab. The ``Origin`` must be this site (a
page elsewhere cannot ride on the user's cookie); heartbeats find dead sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from web.auth import same_origin
from web.errors import ApiError
from web.keys import HUB, SESSION, SOCKETS

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024
HEARTBEAT_SECONDS = 20.0


class SocketChannel:
    """A signaling ``Channel`` over one aiohttp WebSocket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message (sends are serialized per socket)."""
        if self.ws.closed:
            raise ConnectionResetError("socket closed")
        async with self._lock:
            await self.ws.send_str(json.dumps(message, ensure_ascii=False))


async def websocket(request: web.Request) -> web.StreamResponse:
    """Push channel for dashboards (and, later, call signaling)."""
    if not same_origin(request) or "Origin" not in request.headers:
        raise ApiError(403, "bad_origin", "WebSocket connections must come from this site")
    session = request.get(SESSION)
    if session is None:
        raise ApiError(401, "unauthenticated", "log in first")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    channel = SocketChannel(ws)
    hub = request.app[HUB]
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    hub.subscribe(session.account, channel)
    try:
        await channel.send({"type": "hello", "account_id": session.account.id})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                await channel.send(_error("bad_message", "send JSON text messages"))
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                await channel.send(_error("invalid_json", "message is not valid JSON"))
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "ping":
                await channel.send({"type": "pong"})
            else:
                await channel.send(_error("unknown_type", "unknown message type"))
    finally:
        hub.unsubscribe(channel)
        sockets.discard(ws)
    return ws


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
