"""``teleconsult check``: does this deployment work? Each part tried for real, each verdict said.

Every check returns one ``Check``: ``ok``, ``warn`` (works, but an operator
should look) or ``fail`` (something people will notice). The command exits 1 on
any failure, so a deployment script or a monitoring job can run it.

What is tried: the database (reachable, schema at head, the connection budget on
PostgreSQL, its clock against ours), the recording and document directories
(writable, free space), each TURN server (an allocation with the REST
credentials the browsers get), the certificate (readable, matches its key, not
expiring), ClamAV (answers PING), Redis when several web processes share it
(answers, and how many processes are on it), and the settings a public
deployment needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from aioice.turn import create_turn_endpoint
from aiortc.rtcicetransport import parse_stun_turn_uri
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from media.space import disk_space  # the recorder resumes on the same verdict
from records.db import alembic_config
from records.scan import ClamdScanner
from signaling.call.ice import turn_credentials
from signaling.call.owners import PREFIX
from web.settings import Settings

Verdict = Literal["ok", "warn", "fail"]
TIMEOUT = 5.0
# A certificate this close to its end is reported (Let's Encrypt renews at 30 days).
CERT_WARN = dt.timedelta(days=21)
# Tolerated difference between this machine's clock and the database server's:
# timelines, deadlines and signatures are only as right as the clocks.
CLOCK_WARN_SECONDS = 1.0
CLOCK_FAIL_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Check:
    """One verdict: what was checked, how it went, and what to do about it."""

    name: str
    verdict: Verdict
    detail: str


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order they are printed."""
    checks: list[Check] = []
    checks += await _database(settings)
    checks.append(_directory("recordings", settings.data_dir / "recordings", settings))
    checks.append(_directory("documents", settings.data_dir / "files", settings))
    checks += await _turn(settings)
    checks.append(_certificate(settings))
    checks.append(await _clamav(settings))
    checks.append(await _redis(settings))
    checks += _exposure(settings)
    checks.append(_ntp())
    checks.append(_workers(settings))
    return checks


def _workers(settings: Settings) -> Check:
    # What is configured; a running worker is not asked: it serves one web
    # process, and a check's connection would take it over (/readyz tells
    # whether the server's workers run).
    local = settings.media_workers
    remote = settings.media_worker_addresses
    if local == 0 and not remote:
        return Check("workers", "ok", "recording runs in the web process (media_workers = 0)")
    parts = [f"{local} media worker process(es) per web process"] if local else []
    if remote:
        parts.append("remote workers at " + ", ".join(remote))
    return Check("workers", "ok", "; ".join(parts) + " (GET /readyz tells whether they run)")


async def _database(settings: Settings) -> list[Check]:
    db = settings.open_database()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    def look(conn: sa.Connection) -> tuple[str | None, float | None, int | None]:
        current = MigrationContext.configure(conn).get_current_revision()
        if conn.dialect.name != "postgresql":
            return current, None, None
        server = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar()
        limit = conn.execute(sa.text("SHOW max_connections")).scalar()
        return current, float(server or 0), int(limit or 0)

    try:
        async with asyncio.timeout(TIMEOUT), db.read() as conn:
            asked = time.time()
            current, server_time, max_connections = await conn.run_sync(look)
            answered = time.time()
    except Exception as exc:  # what the driver says is the diagnosis
        return [Check("database", "fail", f"cannot connect: {type(exc).__name__}: {exc}"[:400])]
    finally:
        await db.close()
    out = []
    if current != head:
        out.append(
            Check(
                "database",
                "fail",
                f"schema at {current or 'nothing'}, this version needs {head}: "
                "run `teleconsult db upgrade`",
            )
        )
    else:
        kind = "SQLite" if db.is_sqlite else "PostgreSQL"
        out.append(Check("database", "ok", f"{kind}, schema at {head}"))
    if max_connections is not None:
        share = settings.database_pool_size + settings.database_max_overflow
        verdict: Verdict = "ok" if share * 2 <= max_connections else "warn"
        out.append(
            Check(
                "database connections",
                verdict,
                f"this process may hold {share} of the server's max_connections "
                f"{max_connections}; the sum over all processes must stay under it",
            )
        )
    if server_time is not None:
        skew = server_time - (asked + answered) / 2
        if abs(skew) > CLOCK_FAIL_SECONDS:
            clock: Verdict = "fail"
        elif abs(skew) > CLOCK_WARN_SECONDS:
            clock = "warn"
        else:
            clock = "ok"
        out.append(Check("clock", clock, f"database server's clock differs by {skew:+.2f} s"))
    return out


def _directory(name: str, directory: Path, settings: Settings) -> Check:
    minimum = settings.readiness_min_free_mb * 1024 * 1024
    ok, problem, free = disk_space(directory, minimum)
    free_text = f"{free // (1024 * 1024)} MB free" if free is not None else ""
    if ok:
        return Check(name, "ok", f"{directory} writable, {free_text}")
    if free is not None:
        problem += f" ({free_text}, readiness_min_free_mb is {settings.readiness_min_free_mb})"
    return Check(name, "fail", f"{directory}: {problem}")


async def _turn(settings: Settings) -> list[Check]:
    if not settings.turn_urls:
        return [
            Check(
                "turn",
                "warn",
                "no turn_urls: browsers behind UDP-blocking firewalls cannot connect",
            )
        ]
    return [await _allocate(settings, url) for url in settings.turn_urls]


async def _allocate(settings: Settings, url: str) -> Check:
    name = f"turn {url}"
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return Check(name, "fail", f"cannot parse: {exc}")
    username, password = turn_credentials(
        str(settings.turn_secret), "teleconsult-check", int(time.time()) + 300
    )
    secure = parsed["scheme"] == "turns"
    try:
        async with asyncio.timeout(TIMEOUT):
            transport, _ = await create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=(parsed["host"], parsed["port"]),
                username=username,
                password=password,
                ssl=secure or None,
                transport=parsed["transport"],
            )
    except TimeoutError:
        return Check(name, "fail", "no answer within 5 s (firewall? wrong port?)")
    except Exception as exc:  # what the server or the network said is the diagnosis
        text = str(exc) or type(exc).__name__
        hint = " (is turn_secret coturn's static-auth-secret?)" if "401" in text else ""
        return Check(name, "fail", f"allocation refused: {text}{hint}")
    relayed = transport.get_extra_info("sockname")
    transport.close()
    return Check(name, "ok", f"allocated a relay at {relayed[0]}:{relayed[1]}")


def _certificate(settings: Settings) -> Check:
    if settings.tls_cert is None or settings.tls_key is None:
        if settings.host in ("127.0.0.1", "localhost", "::1"):
            return Check("certificate", "ok", "plain HTTP on loopback (behind a proxy, or a trial)")
        return Check(
            "certificate",
            "warn",
            "no tls_cert: `serve` makes a self-signed one, which browsers warn about",
        )
    try:
        cert = x509.load_pem_x509_certificate(settings.tls_cert.read_bytes())
        key = serialization.load_pem_private_key(settings.tls_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        return Check("certificate", "fail", f"cannot read the certificate or key: {exc}")
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return Check("certificate", "fail", "tls_key is not the key of tls_cert")
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    until = cert.not_valid_after_utc.date().isoformat()
    if left <= dt.timedelta(0):
        return Check("certificate", "fail", f"expired on {until}")
    if left < CERT_WARN:
        return Check("certificate", "warn", f"expires on {until} ({left.days} days): renew it")
    return Check("certificate", "ok", f"valid until {until}")


async def _clamav(settings: Settings) -> Check:
    if settings.clamav_socket is None:
        return Check("clamav", "warn", "no clamav_socket: uploaded files are not scanned")
    scanner = ClamdScanner(settings.clamav_socket, timeout=TIMEOUT)
    answers = await asyncio.to_thread(_safe(scanner.ping))
    if answers:
        return Check("clamav", "ok", f"clamd answers at {settings.clamav_socket}")
    return Check("clamav", "fail", f"clamd does not answer at {settings.clamav_socket}")


async def _redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("redis", "ok", "no redis_url: one web process holds the calls")
    # The address without its password (the URL may carry one).
    where = urlsplit(str(settings.redis_url))
    shown = f"{where.hostname or where.path}:{where.port or 6379}"
    # Imported here: only a deployment with Redis pays for loading its client.
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(
        str(settings.redis_url),
        decode_responses=True,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
    )
    try:
        info = await client.info("server")
        nodes = [key async for key in client.scan_iter(match=PREFIX + "node:*", count=500)]
    except (RedisError, OSError) as exc:
        return Check("redis", "fail", f"Redis at {shown} does not answer: {type(exc).__name__}")
    finally:
        await client.aclose()
    return Check(
        "redis",
        "ok",
        f"Redis {info.get('redis_version', '?')} at {shown}; "
        f"{len(nodes)} web process(es) connected to it now",
    )


def _safe(ping: Callable[[], bool]) -> Callable[[], bool]:
    def run() -> bool:
        try:
            return ping()
        except OSError:
            return False

    return run


def _exposure(settings: Settings) -> list[Check]:
    out = []
    if settings.keyring() is None:
        out.append(Check("encryption", "warn", "encryption at rest is off (encryption_key_file)"))
    else:
        out.append(Check("encryption", "ok", f"at rest, {settings.encryption_cipher}"))
    if not settings.public_url:
        out.append(
            Check(
                "public_url",
                "warn",
                "not set: reports' verification links use the address of the request",
            )
        )
    return out


def _ntp() -> Check:
    timedatectl = shutil.which("timedatectl")
    if timedatectl is None:
        return Check(
            "ntp", "warn", "cannot tell whether the clock is synchronised (no timedatectl)"
        )
    try:
        out = subprocess.run(  # noqa: S603 - a fixed system command
            [timedatectl, "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("ntp", "warn", f"cannot ask timedatectl: {exc}")
    if out == "yes":
        return Check("ntp", "ok", "the clock is synchronised")
    if out == "no":
        return Check("ntp", "fail", "the clock is not synchronised (enable systemd-timesyncd)")
    return Check("ntp", "warn", "cannot tell whether the clock is synchronised")


def render(checks: list[Check]) -> str:
    """The table the command prints."""
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.verdict.upper():<5} {c.name:<{width}}  {c.detail}" for c in checks)


def exit_code(checks: list[Check]) -> int:
    """1 when anything failed."""
    return 1 if any(c.verdict == "fail" for c in checks) else 0
