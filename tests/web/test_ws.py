"""The push socket: who may connect, who hears about what, and bad messages.

No sleeps: pushes are published before the HTTP response that caused them
returns, and messages on one socket arrive in order, so "a ping sent after the
change is answered by the very next message" proves nothing was pushed.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient

from signaling.call.messages import MAX_MESSAGE_BYTES
from web.ws import MAX_FRAME

from ..scenario import Scenario

LoginAs = Any
Client = TestClient[Any, Any]
TIMEOUT = 5.0  # an upper bound for a message that must come, never a wait


def origin_of(client: Client) -> str:
    return str(client.make_url("/")).rstrip("/")


async def connect(user: Any) -> ClientWebSocketResponse:
    """Open the socket as a browser on this site would, and read the greeting."""
    ws = await user.client.ws_connect("/ws", headers={"Origin": origin_of(user.client)})
    hello = await ws.receive_json(timeout=TIMEOUT)
    assert hello == {"type": "hello", "account_id": user.account["id"]}
    return ws


async def assert_nothing_pending(ws: ClientWebSocketResponse) -> None:
    """Nothing was queued for this socket: a ping's answer is the next message."""
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=TIMEOUT) == {"type": "pong"}


async def test_a_request_is_pushed_only_to_those_who_may_see_it(scenario: Scenario) -> None:
    users = {
        n: await scenario.user(n) for n in ("clinic1", "clinic2", "cardio1", "resp1", "coord1")
    }
    sockets = {name: await connect(user) for name, user in users.items()}

    c = (await scenario.consultation(urgency="urgent")).json

    for name in ("cardio1", "coord1", "clinic1"):
        msg = await sockets[name].receive_json(timeout=TIMEOUT)
        assert msg["type"] == "consultation.changed", name
        assert (msg["id"], msg["state"]) == (c["id"], "requested")
        # Identifiers and states only: the page fetches details through the API.
        assert set(msg) <= {"type", "id", "state", "escalated", "department_id"}
        assert "刘大爷" not in str(msg)
        assert "冠脉造影" not in str(msg)
    for name in ("resp1", "clinic2"):
        await assert_nothing_pending(sockets[name])

    # The next change reaches the same people, and again no one else.
    status, _ = await users["cardio1"].post(f"/api/consultations/{c['id']}/accept")
    assert status == 200
    for name in ("cardio1", "coord1", "clinic1"):
        msg = await sockets[name].receive_json(timeout=TIMEOUT)
        assert (msg["type"], msg["id"], msg["state"]) == (
            "consultation.changed",
            c["id"],
            "accepted",
        )
    for name, ws in sockets.items():
        await assert_nothing_pending(ws)
        await ws.close()
        assert ws.closed, name


async def test_cross_origin_handshake_is_refused(login_as: LoginAs) -> None:
    user = await login_as("cardio1")
    for origin in ("https://evil.example", "null", origin_of(user.client) + ".evil.example"):
        with pytest.raises(WSServerHandshakeError) as refused:
            await user.client.ws_connect("/ws", headers={"Origin": origin})
        assert refused.value.status == 403, origin


async def test_handshake_without_origin_is_refused(login_as: LoginAs) -> None:
    user = await login_as("cardio1")
    with pytest.raises(WSServerHandshakeError) as refused:
        await user.client.ws_connect("/ws")
    assert refused.value.status == 403


async def test_handshake_without_session_is_refused(anon: Client) -> None:
    with pytest.raises(WSServerHandshakeError) as refused:
        await anon.ws_connect("/ws", headers={"Origin": origin_of(anon)})
    assert refused.value.status == 401


async def test_handshake_after_logout_is_refused(login_as: LoginAs) -> None:
    user = await login_as("cardio1")
    status, _ = await user.delete("/api/session")
    assert status == 204
    with pytest.raises(WSServerHandshakeError) as refused:
        await user.client.ws_connect("/ws", headers={"Origin": origin_of(user.client)})
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda ws: ws.send_str("{not json"), "invalid_json"),
        (lambda ws: ws.send_str('{"type": "subscribe_everything"}'), "unknown_type"),
        (lambda ws: ws.send_str('{"kind": "ping"}'), "unknown_type"),
        (lambda ws: ws.send_str('["ping"]'), "not_an_object"),
        (lambda ws: ws.send_str("null"), "not_an_object"),
        (
            lambda ws: ws.send_str('{"type": "ping", "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}'),
            "too_large",
        ),
        (lambda ws: ws.send_bytes(b'{"type": "ping"}'), "bad_message"),
    ],
)
async def test_bad_messages_get_an_error_and_the_socket_stays_usable(
    send: Any, code: str, login_as: LoginAs
) -> None:
    ws = await connect(await login_as("clinic1"))

    await send(ws)

    msg = await ws.receive_json(timeout=TIMEOUT)
    assert msg["type"] == "error"
    assert msg["code"] == code
    assert isinstance(msg["message"], str)
    await assert_nothing_pending(ws)
    await ws.close()


async def test_an_oversized_frame_closes_the_socket(login_as: LoginAs) -> None:
    ws = await connect(await login_as("clinic1"))

    await ws.send_str('{"type": "ping", "pad": "' + "x" * MAX_FRAME + '"}')

    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.closed
    assert ws.close_code == 1009  # message too big


async def test_logout_closes_the_sessions_socket(login_as: LoginAs, scenario: Scenario) -> None:
    cardio = await login_as("cardio1")
    ws = await connect(cardio)
    status, _ = await cardio.delete("/api/session")
    assert status == 204

    await scenario.consultation(urgency="urgent")

    # A revoked session hears nothing more: the server has closed its socket.
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING), msg
