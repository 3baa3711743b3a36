"""Replay benchmark: from the end of a call to a playable recording, and to the
first frame on the replay page.

    python tests/bench/replay.py [--seconds S] [--runs N] [--loads L] [--long-minutes M]
                                 [--database sqlite|postgres]

A real server (``teleconsult serve``) records one participant's leg (an aiortc
sender process with VP8 + Opus, see tests/media/sender.py) for S seconds; the
call is ended over the WebSocket and the clock runs until the recording can be
played: listed by the replay API as finished and answering a Range request with
the start of a WebM file.

Baselines in the same run: for "call end to playable", a bare stream-copy remux
of the same file (what finalizing must do at least); for "first frame", a bare
page with one <video> of the same file served by a plain aiohttp static route.
The first-frame time is taken in Chromium with requestVideoFrameCallback, from
the navigation's start, over L loads of each page, alternately, each over the
previous load of the same page (see ``first_frames``). Below the table, where
the replay page's time went (Resource Timing of each request: asked, first
byte, done; and when its events came), beside the bare page's, and the
server's own time for the page and its media requests (their Server-Timing);
``--trace FILE`` writes a Chromium trace of the last replay page load (open it
in Perfetto or chrome://tracing; each task's CPU time, ``tdur``, beside its wall
time tells work from waiting for a core).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.pgcluster import Cluster as PgCluster  # noqa: E402 - after the path is set
from tests.pgcluster import Databases  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.serverproc import server_env  # noqa: E402

SENDER = ROOT / "tests" / "media" / "sender.py"
FAST_SENDER = ROOT / "tests" / "bench" / "_replay_sender.py"
# The long call's media is sent this many times faster than real time: what one
# recorder keeps up with on the loaded 2-core test machine (at 30x it lost three
# video frames in four; the bench prints how many frames the file kept).
FAST_SPEED = 8.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

# Added to every page before its own scripts: the first video frame presented
# (requestVideoFrameCallback on each <video> as soon as it is in the document, so
# a frame shown before any script of the page ran is caught too) and, on the
# replay page, when the first player got its watermark (the picture shows only
# under it: the one drawn with the page, svg.wm-overlay, or the script's canvas).
# Times are milliseconds from the navigation's start.
FIRST_FRAME_PROBE = """(() => {
  window.__frame = null;
  window.__overlay = null;
  window.__loaded = null;
  const seen = new WeakSet();
  const watch = () => {
    for (const video of document.querySelectorAll("video")) {
      if (seen.has(video)) continue;
      seen.add(video);
      // When the frame went to the compositor (not when this callback ran: a busy
      // main thread would delay that on either page).
      const done = (now, meta) => {
        if (window.__frame === null) window.__frame = (meta && meta.presentationTime) || now;
      };
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(done);
      else video.addEventListener("loadeddata", done, { once: true });
      video.addEventListener("loadeddata", () => {
        if (window.__loaded === null) window.__loaded = performance.now();
      }, { once: true });
    }
    if (window.__overlay === null && document.querySelector("figure.player > .wm-overlay")) {
      window.__overlay = performance.now();
    }
  };
  new MutationObserver(watch).observe(document, { childList: true, subtree: true });
})();"""

# The replay page: the first picture a person sees (a frame, under its watermark).
REPLAY_SHOWN = """() => window.__frame !== null && window.__overlay !== null
  ? Math.max(window.__frame, window.__overlay) : null"""
BARE_SHOWN = "() => window.__frame"

# Where the replay page's time goes (Resource Timing, ms from the navigation's
# start): for the document and each request it made before the first picture,
# when it was asked for, when the first byte came (the server's wait) and when it
# ended. Media requests appear once per Range request the player made.
BREAKDOWN = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const rows = [["document", nav.requestStart, nav.responseStart, nav.responseEnd]];
  for (const e of performance.getEntriesByType("resource")) {
    const name = e.initiatorType + " " + new URL(e.name).pathname.split("/").pop();
    rows.push([name, e.requestStart || e.startTime, e.responseStart, e.responseEnd]);
  }
  const at = (name, t) => { if (t !== null && t !== undefined) rows.push([name, t, t, t]); };
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  if (paint) at("first contentful paint", paint.startTime);
  at("DOMContentLoaded", nav.domContentLoadedEventStart);
  at("video loadeddata", window.__loaded);
  at("watermark over the video", window.__overlay);
  at("first frame presented", window.__frame);
  return rows;
}"""

# The server's own time for the replay page's requests (its Server-Timing
# header: the audited open and the rendering of the page; the access check of
# each media request), beside the first byte's wait in the breakdown: what is
# left is queueing (the session's lookup, the event loop, the machine's load).
SERVER_TIMING = """() => {
  const out = [];
  const nav = performance.getEntriesByType("navigation")[0];
  for (const s of nav.serverTiming || []) out.push(["document " + s.name, s.duration]);
  for (const e of performance.getEntriesByType("resource")) {
    const name = e.initiatorType + " " + new URL(e.name).pathname.split("/").pop();
    for (const s of e.serverTiming || []) out.push([name + " " + s.name, s.duration]);
  }
  return out;
}"""

# What --trace records of each page: the main thread's work, the loading and the player.
TRACE_CATEGORIES = ["devtools.timeline", "blink", "loading", "media"]

# From a click on Play until the playing video's clock has moved (the picture
# of the first moment is already shown: see REPLAY_SHOWN).
PLAY_TO_MOVING = """() => new Promise((resolve) => {
  const button = document.querySelector("#play");
  button.addEventListener("click", () => {
    const clicked = performance.now();
    const videos = [...document.querySelectorAll("#players video")];
    const from = videos.map((v) => v.currentTime);
    const check = () => {
      if (videos.some((v, i) => !v.paused && v.currentTime > from[i])) {
        resolve(performance.now() - clicked);
      } else requestAnimationFrame(check);
    };
    check();
  }, { once: true });
  button.click();
})"""


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base, self.http, self.csrf = base, http, ""

    async def login(self, username: str) -> None:
        async with self.http.post(
            self.base + "/api/session", json={"username": username, "password": "demo1234"}
        ) as resp:
            resp.raise_for_status()
            self.csrf = (await resp.json())["csrf_token"]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
            method, self.base + path, json=body, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()


async def wait_health(base: str) -> None:
    async with asyncio.timeout(60), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(base + "/api/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


async def settled(folder: Path, quiet: float = 1.0) -> None:
    """Until the files under ``folder`` stop growing for ``quiet`` seconds (the
    recorder has written what the fast sender sent; whatever its format)."""

    def total() -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    last, since = -1, time.perf_counter()
    while True:
        size = await asyncio.to_thread(total)
        if size != last:
            last, since = size, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            return
        await asyncio.sleep(0.1)


async def record_one(
    base: str, seconds: float, *, long_call: Path | None = None, data_dir: Path | None = None
) -> tuple[str, float, str]:
    """Record one leg of ``seconds``, end the call; return (consultation, end->playable, file).

    With ``long_call`` (the pre-encoded input), the leg is sent by the fast
    sender (``_replay_sender.py``): ``seconds`` of media, faster than real time;
    the call is ended once the recorder has written all of it (the files under
    ``data_dir`` stopped growing), so that the clock measures only the end.
    """
    jar = lambda: aiohttp.CookieJar(unsafe=True)  # noqa: E731
    async with (
        aiohttp.ClientSession(cookie_jar=jar()) as h1,
        aiohttp.ClientSession(cookie_jar=jar()) as h2,
        aiohttp.ClientSession(cookie_jar=jar()) as h3,
    ):
        clinic, cardio, review = Api(base, h1), Api(base, h2), Api(base, h3)
        await clinic.login("clinic1")
        await cardio.login("cardio1")
        await review.login("review1")
        patients = (await clinic.call("GET", "/api/patients"))["patients"]
        departments = (await clinic.call("GET", "/api/departments"))["departments"]
        c = (
            await clinic.call(
                "POST",
                "/api/consultations",
                {
                    "patient_id": next(p["id"] for p in patients if p["consent"]),
                    "department_id": next(
                        d["id"] for d in departments if d["code"] == "cardiology"
                    ),
                    "urgency": "routine",
                    "reason": "benchmark",
                    "question": "benchmark",
                },
            )
        )["consultation"]
        cid = c["id"]
        await cardio.call("POST", f"/api/consultations/{cid}/accept")
        ws = await h1.ws_connect(base + "/ws", headers={"Origin": base})
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        # Both sockets are read all the time: a socket that is not read answers
        # no ping, and the server drops it (and its member) within a minute.
        async def pump(socket: aiohttp.ClientWebSocketResponse, keep: bool) -> None:
            async for message in socket:
                if keep and message.type == aiohttp.WSMsgType.TEXT:
                    inbox.put_nowait(json.loads(message.data))

        async def recv(kind: str) -> dict[str, Any]:
            while True:
                msg = await inbox.get()
                if msg["type"] == kind:
                    return msg

        pumps = [asyncio.ensure_future(pump(ws, True))]

        await recv("hello")
        await ws.send_json({"type": "join", "consultation_id": cid, "tab_id": "bench"})
        await recv("joined")
        # The specialist joins too: with two people in it the consultation is live
        # (and only a live call can be ended).
        other = await h2.ws_connect(base + "/ws", headers={"Origin": base})
        pumps.append(asyncio.ensure_future(pump(other, False)))
        await other.send_json({"type": "join", "consultation_id": cid, "tab_id": "bench-2"})
        await recv("state")
        if long_call is not None:
            command = [
                str(FAST_SENDER),
                "--input",
                str(long_call),
                "--media-seconds",
                str(seconds),
                "--speed",
                str(FAST_SPEED),
            ]
        else:
            command = [
                str(SENDER),
                "--codec",
                "vp8",
                "--seconds",
                str(seconds + 30),
                "--size",
                "640x480",
                "--progress",
            ]
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert sender.stdin and sender.stdout
        try:
            offer = json.loads(await sender.stdout.readline())["offer"]
            await ws.send_json({"type": "rec_offer", "sdp": offer})
            answer = await recv("rec_answer")
            sender.stdin.write((json.dumps({"answer": answer["sdp"]}) + "\n").encode())
            await sender.stdin.drain()
            await sender.stdout.readline()  # connected
            if long_call is not None:
                while "done" not in json.loads(await sender.stdout.readline()):
                    pass
                assert data_dir is not None
                await settled(data_dir / "recordings" / cid)
            else:
                sent = 0.0
                while sent < seconds:
                    sent = json.loads(await sender.stdout.readline())["progress"]
            ended = time.perf_counter()
            await ws.send_json({"type": "end"})
            # Playable: listed as finished, and the file answers a Range request.
            while True:
                data = await review.call("GET", f"/api/consultations/{cid}/replay")
                if data["recordings"]:
                    url = base + data["recordings"][0]["url"]
                    async with h3.get(url, headers={"Range": "bytes=0-3"}) as resp:
                        head = await resp.read()
                        if resp.status == 206 and head == b"\x1a\x45\xdf\xa3":
                            playable = time.perf_counter() - ended
                            break
                await asyncio.sleep(0.01)
        finally:
            if sender.returncode is None:
                sender.kill()
                await sender.wait()
        await ws.close()
        await other.close()
        await asyncio.gather(*pumps, return_exceptions=True)
        return cid, playable, data["recordings"][0]["url"]


def av_open(path: Path) -> Any:
    """``av.open`` (imported late: only the measuring needs PyAV here)."""
    import av

    return av.open(str(path))


def bare_sha256(path: Path) -> float:
    """Seconds to hash ``path`` (what storing its SHA-256 costs at least)."""
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return time.perf_counter() - start


def bare_remux(path: Path) -> float:
    """Seconds for a plain stream-copy remux of ``path`` (the least finalizing can cost)."""
    import av

    out = path.with_name("bare-remux.webm")
    start = time.perf_counter()
    with av.open(str(path)) as src, av.open(str(out), "w", format="webm") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed


def numbered(rows: list[list[Any]]) -> Iterator[tuple[str, tuple[float, ...]]]:
    """Each row's name (the second of a name as "name #2", and so on) and its times."""
    seen: dict[str, int] = {}
    for name, *times in rows:
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name} #{seen[name]}"), tuple(times)


async def first_frames(
    base: str, cid: str, file: Path, loads: int, trace: Path | None = None
) -> tuple[
    list[float],
    list[float],
    list[float],
    dict[str, list[tuple[float, ...]]],
    dict[str, list[float]],
]:
    """First-frame times (ms from navigation start) on the replay page and on a
    bare ``<video>`` page of the same file, and Play -> next frame on the replay page.

    The replay page shows its first picture without being played (the playhead
    rests on the first recorded moment); the bare page autoplays. Either way the
    time is when the first frame is presented.

    Each page is loaded in a tab of its own, over the previous load of the same
    page, playing (a reviewer goes from one replay to the next in one tab): the
    navigation tears that page down, its players with it, on both sides alike.
    One load of each comes first and is not counted, so that no counted load
    follows the login or a new tab. (Until 2026-12-02 the bare page was loaded
    over ``about:blank`` while the replay page followed a playing replay page,
    so that the teardown of a page with players was counted on the replay side
    only: 8.6 ms in one trace, against 1.7 for ``about:blank``.)
    """
    from playwright.async_api import async_playwright

    bare = web.Application()
    bare.router.add_get(
        "/",
        lambda r: web.Response(
            text='<!doctype html><video id="v" src="/file.webm" autoplay muted></video>',
            content_type="text/html",
        ),
    )
    # No caching: the replay endpoint allows none either.
    bare.router.add_get(
        "/file.webm", lambda r: web.FileResponse(file, headers={"Cache-Control": "no-store"})
    )
    runner = web.AppRunner(bare)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    replay_ms, bare_ms, play_ms = [], [], []
    breakdown: dict[str, list[tuple[float, ...]]] = {}
    server: dict[str, list[float]] = {}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(base + "/login")
            await page.fill("#username", "review1")
            await page.fill("#password", "demo1234")
            await page.click("button[type=submit]")
            await page.wait_for_url("**/recordings")
            await context.add_init_script(FIRST_FRAME_PROBE)
            plain = await context.new_page()
            for load in range(loads + 1):
                counted = load > 0
                tracing = trace is not None and load == loads
                if tracing:
                    await browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
                # Each page in front while it is measured: a tab behind another
                # gets no animation frames and throttled timers.
                await page.bring_to_front()
                await page.goto(f"{base}/consultations/{cid}/replay")
                shown = await page.wait_for_function(REPLAY_SHOWN, polling=50)
                if tracing:
                    assert trace is not None
                    await asyncio.to_thread(trace.write_bytes, await browser.stop_tracing())
                if counted:
                    replay_ms.append(float(await shown.json_value()))
                    for key, times in numbered(await page.evaluate(BREAKDOWN)):
                        breakdown.setdefault(key, []).append(times)
                    for key, (duration,) in numbered(await page.evaluate(SERVER_TIMING)):
                        server.setdefault(key, []).append(float(duration))
                await page.locator('#replay[data-state="ready"]').wait_for()
                # Played: the next load tears down a playing page (the bare one
                # autoplays).
                moving = float(await page.evaluate(PLAY_TO_MOVING))
                if counted:
                    play_ms.append(moving)
                await plain.bring_to_front()
                if tracing:
                    await browser.start_tracing(page=plain, categories=TRACE_CATEGORIES)
                await plain.goto(f"http://127.0.0.1:{port}/")
                shown = await plain.wait_for_function(BARE_SHOWN, polling=50)
                if tracing:
                    assert trace is not None
                    bare_trace = trace.with_suffix(".bare" + trace.suffix)
                    await asyncio.to_thread(bare_trace.write_bytes, await browser.stop_tracing())
                if counted:
                    bare_ms.append(float(await shown.json_value()))
                    for name, *times in await plain.evaluate(BREAKDOWN):
                        breakdown.setdefault(f"bare page: {name}", []).append(tuple(times))
            await browser.close()
    finally:
        await runner.cleanup()
    return replay_ms, bare_ms, play_ms, breakdown, server


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Load the demo community and start the server under test (before any measuring)."""
    subprocess.run(
        [sys.executable, "-m", "web.cli", "demo"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def newest_file(folder: Path, key: bytes | None = None) -> Path:
    """The recording finished last under ``folder``, as plaintext (a sealed one is
    decrypted to a copy beside it with ``key``: the baselines read it directly)."""
    from records import sealed

    files = [*folder.rglob("*.webm"), *folder.rglob("*.mp4")]
    path = max(files, key=lambda p: p.stat().st_mtime)
    if not sealed.is_sealed(path):
        return path
    plain = folder.parent / f"plain-{path.name}"
    with sealed.open_plain(path, sealed.Keyring(keys=[key or b""])) as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return plain


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each recorded call")
    parser.add_argument("--runs", type=int, default=3, help="short calls recorded")
    parser.add_argument(
        "--loads",
        type=int,
        default=15,
        help="loads of the replay page and of the bare page, alternately (first frame)",
    )
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=60.0,
        help="length of the long recorded call (sent faster than real time; 0: none)",
    )
    parser.add_argument(
        "--encrypt",
        action="store_true",
        help="recordings sealed at rest (encryption_key set): sealed at the end, decrypted to play",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="write a Chromium trace (chrome://tracing, Perfetto) of the last replay page load "
        "(and of the bare page's beside it, FILE with .bare before its suffix)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the server's database: the embedded SQLite file, or a throwaway PostgreSQL "
        "cluster (tests/pgcluster.py, needs Debian's postgresql)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tc-replay-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"port": str(port), "recorder_addresses": "127.0.0.1"}
    key = os.urandom(32) if args.encrypt else None
    if key is not None:
        settings["encryption_key"] = base64.b64encode(key).decode()
    cluster: PgCluster | None = None
    server: subprocess.Popen[bytes] | None = None
    rows: list[tuple[str, list[float], str]] = []
    long_label = f"{args.long_minutes:.0f} min call"
    try:
        if args.database == "postgres":
            # On PostgreSQL the page's audited open is a statement per hop to
            # the driver (SQLite's one-hop open does not apply there).
            cluster = PgCluster()
            cluster.start()
            databases = Databases(cluster.url())
            settings["database_url"] = databases.url(databases.create())
        server = start_server(server_env(tmp, **settings))
        await wait_health(base)
        playable: list[float] = []
        remux: list[float] = []
        cid = ""
        for _ in range(args.runs):
            cid, seconds, _url = await record_one(base, args.seconds)
            playable.append(seconds)
            path = newest_file(tmp / "recordings", key)
            remux.append(bare_remux(path))
        rows += [
            (f"call end -> playable ({args.seconds:.0f} s call)", playable, "s"),
            ("bare stream-copy remux, same file", remux, "s"),
        ]
        if args.long_minutes > 0:
            sys.path.insert(0, str(ROOT / "tests" / "bench"))
            from recording import encode_input

            long_input = tmp / "long-input.webm"
            encode_input(long_input)
            cid, seconds, _url = await record_one(
                base, args.long_minutes * 60, long_call=long_input, data_dir=tmp
            )
            path = newest_file(tmp / "recordings", key)
            long_remux = bare_remux(path)
            long_hash = bare_sha256(path)
            kept = {"video": 0, "audio": 0}
            with av_open(path) as check:
                long_minutes = (check.duration or 0) / 60e6
                for packet in check.demux():
                    if packet.size and packet.stream.type in kept:
                        kept[packet.stream.type] += 1
            size_mb = path.stat().st_size / 1e6
            sent = {"video": args.long_minutes * 60 * 30, "audio": args.long_minutes * 60 * 50}
            rows += [
                (f"call end -> playable ({long_label})", [seconds], "s"),
                (f"bare stream-copy remux, {long_label}", [long_remux], "s"),
                (f"bare SHA-256, {long_label}", [long_hash], "s"),
            ]
        first = "first frame" + (f", {long_label}" if args.long_minutes > 0 else "")
        replay_ms, bare_ms, play_ms, breakdown, server_ms = await first_frames(
            base, cid, path, args.loads, args.trace
        )
        rows += [
            (f"replay page: {first}", replay_ms, "ms"),
            (f"bare <video>: {first}", bare_ms, "ms"),
            ("replay page: Play -> playing", play_ms, "ms"),
        ]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    print(f"database: {args.database}")
    width = max(len(f"{name} [{unit}]") for name, _, unit in rows) + 2
    print(f"{'measure':<{width}}{'median':>10}{'min':>10}{'max':>10}")
    for name, values, unit in rows:
        label = f"{name} [{unit}]"
        print(f"{label:<{width}}{med(values):>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
    print("replay page, where the time goes (median ms from the navigation's start):")
    print(f"  {'request':<34}{'asked':>8}{'1st byte':>10}{'done':>8}{'loads':>6}")
    for name, times in sorted(breakdown.items(), key=lambda kv: med(t[0] for t in kv[1])):
        asked, first_byte, done = (med(t[i] for t in times) for i in range(3))
        print(f"  {name:<34}{asked:>8.1f}{first_byte:>10.1f}{done:>8.1f}{len(times):>6}")
    if server_ms:
        spent = ", ".join(f"{name} {med(values):.1f}" for name, values in server_ms.items())
        print(f"replay page, the server's own time (median ms, Server-Timing): {spent}")
    ratio = med(playable) / med(remux)
    print(f"ratio playable/bare remux ({args.seconds:.0f} s call): {ratio:.1f}")
    if args.long_minutes > 0:
        print(
            f"long call: {long_minutes:.1f} min in the file, {size_mb:.0f} MB, "
            f"{kept['video'] / sent['video']:.1%} of the video frames and "
            f"{kept['audio'] / sent['audio']:.1%} of the audio frames sent; "
            f"playable {seconds:.2f} s after the call ended (target < 2 s), "
            f"{seconds / long_remux:.1f}x a bare remux of it"
        )
    print(f"ratio first frame replay/bare: {med(replay_ms) / med(bare_ms):.2f} (target <= 1.5)")
    print(
        f"replay: playable {med(playable):.2f} s after a {args.seconds:.0f} s call ended, "
        f"first frame {med(replay_ms):.0f} ms (bare video {med(bare_ms):.0f} ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
