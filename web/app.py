"""The composition root: ``create_app(settings)`` wires every part of the server."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from media import speedups
from media.host import LegHost
from media.pool import WorkerPool
from media.probe import Prober
from media.recorder import Recorder
from records.clock import Clock, SystemClock
from records.files import FileStore
from records.limits import Limits
from records.passwords import Passwords
from records.scan import ClamdScanner
from records.sealed_store import SealingFileStore
from records.vocab import Urgency
from signaling.call.calls import Calls
from signaling.call.cluster import Cluster
from signaling.call.cluster_wire import Address
from signaling.call.hub import ConsultationPushes, Hub
from signaling.call.ice import IceConfig
from signaling.workflow.admin import AdminService
from signaling.workflow.auth import SESSION_TABLES, AuthService
from signaling.workflow.base import Context
from signaling.workflow.consultations import ConsultationService
from signaling.workflow.deadlines import Deadlines
from signaling.workflow.directory import DirectoryService
from signaling.workflow.documents import DocumentService
from signaling.workflow.matching import MatchingService
from signaling.workflow.opinion import OpinionService
from signaling.workflow.pacs import PacsService
from signaling.workflow.patients import PatientService
from signaling.workflow.precall import PrecallService
from signaling.workflow.recording import RecordingService
from signaling.workflow.replay import RecordingExports, ReplayService
from signaling.workflow.report import ReportService
from signaling.workflow.second_factor import SecondFactorService
from signaling.workflow.stats import StatsService
from signaling.workflow.summary import SummaryService
from signaling.workflow.supervision import SupervisionService
from web import (
    api,
    api_admin,
    api_documents,
    api_fhir,
    api_pacs,
    api_precall,
    api_recordings,
    api_report,
    api_second_factor,
    api_stats,
    api_supervision,
    metrics,
    pages_admin,
    pages_precall,
    pages_report,
    pages_second_factor,
    pages_stats,
    pages_supervision,
    ws,
)
from web.auth import auth_middleware
from web.dicomweb import DicomWebClient
from web.errors import error_middleware
from web.keys import (
    ADMIN,
    AUTH,
    CALLS,
    CLOCK,
    CLUSTER,
    CONSULTATIONS,
    DB,
    DIRECTORY,
    DOCUMENTS,
    EXPORTS,
    HUB,
    KEYRING,
    MATCHING,
    OPENAPI,
    OPINIONS,
    PACS,
    PATIENTS,
    PRECALL,
    RECORDING,
    REPLAY,
    REPORTS,
    SECOND_FACTOR,
    SETTINGS,
    SOCKETS,
    STATS,
    SUMMARY,
    SUPERVISION,
)
from web.openapi import Route, build_spec, read_only
from web.pages import setup_pages
from web.security import security_headers_middleware
from web.settings import Settings

log = logging.getLogger(__name__)

VERSION = "0.1.0"
MAX_BODY = 1024 * 1024
# How often open WebSockets are checked against their (revocable) sessions.
SESSION_SWEEP_SECONDS = 60.0
# An upload's temporary files not written for this long belong to no living
# request (a clinic's largest file on the slowest link takes minutes); swept hourly.
UPLOAD_IDLE_SECONDS = 6 * 3600.0
UPLOAD_SWEEP_SECONDS = 3600.0


def passwords_for(settings: Settings) -> Passwords:
    """The password hasher configured by settings."""
    return settings.passwords()


def supervision_key_path(settings: Settings) -> Path:
    """Where the Ed25519 key that signs supervision exports is kept (made on first use)."""
    return settings.data_dir / "signing" / "supervision-ed25519.pem"


def ice_config(settings: Settings) -> IceConfig:
    """What browsers are told about STUN/TURN, from settings."""
    return IceConfig(
        stun_urls=settings.stun_urls,
        turn_urls=settings.turn_urls,
        turn_secret=str(settings.turn_secret),
        turn_ttl_seconds=settings.turn_ttl_seconds,
        transport_policy=settings.ice_transport_policy,
        allowed_networks=settings.ice_allowed_networks,
    )


def open_cluster(settings: Settings, hub: Hub, pushes: ConsultationPushes) -> Cluster | None:
    """This process's part in several web processes sharing Redis (None: no
    ``redis_url``, everything stays in this process as it always did)."""
    if not settings.redis_url:
        return None
    # Imported here: a process without Redis (the default) never loads the client.
    from redis.asyncio import Redis

    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    return Cluster(
        redis,
        address=Address.of(str(settings.redis_url)),
        hub=hub,
        pushes=pushes,
        lease_seconds=settings.redis_lease_seconds,
    )


def all_routes() -> tuple[Route, ...]:
    """Every API route (one table per API module)."""
    return (
        api.ROUTES
        + api_documents.ROUTES
        + api_fhir.ROUTES
        + api_pacs.ROUTES
        + api_recordings.ROUTES
        + api_precall.ROUTES
        + api_report.ROUTES
        + api_supervision.ROUTES
        + api_stats.ROUTES
        + api_second_factor.ROUTES
        + api_admin.ROUTES
    )


@functools.cache
def api_spec() -> Mapping[str, Any]:
    """The OpenAPI document of ``all_routes()``: built once per process, never changed.

    Building it (a JSON schema per payload model) costs tens of milliseconds, and
    the test suite makes an app per test; every app of a process shares this one
    document, read-only all the way down (``openapi.read_only``) so that no
    handler can change another app's.
    """
    return read_only(build_spec(all_routes(), title="teleconsult API", version=VERSION))


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """Build the application; resources open on start-up and close on clean-up."""
    app = web.Application(
        middlewares=[
            metrics.metrics_middleware,
            security_headers_middleware(settings.tls),
            error_middleware,
            auth_middleware,
        ],
        client_max_size=MAX_BODY,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[HUB] = Hub()
    app[SOCKETS] = {}
    app[OPENAPI] = api_spec()
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(_housekeeping)
    app.on_shutdown.append(_close_sockets)
    for route in all_routes():
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get("/ws", ws.websocket)
    metrics.setup(app)
    setup_pages(app)
    pages_precall.setup(app)
    pages_report.setup(app)
    pages_supervision.setup(app)
    pages_stats.setup(app)
    pages_second_factor.setup(app)
    pages_admin.setup(app)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # One hasher for every service: each makes an argon2 hash at the configured
    # cost when built (the unknown user's dummy), 0.65 s apiece in production.
    passwords = passwords_for(settings)
    db = settings.open_database()
    await db.upgrade()
    app[DB] = db
    pushes = ConsultationPushes(app[HUB])
    cluster = open_cluster(settings, app[HUB], pushes)
    if cluster is not None:
        app[CLUSTER] = cluster
    ctx = Context(
        db=db,
        clock=app[CLOCK],
        # With Redis a change is pushed from every web process to its own sockets.
        notifier=cluster or pushes,
        deadlines=Deadlines(settings.deadline_rules()),
    )
    # Each request's session comes from memory while nothing was written to
    # the tables it depends on, here or (told through Redis) in another process.
    sessions_changed = db.watch(*SESSION_TABLES)
    if cluster is not None:
        sessions_changed.after_write.append(cluster.sessions_changed)
        cluster.on_sessions_changed = sessions_changed.moved
    app[AUTH] = AuthService(
        ctx,
        passwords=passwords,
        max_failures=settings.login_max_failures,
        lockout_seconds=settings.login_lockout_seconds,
        session_ttl_seconds=settings.session_ttl_seconds,
        second_factor_roles=frozenset(settings.totp_roles),
        sessions_changed=sessions_changed,
        cache_seconds=settings.session_cache_seconds,
    )
    keyring = settings.keyring()
    app[SECOND_FACTOR] = SecondFactorService(
        ctx,
        passwords=passwords,
        keyring=keyring,
        roles=frozenset(settings.totp_roles),
        reverify_window_seconds=settings.reverify_window_seconds,
        max_failures=settings.login_max_failures,
        lockout_seconds=settings.login_lockout_seconds,
    )
    # Deactivating an account or resetting its password hangs up its sockets
    # through the hub (the service's AccountSockets port).
    app[ADMIN] = AdminService(ctx, passwords=passwords, sockets=cluster or app[HUB])
    app[DIRECTORY] = DirectoryService(ctx)
    app[PATIENTS] = PatientService(ctx)
    app[CONSULTATIONS] = ConsultationService(ctx)
    app[MATCHING] = MatchingService(
        ctx,
        escalate_after={u: settings.escalate_after(u) for u in Urgency},
    )
    app[OPINIONS] = OpinionService(ctx)
    app[SUMMARY] = SummaryService(ctx)
    app[REPORTS] = ReportService(ctx, font=settings.report_font)
    app[SUPERVISION] = SupervisionService(
        ctx, key_path=supervision_key_path(settings), version=VERSION
    )
    app[STATS] = StatsService(ctx)
    if keyring is not None:
        app[KEYRING] = keyring
        log.info("encryption at rest: on (%s)", keyring.cipher)
    files = (
        SealingFileStore(
            settings.data_dir / "files", settings.data_dir / "incoming", keyring=keyring
        )
        if keyring is not None
        else FileStore(settings.data_dir / "files", settings.data_dir / "incoming")
    )
    # A process killed while receiving an upload left its file: removed at the
    # start when no other process may be receiving into the same directory,
    # else once it has not been written for a while (and hourly: _housekeeping).
    swept = await asyncio.to_thread(
        files.sweep, idle_seconds=None if cluster is None else UPLOAD_IDLE_SECONDS
    )
    if swept:
        log.warning("removed %d upload(s) left unfinished by an unclean stop", swept)
    recorder = leg_host(settings)
    if isinstance(recorder, WorkerPool):
        await recorder.open()
    app[RECORDING] = RecordingService(
        ctx,
        recorder=recorder,
        retention_days=settings.recording_retention_days,
        keyring=keyring,
        # A leg whose disk filled records again once /readyz would say the
        # recordings' disk is fine: the same threshold.
        resume_min_free_bytes=settings.readiness_min_free_mb * 1024 * 1024,
    )
    app[REPLAY] = ReplayService(ctx, root=recorder.directory)
    app[EXPORTS] = RecordingExports(
        ctx, root=recorder.directory, work_dir=settings.data_dir / "exports", keyring=keyring
    )
    app[DOCUMENTS] = DocumentService(
        ctx,
        files=files,
        max_upload_bytes=settings.max_upload_bytes,
        limits=Limits(
            max_pixels=settings.max_image_pixels,
            memory_bytes=settings.parser_memory_mb * 1024 * 1024,
        ),
        scanner=ClamdScanner(settings.clamav_socket) if settings.clamav_socket else None,
        keyring=keyring,
    )
    dicomweb = (
        DicomWebClient(
            settings.pacs_url,
            username=settings.pacs_username,
            password=str(settings.pacs_password),
            timeout=settings.pacs_timeout_seconds,
            max_bytes=settings.max_upload_bytes,
        )
        if settings.pacs_url
        else None
    )
    app[PACS] = PacsService(ctx, port=dicomweb, documents=app[DOCUMENTS])
    app[PRECALL] = PrecallService(
        ctx,
        prober=Prober(stun_urls=settings.stun_urls, host_addresses=settings.recorder_addresses),
    )
    # What a killed server left behind is repaired before anything new starts
    # (with several web processes: not the calls another living one holds).
    busy = await cluster.owners.rooms_held_elsewhere() if cluster is not None else set()
    recovered = await app[RECORDING].recover(only=lambda cid: cid not in busy)
    if recovered:
        log.warning("repaired %d recording(s) left by an unclean stop", len(recovered))
    app[CALLS] = Calls(
        workflow=app[CONSULTATIONS],
        directory=app[DIRECTORY],
        ice=ice_config(settings),
        grace_seconds=settings.call_grace_seconds,
        recording=app[RECORDING],
        recording_max_bitrate=settings.recording_max_bitrate,
        relay=settings.media_plane == "relay",
        relay_max_bitrate=settings.relay_max_bitrate,
        verifier=app[SECOND_FACTOR],
    )
    # A change that takes someone's place in a call (a reassignment) ends it.
    pushes.listen(app[CALLS].consultation_changed)
    if cluster is not None:
        # A call taken over from a dead process: its legs are repaired first.
        cluster.on_claim = app[RECORDING].recover_call
        cluster.on_session_ended = lambda digest: ws.close_session_digest(app, digest)
        await cluster.start(app[CALLS])
    yield
    if cluster is not None:
        await cluster.close()
    await app[CALLS].close()
    await app[PRECALL].prober.close()
    await app[RECORDING].close()
    if isinstance(recorder, WorkerPool):
        await recorder.close()
    await app[EXPORTS].close()
    if dicomweb is not None:
        await dicomweb.close()
    await db.close()


def start_bitrate(settings: Settings) -> int:
    """The rate a recorder's answer asks the browser to start its video at (not
    its own 300 kbit/s), capped by what the leg may carry."""
    return min(
        settings.start_bitrate,
        settings.relay_max_bitrate
        if settings.media_plane == "relay"
        else settings.recording_max_bitrate,
    )


def leg_host(settings: Settings) -> LegHost:
    """Where recording legs run: media worker processes, or (``media_workers = 0``
    and no remote workers) this process's own recorder."""
    options: dict[str, Any] = {
        "stun_urls": settings.stun_urls,
        "host_addresses": settings.recorder_addresses,
        "start_bitrate": start_bitrate(settings),
        "video_fec": settings.video_fec,
        "relay_hold_max_ms": settings.relay_hold_max_ms,
    }
    directory = settings.data_dir / "recordings"
    if settings.media_workers == 0 and not settings.media_worker_addresses:
        # This process records: its garbage collector runs less often
        # (process-wide, decided here where the process is put together).
        speedups.collect_less()
        return Recorder(directory, **options)
    return WorkerPool(
        directory,
        local=settings.media_workers,
        addresses=settings.media_worker_addresses,
        token=str(settings.media_worker_token),
        **options,
    )


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    async def every(seconds: float, job: Callable[[], Awaitable[Any]], name: str) -> None:
        while True:
            # Periodic timers, not waits for a condition: requests become overdue
            # and sessions lapse by the passing of time alone.
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("%s failed", name)

    settings = app[SETTINGS]
    tasks = [
        asyncio.create_task(
            every(settings.escalation_check_seconds, app[MATCHING].check_deadlines, "deadlines")
        ),
        asyncio.create_task(
            every(SESSION_SWEEP_SECONDS, lambda: ws.sweep_sessions(app), "session sweep")
        ),
        asyncio.create_task(
            every(
                UPLOAD_SWEEP_SECONDS,
                lambda: asyncio.to_thread(
                    app[DOCUMENTS].files.sweep, idle_seconds=UPLOAD_IDLE_SECONDS
                ),
                "upload sweep",
            )
        ),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _close_sockets(app: web.Application) -> None:
    await ws.close_sockets(app)
