"""The benchmark's baseline: a bare aiohttp WebSocket relay.

No authentication, no validation, no storage: ``/ws?pair=<id>`` puts the socket in
pair ``<id>`` and every text frame is forwarded, as is, to the other socket of the
pair. It answers ``{"type": "joined"}`` once the socket is registered, so the load
generator treats it like the real server. Run as its own process:
``python tests/bench/_bare_relay.py --port P``.
"""

from __future__ import annotations

import argparse
import gc
import resource

from aiohttp import WSMsgType, web

PAIRS: web.AppKey[dict[str, list[web.WebSocketResponse]]] = web.AppKey("pairs", dict)


async def health(request: web.Request) -> web.StreamResponse:
    """Liveness probe (same path as the real server's)."""
    return web.json_response({"status": "ok"})


async def relay(request: web.Request) -> web.StreamResponse:
    """Forward each text frame to the partner socket of the same pair."""
    pair = request.query.get("pair", "")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024 * 1024)
    await ws.prepare(request)
    members = request.app[PAIRS].setdefault(pair, [])
    members.append(ws)
    try:
        await ws.send_str('{"type": "joined"}')
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            for other in members:
                if other is not ws and not other.closed:
                    await other.send_str(frame.data)
    finally:
        members.remove(ws)
        if not members:
            request.app[PAIRS].pop(pair, None)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = web.Application()
    app[PAIRS] = {}
    app.router.add_get("/api/health", health)
    app.router.add_get("/ws", relay)
    app.on_startup.append(tune_gc)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


async def tune_gc(_app: web.Application) -> None:
    # The garbage collector as ``teleconsult serve`` sets it (web/cli.py ``tune_gc``):
    # the baseline runs under the same conditions, and at 10,000 sockets its full
    # collections (up to 3 s, 730,000 objects) made its own tail.
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(20_000, older, oldest)


if __name__ == "__main__":
    main()
