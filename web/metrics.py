"""Observability: ``/metrics`` (Prometheus text format), ``/livez`` and ``/readyz``.

``/metrics`` reads the live state at each scrape (sockets, rooms, recording
legs and their frames, the database's write-lock waits, free space where
recordings are written) and keeps one histogram of HTTP latency by route
template. Each app has its own registry (no process-wide state), so two apps in
one test process do not mix their numbers.

Who may scrape: with ``metrics_token`` set, a request bearing it; without one,
only clients on this machine that did not come through a proxy (a Prometheus
on another host needs the token).

``/livez`` says the process answers (for a supervisor's restart decision);
``/readyz`` says whether it should get traffic: the database answers, the
recording directory is writable and has ``readiness_min_free_mb`` free.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from media.space import disk_space
from records import logcontext
from records.vocab import ErrorCode
from web.errors import api_error
from web.keys import CALLS, DB, RECORDING, SETTINGS, SOCKETS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets from a loopback API call (~1 ms) to a slow report PDF (seconds).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
READY_TIMEOUT = 2.0
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


class Metrics:
    """One app's registry: the HTTP histogram plus a collector of live state."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = Histogram(
            "teleconsult_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status class.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(LiveState(app))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


class LiveState(Collector):
    """Gauges and counters read from the app at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """Yield the current values (nothing for a part not started yet)."""
        app = self.app
        sockets = GaugeMetricFamily("teleconsult_sockets", "Open WebSockets (pages connected).")
        sockets.add_metric([], len(app[SOCKETS]))
        yield sockets
        if CALLS in app:
            rooms = GaugeMetricFamily("teleconsult_rooms", "Calls with at least one member.")
            rooms.add_metric([], len(app[CALLS].rooms))
            yield rooms
        if RECORDING in app:
            yield from _recording(app)
        if DB in app:
            yield from _lock_waits(app)


def _recording(app: web.Application) -> Iterator[Metric]:
    recorder = app[RECORDING].recorder
    legs = GaugeMetricFamily(
        "teleconsult_recording_legs",
        "Recording legs running, per media worker (in-process: the web process records).",
        labels=["worker"],
    )
    up = GaugeMetricFamily(
        "teleconsult_media_worker_up",
        "Whether a media worker is running and connected (1) or lost, being restarted (0).",
        labels=["worker", "pid"],
    )
    for load in recorder.loads():
        legs.add_metric([load.name], load.legs)
        up.add_metric([load.name, str(load.pid or "")], 1 if load.alive else 0)
    yield legs
    yield up
    labels = ["consultation_id", "participant_id", "part", "kind"]
    written = CounterMetricFamily(
        "teleconsult_leg_frames_written",
        "Encoded frames written to a running leg's file.",
        labels=labels,
    )
    lost = CounterMetricFamily(
        "teleconsult_leg_frames_lost",
        "Video frames a running leg could not write (they arrived after a gap, "
        "before the keyframe that makes them decodable).",
        labels=labels[:-1],
    )
    for key, counts in recorder.leg_counts().items():
        ids = [key.consultation_id, key.participant_id, str(key.part)]
        written.add_metric([*ids, "video"], counts.video_written)
        written.add_metric([*ids, "audio"], counts.audio_written)
        lost.add_metric(ids, counts.video_lost)
    yield written
    yield lost
    free = GaugeMetricFamily(
        "teleconsult_recording_disk_free_bytes",
        "Free space on the disk that holds the recordings.",
    )
    free.add_metric([], _free_bytes(recorder.directory))
    yield free


def _lock_waits(app: web.Application) -> Iterator[Metric]:
    waits = app[DB].lock_waits
    count = CounterMetricFamily(
        "teleconsult_db_write_lock_waits", "Writes that took SQLite's single-writer lock."
    )
    count.add_metric([], waits.count)
    yield count
    seconds = CounterMetricFamily(
        "teleconsult_db_write_lock_wait_seconds", "Time writes spent waiting for that lock."
    )
    seconds.add_metric([], waits.seconds)
    yield seconds
    longest = GaugeMetricFamily(
        "teleconsult_db_write_lock_wait_longest_seconds", "The longest single wait so far."
    )
    longest.add_metric([], waits.longest)
    yield longest


def _free_bytes(directory: Path) -> int:
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _route(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"  # not the raw path: a scanner must not create a series per URL
    return info.route.resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by route template; bind its consultation for the log lines."""
    started = time.perf_counter()
    status = 500
    try:
        with logcontext.bound(request.match_info.get("consultation_id")):
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].http.labels(
            request.method, _route(request), f"{status // 100}xx"
        ).observe(time.perf_counter() - started)


def _allowed(request: web.Request) -> bool:
    token = str(request.app[SETTINGS].metrics_token)
    if token:
        sent = request.headers.get("Authorization", "")
        return secrets.compare_digest(sent.encode(), f"Bearer {token}".encode())
    if any(h in request.headers for h in PROXY_HEADERS):
        # Through a reverse proxy on this machine every request comes from
        # loopback: only a direct local client counts as local.
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    if not _allowed(request):
        raise api_error(ErrorCode.FORBIDDEN, "metrics need the bearer token (metrics_token)")
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def livez(_request: web.Request) -> web.Response:
    """``GET /livez``: the process answers."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when every check passes, 503 with the failing ones named."""
    checks = {
        "database": await _check_database(request.app),
        "recordings": _check_recordings(request.app),
        "media_workers": _check_media_workers(request.app),
    }
    ready = all(check["ok"] for check in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def _check_database(app: web.Application) -> dict[str, Any]:
    if DB not in app:
        return {"ok": False, "error": "not started"}
    started = time.perf_counter()
    try:
        await asyncio.wait_for(app[DB].ping(), READY_TIMEOUT)
    except Exception as exc:  # any failure means: not ready, and say why
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _check_recordings(app: web.Application) -> dict[str, Any]:
    if RECORDING not in app:
        return {"ok": False, "error": "not started"}
    minimum = app[SETTINGS].readiness_min_free_mb * 1024 * 1024
    ok, problem, free = disk_space(app[RECORDING].recorder.directory, minimum)
    out: dict[str, Any] = {"ok": ok}
    if free is not None:
        out["free_mb"] = free // (1024 * 1024)
    if problem:
        out["error"] = problem
    return out


def _check_media_workers(app: web.Application) -> dict[str, Any]:
    # Ready while at least one worker records: a lost one is being restarted,
    # and the others take the new legs meanwhile.
    if RECORDING not in app:
        return {"ok": False, "error": "not started"}
    loads = app[RECORDING].recorder.loads()
    running = sum(1 for load in loads if load.alive)
    out: dict[str, Any] = {"ok": running > 0, "running": running, "of": len(loads)}
    if not running:
        out["error"] = "no media worker is running"
    return out


def setup(app: web.Application) -> None:
    """Register the registry and the three routes."""
    app[METRICS] = Metrics(app)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
