"""The ``teleconsult`` command: serve, demo, db upgrade, audit verify, recordings, keys,
admin, media-worker.

Logging is configured and the app is run here, and only here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from records import audit, sealed
from records.clock import SystemClock
from records.db import Database
from records.demo import DEMO_PASSWORD, DemoLogin, load_demo
from signaling.errors import SignalingError
from signaling.workflow.base import Context, NoPushes
from signaling.workflow.keys import KeyService
from signaling.workflow.retention import Retention
from web import cli_admin, cli_export, logs
from web.settings import ENV_PREFIX, Settings

log = logging.getLogger("teleconsult")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (plain HTTP is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_settings(settings: Settings) -> Settings:
    """Settings with a certificate: the configured one, or a self-signed one for a LAN trial.

    Browsers give camera and microphone only to secure contexts, so anything
    reachable beyond this machine must speak HTTPS.
    """
    if settings.tls or is_loopback(settings.host):
        return settings
    from web.tls import ensure_self_signed

    names = [settings.host] if settings.host not in ("0.0.0.0", "::") else []  # noqa: S104
    cert, key = ensure_self_signed(settings.data_dir, [*names, "localhost", "127.0.0.1"])
    log.warning("no certificate configured: using a self-signed one (%s)", cert)
    return dataclasses.replace(settings, tls_cert=cert, tls_key=key)


async def _load_demo(settings: Settings) -> list[DemoLogin]:
    db = settings.open_database()
    try:
        await db.upgrade()
        return await load_demo(db, hash_password=settings.passwords().hash, clock=SystemClock())
    finally:
        await db.close()


def _print_logins(logins: list[DemoLogin]) -> None:
    if not logins:
        print("demo data already present")
        return
    print(f"demo accounts (password: {DEMO_PASSWORD}):")
    for login in logins:
        note = f"  ({login.note})" if login.note else ""
        print(f"  {login.username:<14} {login.role:<14} {login.institution}{note}")


async def _upgrade(settings: Settings) -> None:
    db = settings.open_database()
    try:
        await db.upgrade()
    finally:
        await db.close()


async def _verify(settings: Settings) -> int:
    db = settings.open_database()
    try:
        result = await db.run_read(audit.verify)
    finally:
        await db.close()
    for problem in result.problems:
        print(f"BROKEN: {problem}")
    if result.ok:
        print(f"audit chain intact: {result.entries} entries")
        return 0
    print(f"audit chain broken: {len(result.problems)} problem(s) in {result.entries} entries")
    return 1


def _recordings(settings: Settings, db: Database) -> Retention:
    ctx = Context(db=db, clock=SystemClock(), notifier=NoPushes())
    return Retention(ctx, root=settings.data_dir / "recordings", keyring=settings.keyring())


async def _verify_recordings(settings: Settings) -> int:
    db = settings.open_database()
    try:
        await db.upgrade()
        checks = await _recordings(settings, db).verify()
    finally:
        await db.close()
    bad = [c for c in checks if not c.ok]
    for check in bad:
        print(f"MISMATCH: recording {check.recording.id} ({check.recording.path}): {check.problem}")
    print(f"{len(checks) - len(bad)} of {len(checks)} recordings match their SHA-256")
    return 1 if bad else 0


async def _purge_recordings(settings: Settings, ids: list[str] | None) -> int:
    db = settings.open_database()
    try:
        await db.upgrade()
        purged = await _recordings(settings, db).purge(ids)
    except SignalingError as exc:
        print(f"refused: {exc.message}")
        return 1
    finally:
        await db.close()
    for rec in purged:
        print(f"purged {rec.id} ({rec.path}), kept until {rec.retain_until:%Y-%m-%d}")
    print(f"{len(purged)} recording(s) purged")
    return 0


async def _rotate_keys(settings: Settings) -> int:
    keyring = settings.keyring()
    if keyring is None:
        print("encryption is off: set encryption_key or encryption_key_file first")
        return 1
    db = settings.open_database()
    try:
        await db.upgrade()
        ctx = Context(db=db, clock=SystemClock(), notifier=NoPushes())
        report = await KeyService(
            ctx,
            keyring=keyring,
            files_root=settings.data_dir / "files",
            recordings_root=settings.data_dir / "recordings",
        ).rotate()
    finally:
        await db.close()
    for name, problem in sorted(report.failed.items()):
        print(f"FAILED: {name}: {problem}")
    print(
        f"key {report.key_id} ({keyring.cipher} for new files): "
        f"{len(report.rewrapped)} re-wrapped, {len(report.sealed)} encrypted, "
        f"{report.current} already current, {len(report.failed)} failed"
    )
    print(f"{report.secrets} second-factor key(s) sealed anew")
    if report.failed:
        print("keep every old key configured and run this again once fixed")
        return 1
    if len(keyring.keys) > 1:
        print("every file is under the current key: the older keys may now be removed")
    return 0


# Young-generation threshold of the cyclic garbage collector (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


async def tune_gc(_app: web.Application) -> None:
    """Keep the cyclic garbage collector's full collections short and rare.

    A full (generation 2) collection stops the event loop for as long as it takes
    to walk every tracked object. Traced in the signaling benchmark (2,000 sockets
    over 2 processes): every event-loop stall over 100 ms was one, 200-280 ms for
    about 250,000 objects, and they grow with the sockets held (the multi-second
    tail at 10,000). Two things shorten and thin them out:

    - ``gc.freeze()`` once started: what exists then (modules, the schema,
      templates, the app) lives as long as the process and is never walked again.
    - A higher young threshold: with CPython's 700, a busy relay collects the young
      generation every few milliseconds, promoting messages still in flight to the
      old generation, whose growth triggers the full collections.
    """
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    # (Not lower: a process that records has raised it further, ``leg_host``.)
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), older, oldest)


def serve(settings: Settings, *, demo: bool) -> None:
    """Run the server until interrupted."""
    settings = tls_settings(settings)
    if demo:
        _print_logins(asyncio.run(_load_demo(settings)))
    scheme = "https" if settings.tls else "http"
    shown = "localhost" if settings.host in ("127.0.0.1", "::1") else settings.host
    print(f"teleconsult is running: open {scheme}://{shown}:{settings.port}/", flush=True)
    from web.tls import ssl_context

    ctx = (
        ssl_context(settings.tls_cert, settings.tls_key)
        if settings.tls_cert and (settings.tls_key)
        else None
    )
    from web.app import create_app

    app = create_app(settings)
    app.on_startup.append(tune_gc)  # after the cleanup_ctx resources are open
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=ctx,
        print=None,
        access_log=None,
    )


def run_media_worker(settings: Settings, listen: str) -> int:
    """Run one media worker for web processes on other machines (until its controller goes)."""
    host = listen.rpartition(":")[0].strip("[]")
    if not listen.startswith("unix:") and not is_loopback(host) and not settings.media_worker_token:
        print("refused: a media worker reachable from other machines needs media_worker_token")
        return 2
    from media import worker as media_worker
    from web.app import start_bitrate

    config = media_worker.WorkerConfig(
        directory=settings.data_dir / "recordings",
        listen=listen,
        stun_urls=settings.stun_urls,
        host_addresses=settings.recorder_addresses,
        start_bitrate=start_bitrate(settings),
        video_fec=settings.video_fec,
        relay_hold_max_ms=settings.relay_hold_max_ms,
        token=str(settings.media_worker_token),
    )
    return media_worker.exit_after(media_worker.run(config, announce=True))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``teleconsult`` command.

    What only some commands need (the app, the deployment checks, the media worker,
    TLS) is imported by those commands: every server and every command line (and
    each test that starts one) pays for this module's imports.
    """
    parser = argparse.ArgumentParser(prog="teleconsult", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the server")
    p_serve.add_argument("--demo", action="store_true", help="load demo data first")
    p_serve.add_argument("--host", help="address to listen on (setting: host)")
    p_serve.add_argument("--port", type=int, help="port to listen on (setting: port)")
    sub.add_parser("demo", help="load demo data (once) and print the demo logins")
    p_db = sub.add_parser("db", help="database administration")
    p_db.add_argument("action", choices=["upgrade"])
    p_audit = sub.add_parser("audit", help="audit log administration")
    p_audit.add_argument("action", choices=["verify"])
    p_rec = sub.add_parser("recordings", help="recording files: verify hashes, purge")
    p_rec.add_argument("action", choices=["verify", "purge"])
    p_rec.add_argument(
        "--id",
        action="append",
        dest="ids",
        help="purge only this recording (repeatable); refused if its retention has not passed",
    )
    p_check = sub.add_parser(
        "check", help="verify this deployment (database, disks, TURN, certificate, clock...)"
    )
    p_check.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p_keys = sub.add_parser("keys", help="encryption at rest: new key, rotation")
    p_keys.add_argument(
        "action",
        choices=["generate", "rotate"],
        help="generate: print a new random key; rotate: bring every file under the current key",
    )
    p_worker = sub.add_parser(
        "media-worker",
        help="run a recording worker that web processes on other machines use "
        "(media_worker_addresses); it exits when its web process goes",
    )
    p_worker.add_argument(
        "--listen", default="127.0.0.1:8470", help="host:port or unix:/path (default %(default)s)"
    )
    cli_export.add_parser(sub)
    cli_admin.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "keys" and args.action == "generate":
        print(sealed.new_key())
        return 0

    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    demo_without_phone = (
        args.command == "serve" and args.demo and ENV_PREFIX + "TOTP_ROLES" not in os.environ
    )
    if demo_without_phone:
        # The demo is tried on one PC without anyone's phone: no second factor
        # unless TELECONSULT_TOTP_ROLES asks for one (README, "Second factor").
        overrides["totp_roles"] = ()
    settings = Settings.from_env(**overrides)
    logs.configure(settings.log_format)
    if demo_without_phone:
        print(
            "demo: the second factor (TOTP) is off; set TELECONSULT_TOTP_ROLES="
            "clinic_doctor,specialist to try it"
        )

    if args.command == "serve":
        serve(settings, demo=args.demo)
        return 0
    if args.command == "demo":
        _print_logins(asyncio.run(_load_demo(settings)))
        return 0
    if args.command == "db":
        asyncio.run(_upgrade(settings))
        print("database schema is up to date")
        return 0
    if args.command == "keys":
        return asyncio.run(_rotate_keys(settings))
    if args.command == "check":
        from web import check as deployment

        checks = asyncio.run(deployment.run_checks(settings))
        if args.json:
            print(json.dumps([dataclasses.asdict(c) for c in checks], ensure_ascii=False, indent=1))
        else:
            print(deployment.render(checks))
        return deployment.exit_code(checks)
    if args.command == "media-worker":
        return run_media_worker(settings, args.listen)
    if args.command == "export":
        return cli_export.run(args, settings)
    if args.command == "admin":
        return cli_admin.run(settings, args)
    if args.command == "recordings":
        if args.action == "verify":
            return asyncio.run(_verify_recordings(settings))
        return asyncio.run(_purge_recordings(settings, args.ids))
    return asyncio.run(_verify(settings))


if __name__ == "__main__":
    sys.exit(main())
