"""Replay benchmark: from the end of a call to a playable recording, and to the
first frame on the replay page.

    python tests/bench/replay.py [--seconds S] [--runs N]

A real server (``teleconsult serve``) records one participant's leg (an aiortc
sender process with VP8 + Opus, see tests/media/sender.py) for S seconds; the
call is ended over the WebSocket and the clock runs until the recording can be
played: listed by the replay API as finished and answering a Range request with
the start of a WebM file.

Baselines in the same run: for "call end to playable", a bare stream-copy remux
of the same file (what finalizing must do at least); for "first frame", a bare
page with one <video> of the same file served by a plain aiohttp static route.
The first-frame time is taken in Chromium with requestVideoFrameCallback, from
the navigation's start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.serverproc import free_port, server_env  # noqa: E402 - after the path is set

SENDER = ROOT / "tests" / "media" / "sender.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

FIRST_FRAME = """async (sel) => {
  const video = document.querySelector(sel);
  await new Promise((resolve) => {
    const done = () => resolve();
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(done);
    else video.addEventListener("loadeddata", done, { once: true });
  });
  return performance.now();
}"""


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


async def record_one(base: str, seconds: float) -> tuple[str, float, str]:
    """Record one leg of ``seconds``, end the call; return (consultation, end->playable, file)."""
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

        async def recv(kind: str) -> dict[str, Any]:
            while True:
                msg = json.loads((await ws.receive()).data)
                if msg["type"] == kind:
                    return msg

        await recv("hello")
        await ws.send_json({"type": "join", "consultation_id": cid, "tab_id": "bench"})
        await recv("joined")
        # The specialist joins too: with two people in it the consultation is live
        # (and only a live call can be ended).
        other = await h2.ws_connect(base + "/ws", headers={"Origin": base})
        await other.send_json({"type": "join", "consultation_id": cid, "tab_id": "bench-2"})
        await recv("state")
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SENDER),
            "--codec",
            "vp8",
            "--seconds",
            str(seconds + 30),
            "--size",
            "640x480",
            "--progress",
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
        return cid, playable, data["recordings"][0]["url"]


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


async def first_frames(
    base: str, cid: str, file: Path, runs: int
) -> tuple[list[float], list[float]]:
    """First-frame times (ms) on the replay page and on a bare <video> page."""
    from playwright.async_api import async_playwright

    bare = web.Application()
    bare.router.add_get(
        "/",
        lambda r: web.Response(
            text='<!doctype html><video id="v" src="/file.webm" autoplay muted></video>',
            content_type="text/html",
        ),
    )
    bare.router.add_get("/file.webm", lambda r: web.FileResponse(file))
    runner = web.AppRunner(bare)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    replay_ms, bare_ms = [], []
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
            for _ in range(runs):
                await page.goto(f"{base}/consultations/{cid}/replay")
                await page.locator('#replay[data-state="ready"]').wait_for()
                await page.click("#play")
                replay_ms.append(await page.evaluate(FIRST_FRAME, "#players video"))
                plain = await context.new_page()
                await plain.goto(f"http://127.0.0.1:{port}/")
                bare_ms.append(await plain.evaluate(FIRST_FRAME, "#v"))
                await plain.close()
            await browser.close()
    finally:
        await runner.cleanup()
    return replay_ms, bare_ms


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each recorded call")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tc-replay-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp, port=str(port), recorder_addresses="127.0.0.1")
    server = start_server(env)
    try:
        await wait_health(base)
        playable: list[float] = []
        remux: list[float] = []
        cid = ""
        for _ in range(args.runs):
            cid, seconds, _url = await record_one(base, args.seconds)
            playable.append(seconds)
            files = sorted(
                tmp.joinpath("recordings").rglob("*.webm"), key=lambda p: p.stat().st_mtime
            )
            path = files[-1]
            remux.append(bare_remux(path))
        replay_ms, bare_ms = await first_frames(base, cid, path, args.runs)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    print(f"{'measure':<38}{'median':>10}{'min':>10}{'max':>10}")
    for name, values, unit in (
        (f"call end -> playable ({args.seconds:.0f} s call)", playable, "s"),
        ("bare stream-copy remux, same file", remux, "s"),
        ("replay page: first frame", replay_ms, "ms"),
        ("bare <video>: first frame", bare_ms, "ms"),
    ):
        label = f"{name} [{unit}]"
        print(f"{label:<38}{med(values):>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
    print(f"ratio playable/bare remux: {med(playable) / med(remux):.1f}")
    print(f"ratio first frame replay/bare: {med(replay_ms) / med(bare_ms):.2f}")
    print(
        f"replay: playable {med(playable):.2f} s after the call ended (target < 2 s), "
        f"first frame {med(replay_ms):.0f} ms (bare video {med(bare_ms):.0f} ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
