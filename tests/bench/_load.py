"""The benchmark's load generator: one worker process driving some consultations.

A worker owns a slice of the consultations (or bare-relay pairs). For each it opens
two WebSockets (the clinic doctor's and the specialist's), joins both, then sends
at a steady rate a mix of signaling messages from one side to the other and times
each from send to receipt by the peer. Both ends live in this process, so one
``time.perf_counter`` serves for both. Each timed message carries its sequence
number in a field the server relays untouched (the candidate string, the SDP's
``o=`` line, the chat text); ``media_state`` has no such field and is matched in
order (the relay keeps a socket's messages in order).

Chat is relayed at once and then stored; the stored ``event`` that follows at the
receiver is timed too, apart ("chat stored"), and kept out of the relay latencies.

The parent talks to a worker over a ``multiprocessing`` pipe:
worker -> ``("ready", info)``; then, per round, parent -> ``("go", seconds)`` and
worker -> ``("result", stats)``; finally parent -> ``"stop"``.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import random
import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiohttp import WSMsgType

# Message mix (cumulative thresholds on a uniform draw): 60% candidate, 30% offer or
# answer, 8% media_state, 2% chat (the one that writes to the database).
MIX = ((0.60, "candidate"), (0.90, "sdp"), (0.98, "media_state"), (1.00, "chat"))
JOIN_CONCURRENCY = 16
JOIN_TIMEOUT = 600.0
QUIET_SECONDS = 1.0
SETTLE_TIMEOUT = 300.0
DRAIN_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0

# A realistic browser offer (audio + video, no candidates), about 1.5 KB; the
# session id in the o= line is replaced by the message's sequence number.
SDP_TEMPLATE = "\r\n".join(
    [
        "v=0",
        "o=- {seq} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS 3f1c0f7e-0c51-4d2b-9a0e-5b8a7c2d9e41",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Xk2f",
        "a=ice-pwd:9p0c3mL4hKq2v8Rz1nT6wY5a",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 4F:1A:9C:22:7B:E0:53:11:8D:6F:A2:34:C9:0E:71:5B:"
        "2D:88:F3:46:19:AE:07:C5:60:3B:D4:92:1E:7A:B8:05",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=sendrecv",
        "a=msid:3f1c0f7e-0c51-4d2b-9a0e-5b8a7c2d9e41 a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=ssrc:1001 cname:q8mJx0lVbT3nR2Zc",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Xk2f",
        "a=ice-pwd:9p0c3mL4hKq2v8Rz1nT6wY5a",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 4F:1A:9C:22:7B:E0:53:11:8D:6F:A2:34:C9:0E:71:5B:"
        "2D:88:F3:46:19:AE:07:C5:60:3B:D4:92:1E:7A:B8:05",
        "a=setup:actpass",
        "a=mid:1",
        "a=extmap:3 urn:3gpp:video-orientation",
        "a=sendrecv",
        "a=msid:3f1c0f7e-0c51-4d2b-9a0e-5b8a7c2d9e41 0f9e8d7c-6b5a-4c3d-2e1f-001122334455",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtcp-fb:96 ccm fir",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=rtcp-fb:102 nack pli",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=ssrc-group:FID 2001 2002",
        "a=ssrc:2001 cname:q8mJx0lVbT3nR2Zc",
        "a=ssrc:2002 cname:q8mJx0lVbT3nR2Zc",
        "",
    ]
)


def raise_fd_limit() -> None:
    """Allow as many open sockets as the hard limit permits."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(eq=False)
class Sock:
    """One client WebSocket of the benchmark."""

    ws: aiohttp.ClientWebSocketResponse
    peer_id: str  # the account id the partner addresses us by
    joined: asyncio.Future[dict[str, Any]]
    media_fifo: collections.deque[float] = field(default_factory=collections.deque)
    closed_early: bool = False


class Worker:
    """Joins its consultations, runs the load, collects the timings."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.kind: str = spec["kind"]
        self.pending: dict[int, tuple[float, Sock]] = {}
        self.pending_stored: dict[int, tuple[float, Sock]] = {}  # chat awaiting its event
        self.stored: list[float] = []
        self.latencies: list[float] = []
        self.by_kind: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.pushes = 0
        self.other = 0
        self.last_rx = time.perf_counter()
        self.sent = 0
        self.received = 0
        self.measuring = False
        self.pairs: list[tuple[Sock, Sock]] = []
        self.readers: list[asyncio.Task[None]] = []
        self.rng = random.Random(spec["seed"])  # noqa: S311 - a reproducible mix, not a secret
        self.seq = 0
        self.position = {key: i for i, key in enumerate(spec["keys"])}

    # -- receiving ----------------------------------------------------------------

    async def reader(self, sock: Sock) -> None:
        async for frame in sock.ws:
            now = time.perf_counter()
            self.last_rx = now
            if frame.type is not WSMsgType.TEXT:
                continue
            data: str = frame.data
            if "consultation.changed" in data[:40]:
                self.pushes += 1  # dashboard push: cheap to recognise, not timed
                continue
            self.on_message(sock, json.loads(data), now)
        sock.closed_early = True
        if not sock.joined.done():
            sock.joined.set_exception(ConnectionError(f"closed: {sock.ws.close_code}"))

    def on_message(self, sock: Sock, msg: dict[str, Any], now: float) -> None:
        kind = msg.get("type")
        seq: int | None = None
        if kind == "candidate":
            text = msg["candidate"]
            seq = int(text[10 : text.index(" ")])
        elif kind in ("offer", "answer"):
            seq = int(msg["sdp"].split("\r\n", 2)[1].split(" ", 2)[1])
        elif kind == "media_state":
            if sock.media_fifo:
                self.record("media_state", now - sock.media_fifo.popleft())
            return
        elif kind == "chat":  # relayed as sent (teleconsult adds from and ref)
            seq = int(msg["text"].rsplit(" ", 1)[1])
        elif kind == "event":  # teleconsult: then the chat line is on the timeline
            event = msg["event"]
            if event["kind"] != "chat":
                return
            stored = self.pending_stored.get(int(event["data"]["text"].rsplit(" ", 1)[1]))
            if stored is not None and stored[1] is sock:  # the sender's copy is skipped
                del self.pending_stored[int(event["data"]["text"].rsplit(" ", 1)[1])]
                self.stored.append((now - stored[0]) * 1000.0)
            return
        elif kind == "joined":
            if not sock.joined.done():
                sock.joined.set_result(msg)
            return
        elif kind == "error":
            self.errors[str(msg.get("code"))] += 1
            if not sock.joined.done():
                sock.joined.set_exception(RuntimeError(f"join refused: {msg.get('code')}"))
            return
        else:
            self.other += 1
            return
        entry = self.pending.get(seq)
        if entry is not None and entry[1] is sock:
            del self.pending[seq]
            self.record("sdp" if kind in ("offer", "answer") else str(kind), now - entry[0])

    def record(self, kind: str, seconds: float) -> None:
        self.received += 1
        self.latencies.append(seconds * 1000.0)
        self.by_kind[kind].append(seconds * 1000.0)

    # -- joining ------------------------------------------------------------------

    async def open(
        self, session: aiohttp.ClientSession, side: dict[str, Any], key: str, server: int = 0
    ) -> Sock:
        if self.kind == "teleconsult":
            # Several server processes: each has its own port, and so its own origin.
            url = self.spec.get("ws_urls", [self.spec["ws_url"]])[server]
            origin = url.replace("ws://", "http://", 1).removesuffix("/ws")
            headers = {"Origin": origin, "Cookie": side["cookie"]}
        else:
            url = f"{self.spec['ws_url']}?pair={key}"
            headers = {"Origin": self.spec["origin"]}
        ws = await session.ws_connect(
            url, headers=headers, max_msg_size=1024 * 1024, timeout=aiohttp.ClientWSTimeout()
        )
        sock = Sock(ws=ws, peer_id=side["id"], joined=asyncio.get_running_loop().create_future())
        self.readers.append(asyncio.create_task(self.reader(sock)))
        return sock

    async def join(self, sock: Sock, key: str, tab: str) -> None:
        if self.kind == "teleconsult":
            await sock.ws.send_str(
                json.dumps({"type": "join", "consultation_id": key, "tab_id": tab})
            )
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await sock.joined

    async def join_pair(
        self, session: aiohttp.ClientSession, key: str, gate: asyncio.Semaphore
    ) -> None:
        clinic, cardio = self.spec["clinic"], self.spec["cardio"]
        # With several server processes the two sides of a call are on different
        # ones (the clinic's, which gets the room, and the next).
        servers = len(self.spec.get("ws_urls", ())) or 1
        first = (self.position[key] + self.spec["seed"]) % servers
        async with gate:
            a = await self.open(session, clinic, key, first)
            await self.join(a, key, f"bench-{key[:12]}-a")
            b = await self.open(session, cardio, key, (first + 1) % servers)
            await self.join(b, key, f"bench-{key[:12]}-b")
        self.pairs.append((a, b))

    async def settle(self) -> None:
        """Wait until nothing has arrived for a while (the joins' pushes are done)."""
        deadline = time.perf_counter() + SETTLE_TIMEOUT
        while time.perf_counter() < deadline:
            if time.perf_counter() - self.last_rx >= QUIET_SECONDS:
                return
            await asyncio.sleep(0.1)

    # -- load ---------------------------------------------------------------------

    def build(self, rng: random.Random, seq: int, sender: Sock, receiver: Sock) -> str | None:
        draw = rng.random()
        kind = next(name for limit, name in MIX if draw < limit)
        to = receiver.peer_id
        if kind == "candidate":
            port = 50000 + seq % 10000
            msg: dict[str, Any] = {
                "type": "candidate",
                "to": to,
                "candidate": f"candidate:{seq} 1 udp 2122260223 127.0.0.1 {port} typ host",
                "sdp_mid": "0",
                "sdp_mline_index": 0,
            }
        elif kind == "sdp":
            msg = {
                "type": "offer" if rng.random() < 0.5 else "answer",
                "to": to,
                "sdp": SDP_TEMPLATE.format(seq=seq),
            }
        elif kind == "media_state":
            msg = {"type": "media_state", "audio": rng.random() < 0.5, "video": True}
            receiver.media_fifo.append(time.perf_counter())
            return json.dumps(msg)
        else:
            msg = {"type": "chat", "text": f"bench {seq}"}
            if self.kind == "teleconsult":
                self.pending_stored[seq] = (time.perf_counter(), receiver)
        self.pending[seq] = (time.perf_counter(), receiver)
        return json.dumps(msg)

    async def load(self, rate: float, seconds: float) -> float:
        """Send at ``rate`` msg/s for ``seconds``, by absolute deadlines; returns the duration."""
        rng = self.rng
        interval = 1.0 / rate
        t0 = time.perf_counter()
        end = t0 + seconds
        k = 0
        while True:
            deadline = t0 + k * interval
            if deadline >= end:
                break
            delay = deadline - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif k % 8 == 0:
                await asyncio.sleep(0)  # behind schedule: still let the readers run
            a, b = self.pairs[k % len(self.pairs)]
            sender, receiver = (a, b) if rng.random() < 0.5 else (b, a)
            self.seq += 1
            seq = self.seq
            if sender.closed_early or receiver.closed_early:
                self.errors["socket_closed"] += 1
            else:
                # The timestamp is taken in build(), just before the frame is written.
                frame = self.build(rng, seq, sender, receiver)
                if frame is not None:
                    await sender.ws.send_str(frame)
                    self.sent += 1
            k += 1
        return time.perf_counter() - t0

    async def drain(self) -> None:
        deadline = time.perf_counter() + DRAIN_TIMEOUT
        while time.perf_counter() < deadline:
            if (
                not self.pending
                and not self.pending_stored
                and not any(a.media_fifo or b.media_fifo for a, b in self.pairs)
            ):
                return
            await asyncio.sleep(0.05)

    async def round(self, seconds: float) -> dict[str, Any]:
        """One load window and its drain; the numbers of this window only."""
        self.errors.clear()
        self.latencies, self.by_kind = [], collections.defaultdict(list)
        self.stored = []
        self.sent = self.received = 0
        pushes_before = self.pushes
        duration = await self.load(self.spec["rate"], seconds)
        await self.drain()
        held = sum(
            (not a.closed_early and not a.ws.closed) + (not b.closed_early and not b.ws.closed)
            for a, b in self.pairs
        )
        lost = len(self.pending) + sum(len(a.media_fifo) + len(b.media_fifo) for a, b in self.pairs)
        not_stored = len(self.pending_stored)
        self.pending.clear()
        self.pending_stored.clear()
        for a, b in self.pairs:
            a.media_fifo.clear()
            b.media_fifo.clear()
        return {
            "sent": self.sent,
            "received": self.received,
            "lost": lost,
            "duration": duration,
            "latencies": self.latencies,
            "by_kind": dict(self.by_kind),
            "stored": self.stored,
            "not_stored": not_stored,
            "errors": dict(self.errors),
            "held": held,
            "pushes_during_load": self.pushes - pushes_before,
        }

    # -- the whole run ------------------------------------------------------------

    async def run(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            t0 = time.perf_counter()
            gate = asyncio.Semaphore(JOIN_CONCURRENCY)
            async with asyncio.timeout(JOIN_TIMEOUT):
                await asyncio.gather(*(self.join_pair(session, k, gate) for k in self.spec["keys"]))
            join_seconds = time.perf_counter() - t0
            await self.settle()
            joined = sum(2 for a, b in self.pairs if not (a.closed_early or b.closed_early))
            # The sockets are open: keep them out of this process's garbage
            # collections, whose full passes over 5,000 sockets stopped a worker for
            # up to 1.7 s mid-window (timed into both servers' latencies alike).
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, *gc.get_threshold()[1:])
            conn.send(
                (
                    "ready",
                    {
                        "sockets": joined,
                        "join_seconds": join_seconds,
                        "settle_seconds": time.perf_counter() - t0 - join_seconds,
                        "pushes": self.pushes,
                    },
                )
            )
            # Rounds of load until told to stop: the parent interleaves the rounds of
            # the servers it compares, so a noisy neighbour hits both alike.
            while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
                conn.send(("result", await self.round(float(command[1]))))
            for a, b in self.pairs:
                await a.ws.close()
                await b.ws.close()
            for task in self.readers:
                task.cancel()
            await asyncio.gather(*self.readers, return_exceptions=True)


def worker_main(conn: Connection, spec: dict[str, Any]) -> None:
    """Entry point of a worker process."""
    raise_fd_limit()
    try:
        asyncio.run(Worker(spec).run(conn))
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        conn.close()
