"""Pre-call check API: the paths to probe, the probe itself, and the kept results.

``GET .../precall`` says which network paths the page should probe, each with
its ``RTCConfiguration`` (fresh TURN credentials, one TURN transport per path),
and the latest check of each participant. ``POST .../precall/probe`` answers a
probe offer (no trickle: the page sends its offer once gathering is complete,
the answer carries all of the server's candidates). ``POST .../precall`` keeps
a finished check; the verdict is the server's (``precall_verdict``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from records.models import Account, PrecallCheck
from records.vocab import ErrorCode
from signaling.call.ice import IceConfig
from signaling.call.outbound import IceServer
from signaling.workflow.precall import CALL_ROLES
from signaling.workflow.precall_verdict import Device, PathResult, Report
from web import schemas
from web.auth import actor
from web.errors import api_error
from web.keys import CALLS, CLOCK, DIRECTORY, PRECALL
from web.openapi import Route
from web.payloads import body, iso, person_ref

# Seconds each path is probed for (its video; the browser's controller settles
# in them), and the most its video may take (above what a consultation needs,
# so that "enough" can be told from "barely").
PROBE_SECONDS = 6.0
PROBE_KBPS = 2500


def turn_transport(url: str) -> str:
    """``udp``, ``tcp`` or ``tls``: how the browser reaches the TURN server at ``url``."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() == "turns":
        return "tls"
    query = parse_qs(rest.partition("?")[2])
    return "tcp" if query.get("transport", ["udp"])[0].lower() == "tcp" else "udp"


def _server_json(server: IceServer) -> dict[str, Any]:
    out: dict[str, Any] = {"urls": list(server.urls)}
    if server.username is not None:
        out.update(username=server.username, credential=server.credential)
    return out


def probe_paths(ice: IceConfig, user_id: str, now: Any) -> list[dict[str, Any]]:
    """The paths to probe: direct, then TURN over UDP, TCP and TLS (``configured`` or not)."""
    servers = ice.servers(user_id, now)
    stun = [_server_json(s) for s in servers if s.username is None]
    paths: list[dict[str, Any]] = [
        {"name": "direct", "configured": True, "policy": "all", "ice_servers": stun}
    ]
    turn = next((s for s in servers if s.username is not None), None)
    for transport in ("udp", "tcp", "tls"):
        urls = [u for u in (turn.urls if turn else ()) if turn_transport(u) == transport]
        path: dict[str, Any] = {
            "name": f"turn_{transport}",
            "configured": bool(urls),
            "policy": "relay",
            "ice_servers": [],
        }
        if turn is not None and urls:
            path["ice_servers"] = [
                {"urls": urls, "username": turn.username, "credential": turn.credential}
            ]
        paths.append(path)
    return paths


def check_json(check: PrecallCheck, people: dict[str, Account]) -> dict[str, Any]:
    """One kept check as the pages show it."""
    return {
        "id": check.id,
        "participant": person_ref(people.get(check.participant_id)),
        "checked_at": iso(check.checked_at),
        "verdict": check.verdict,
        "report": check.report,
    }


def _ice(request: web.Request) -> IceConfig:
    return request.app[CALLS].ice


def _sends_once(request: web.Request) -> bool:
    legs = request.app[CALLS].legs
    return legs.relay or legs.recording is None


async def precall(request: web.Request) -> web.StreamResponse:
    """The paths a pre-call check probes, and each participant's latest check."""
    who = actor(request)
    checks = await request.app[PRECALL].latest(who, request.match_info["consultation_id"])
    people = await request.app[DIRECTORY].people([c.participant_id for c in checks])
    ice = _ice(request)
    # Only the call roles probe (and get TURN credentials); the others read the checks.
    paths = probe_paths(ice, who.id, request.app[CLOCK].now()) if who.role in CALL_ROLES else []
    return web.json_response(
        {
            "paths": paths,
            "relay_only": ice.transport_policy == "relay",
            "probe": {"seconds": PROBE_SECONDS, "kbps": PROBE_KBPS},
            "checks": [check_json(c, people) for c in checks],
        }
    )


async def probe(request: web.Request) -> web.StreamResponse:
    """Answer a network probe's offer (the server's side echoes each packet)."""
    data = await body(request, schemas.ProbeIn)
    ice = _ice(request)
    answer = await request.app[PRECALL].probe(
        actor(request), request.match_info["consultation_id"], ice.filter_sdp(data.sdp)
    )
    return web.json_response({"sdp": ice.filter_sdp(answer)})


async def record(request: web.Request) -> web.StreamResponse:
    """Keep a finished pre-call check with the consultation; the server's verdict."""
    data = await body(request, schemas.PrecallIn)
    names = [p.name for p in data.paths]
    if len(set(names)) != len(names):
        raise api_error(ErrorCode.INVALID_FIELDS, "each path may be given once", ["paths"])
    report = Report(
        camera=Device(**data.camera.model_dump()),
        microphone=Device(**data.microphone.model_dump()),
        speaker=data.speaker,
        paths=tuple(PathResult(**p.model_dump()) for p in data.paths),
        relay_only=_ice(request).transport_policy == "relay",
        sends_once=_sends_once(request),
    )
    who = actor(request)
    check = await request.app[PRECALL].record(who, request.match_info["consultation_id"], report)
    people = await request.app[DIRECTORY].people([who.id])
    return web.json_response({"check": check_json(check, people)}, status=201)


P = "/api/consultations/{consultation_id}/precall"
ROUTES: tuple[Route, ...] = (
    Route("GET", P, precall, "Pre-call check: paths to probe, latest checks", tag="precall"),
    Route("POST", P, record, "Keep a pre-call check", schemas.PrecallIn, 201, tag="precall"),
    Route("POST", P + "/probe", probe, "Answer a network probe", schemas.ProbeIn, tag="precall"),
)
