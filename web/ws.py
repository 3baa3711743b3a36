"""The WebSocket endpoint: an adapter from aiohttp onto signaling's Channel.

One authenticated socket per browser tab carries both the dashboards' push
messages and, after a ``join``, the call's signaling. The ``Origin`` must be this
site (a page elsewhere cannot ride on the user's cookie); heartbeats find dead
sockets. A bad message gets an ``error`` message with a code and the socket stays
open.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from records.vocab import ErrorCode
from signaling.call.calls import Calls
from signaling.call.cluster import Cluster
from signaling.call.outbound import Error, Hello, ServerMessage, encode
from web.auth import actor, same_origin
from web.errors import api_error
from web.keys import AUTH, CALLS, CLUSTER, HUB, SESSION, SOCKETS

log = logging.getLogger(__name__)

# Frames up to this size are read and refused politely (``signaling.call.messages.parse``);
# beyond it aiohttp closes the socket (1009), so a flood cannot exhaust memory.
MAX_FRAME = 1024 * 1024
HEARTBEAT_SECONDS = 20.0


class SocketChannel:
    """A signaling ``Channel`` over one aiohttp WebSocket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, message: ServerMessage) -> None:
        """Send one message."""
        await self.send_text(encode(message))

    async def reconnect(self, reason: str) -> None:
        """Close with "going away": the page reconnects and resumes (its call
        moved to another web process)."""
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=reason.encode())

    async def close(self, reason: str) -> None:
        """Hang up (the account may no longer be connected)."""
        await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())

    async def send_text(self, text: str) -> None:
        """Send one encoded message (sends are serialized per socket)."""
        if self.ws.closed:
            raise ConnectionResetError("socket closed")
        async with self._lock:
            await self.ws.send_str(text)


async def websocket(request: web.Request) -> web.StreamResponse:
    """Push channel for dashboards and signaling for calls."""
    if not same_origin(request) or "Origin" not in request.headers:
        raise api_error(ErrorCode.BAD_ORIGIN, "WebSocket connections must come from this site")
    session = request.get(SESSION)
    if session is None:
        raise api_error(ErrorCode.UNAUTHENTICATED, "log in first")
    who = actor(request)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    channel = SocketChannel(ws)
    hub, sockets = request.app[HUB], request.app[SOCKETS]
    # With Redis the cluster routes each frame to the process owning its call.
    calls: Calls | Cluster = request.app.get(CLUSTER) or request.app[CALLS]
    sockets[ws] = session.token
    hub.subscribe(session.account, channel)
    try:
        await channel.send(Hello(account_id=session.account.id))
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                await channel.send(
                    Error(code=ErrorCode.BAD_MESSAGE, message="send JSON text messages")
                )
                continue
            await calls.receive(who, channel, frame.data)
    except ConnectionError:
        pass  # the client went away (a send to it failed): nobody to tell
    except Exception:
        # Past ``prepare`` the connection is a WebSocket: an exception reaching the
        # error middleware would be written onto it as an HTTP 500. Nothing in
        # ``calls.receive`` should raise; if something does, close properly.
        log.exception("peer=%s socket handler failed", who.id)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal server error")
    finally:
        hub.unsubscribe(channel)
        sockets.pop(ws, None)
        calls.disconnected(channel)
    return ws


def session_digest(token: str) -> str:
    """What names a session between web processes (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def close_sockets(app: web.Application, token: str | None = None) -> None:
    """Close the sockets of one session (logout: in every web process), or all of
    this process's (shutdown)."""
    cluster = app.get(CLUSTER)
    if token is not None and cluster is not None:
        cluster.session_ended(session_digest(token))
    await _close_local(app, token)


async def close_session_digest(app: web.Application, digest: str) -> None:
    """Close this process's sockets of the session another process ended."""
    for token in {t for t in app[SOCKETS].values() if session_digest(t) == digest}:
        await _close_local(app, token)


async def _close_local(app: web.Application, token: str | None) -> None:
    sockets = app[SOCKETS]
    for ws, owner in list(sockets.items()):
        if token is None or owner == token:
            await ws.close(
                code=WSCloseCode.POLICY_VIOLATION if token else WSCloseCode.GOING_AWAY,
                message=b"session ended" if token else b"server shutdown",
            )


async def sweep_sessions(app: web.Application) -> None:
    """Close sockets whose session expired or was revoked, or whose account was disabled."""
    auth = app[AUTH]
    for token in set(app[SOCKETS].values()):
        if await auth.authenticate(token, fresh=True) is None:
            await close_sockets(app, token)
