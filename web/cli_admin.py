"""``teleconsult admin ...``: administration from the server's console.

The bootstrap of a fresh install (the first administrator, on an empty
database) and the same actions as the administration pages, for scripts. Every
action is audited like the pages' ones, with no acting account and the OS user
who ran the command (``cli_user``). Temporary passwords are printed once; each
must be changed at the first sign-in.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

from records import errors as records_errors
from records.clock import SystemClock
from records.vocab import AgreementKind, InstitutionKind, Role
from signaling.call.cluster_notices import tell_sessions_changed
from signaling.errors import SignalingError
from signaling.workflow.accounts import AccountFields, ImportResult
from signaling.workflow.admin import AdminService
from signaling.workflow.auth import SESSION_TABLES
from signaling.workflow.base import Context, NoPushes
from web.settings import Settings

T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``admin`` and its subcommands to the ``teleconsult`` parser."""
    p = sub.add_parser("admin", help="institutions, agreements, departments, accounts")
    cmds = p.add_subparsers(dest="admin_command", required=True)

    b = cmds.add_parser(
        "bootstrap", help="the first administrator of a fresh install (and their institution)"
    )
    b.add_argument("--username", required=True)
    b.add_argument("--name", required=True, help="the administrator's full name")
    b.add_argument("--institution", required=True, help="the institution's name")
    b.add_argument("--kind", choices=[k.value for k in InstitutionKind], required=True)
    b.add_argument("--region", required=True)

    i = cmds.add_parser("add-institution", help="add a clinic or hospital")
    i.add_argument("--name", required=True)
    i.add_argument("--kind", choices=[k.value for k in InstitutionKind], required=True)
    i.add_argument("--region", required=True)

    a = cmds.add_parser("add-agreement", help="let a clinic ask a specialist hospital")
    a.add_argument("--from", dest="requesting", required=True, help="the requesting institution")
    a.add_argument("--to", dest="consulting", required=True, help="the consulted hospital")
    a.add_argument("--kind", choices=[k.value for k in AgreementKind], required=True)

    d = cmds.add_parser("add-department", help="add a department to an institution")
    d.add_argument("--institution", required=True)
    d.add_argument("--code", required=True)
    d.add_argument("--name", required=True)

    c = cmds.add_parser("add-account", help="create an account (prints a temporary password)")
    c.add_argument("--username", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--role", choices=[r.value for r in Role], required=True)
    c.add_argument("--institution", required=True)
    c.add_argument("--department", action="append", default=[], help="a code (repeatable)")
    c.add_argument("--title")
    c.add_argument("--licence")
    c.add_argument("--practice-start", type=date.fromisoformat, help="YYYY-MM-DD")
    c.add_argument("--phone")

    x = cmds.add_parser("deactivate", help="deactivate an account (its sessions end)")
    x.add_argument("username")
    r = cmds.add_parser("reset-password", help="a temporary password, changed at next sign-in")
    r.add_argument("username")
    t = cmds.add_parser(
        "reset-second-factor", help="remove a lost second factor (enrolled again at next sign-in)"
    )
    t.add_argument("username")

    f = cmds.add_parser("import", help="import a CSV or XLSX staff list (all rows or none)")
    f.add_argument("file", type=Path)
    f.add_argument("--dry-run", action="store_true", help="check the file, store nothing")


async def _with_service(settings: Settings, work: Callable[[AdminService], Awaitable[T]]) -> T:
    db = settings.open_database()
    try:
        await db.upgrade()
        # Running servers keep sessions in memory: with Redis they are told when
        # this command changed an account or ended sessions (a deactivation, a
        # reset), and see it on the next request rather than after
        # ``session_cache_seconds``.
        changed = db.watch(*SESSION_TABLES)
        ctx = Context(db=db, clock=SystemClock(), notifier=NoPushes())
        sockets = _SocketsElsewhere()
        service = AdminService(
            ctx, passwords=settings.passwords(), cli_user=getpass.getuser(), sockets=sockets
        )
        result = await work(service)
        if changed.generation and settings.redis_url:
            await _tell_servers(settings, sockets.accounts)
        return result
    finally:
        await db.close()


class _SocketsElsewhere:
    """The open sockets of the accounts an action ended the sessions of: they
    live in the web processes, not in this one. Noted here; with Redis the web
    processes are told to hang them up when the action has been committed
    (``_tell_servers``). Without Redis their next session sweep closes them
    (``web/ws.py``), since the sessions are revoked in the database."""

    def __init__(self) -> None:
        self.accounts: list[str] = []

    async def close_account(self, account_id: str) -> int:
        """Note ``account_id``; no socket of it is open in this process."""
        self.accounts.append(account_id)
        return 0


async def _tell_servers(settings: Settings, closed_accounts: list[str]) -> None:
    # Imported here: without Redis (the default) the client is never loaded.
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        await tell_sessions_changed(redis, f"cli-{os.getpid()}", closed_accounts=closed_accounts)
    except (RedisError, OSError) as exc:
        print(
            f"warning: the running servers could not be told ({exc}); they see the change "
            f"within session_cache_seconds ({settings.session_cache_seconds:g} s) and "
            "close the account's open connections at their next sweep (within a minute)",
            file=sys.stderr,
        )
    finally:
        await redis.aclose()


async def _institution_id(service: AdminService, name: str) -> str:
    for i in await service.institutions(None):
        if i.name == name:
            return i.id
    raise SignalingError(f"no institution is called {name!r}")


async def _account_id(service: AdminService, username: str) -> str:
    for a in await service.accounts(None, text=username):
        if a.username == username:
            return a.id
    raise SignalingError(f"no account has the username {username!r}")


async def _department_ids(
    service: AdminService, institution_id: str, codes: list[str]
) -> list[str]:
    found = {
        d.code: d.id
        for d, _ in await service.departments(None)
        if d.institution_id == institution_id
    }
    missing = [c for c in codes if c not in found]
    if missing:
        raise SignalingError(f"the institution has no department {', '.join(missing)}")
    return [found[c] for c in codes]


def _print_import(result: ImportResult, *, dry_run: bool) -> int:
    for p in result.problems:
        where = f"row {p.row}, {p.column}" if p.row else "file"
        print(f"ERROR {where}: {p.message}")
    if result.problems or not result.rows:
        print(f"{len(result.problems)} problem(s): nothing stored")
        return 1
    if dry_run:
        print(f"{len(result.rows)} row(s) valid; nothing stored (--dry-run)")
        return 0
    print(f"{len(result.issued)} account(s) created; temporary passwords (shown once):")
    for issued in result.issued:
        print(f"  {issued.account.username:<20} {issued.password}")
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    cmd = args.admin_command

    async def work(s: AdminService) -> int:
        if cmd == "bootstrap":
            issued = await s.bootstrap(
                username=args.username,
                display_name=args.name,
                institution=args.institution,
                kind=args.kind,
                region=args.region,
            )
            print(f"administrator {issued.account.username} created")
            print(f"temporary password (shown once): {issued.password}")
            print("sign in at /login and choose a new password; then use /admin")
            return 0
        if cmd == "add-institution":
            inst = await s.add_institution(None, name=args.name, kind=args.kind, region=args.region)
            print(f"institution {inst.name} added ({inst.id})")
            return 0
        if cmd == "add-agreement":
            agreement = await s.add_agreement(
                None,
                requesting_institution_id=await _institution_id(s, args.requesting),
                consulting_institution_id=await _institution_id(s, args.consulting),
                kind=args.kind,
            )
            print(f"agreement added: {args.requesting} may ask {args.consulting} ({agreement.id})")
            return 0
        if cmd == "add-department":
            dept = await s.add_department(
                None,
                institution_id=await _institution_id(s, args.institution),
                code=args.code,
                name=args.name,
            )
            print(f"department {dept.code} {dept.name} added ({dept.id})")
            return 0
        if cmd == "add-account":
            iid = await _institution_id(s, args.institution)
            issued = await s.add_account(
                None,
                username=args.username,
                institution_id=iid,
                fields=AccountFields(
                    display_name=args.name,
                    role=args.role,
                    title=args.title,
                    licence_no=args.licence,
                    practice_start=args.practice_start,
                    phone=args.phone,
                    department_ids=tuple(await _department_ids(s, iid, args.department)),
                ),
            )
            print(f"account {issued.account.username} created")
            print(f"temporary password (shown once): {issued.password}")
            return 0
        if cmd == "deactivate":
            account = await s.deactivate(None, await _account_id(s, args.username))
            print(f"account {account.username} deactivated; its sessions have ended")
            return 0
        if cmd == "reset-second-factor":
            ended = await s.reset_second_factor(None, await _account_id(s, args.username))
            print(
                f"second factor of {args.username} removed; {ended} session(s) ended; "
                "they enrol again at their next sign-in"
            )
            return 0
        if cmd == "reset-password":
            issued = await s.reset_password(None, await _account_id(s, args.username))
            print(
                f"temporary password for {issued.account.username} (shown once): {issued.password}"
            )
            return 0
        data = args.file.read_bytes()
        if args.dry_run:
            return _print_import(await s.import_preview(None, data), dry_run=True)
        return _print_import(await s.import_commit(None, data), dry_run=False)

    return await _with_service(settings, work)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``admin`` subcommand; 1 (with the reason) when it is refused."""
    try:
        return asyncio.run(_run(settings, args))
    except (SignalingError, records_errors.RecordsError) as exc:
        fields = f" ({', '.join(exc.fields)})" if exc.fields else ""
        print(f"refused: {exc.message}{fields}")
        return 1
    except OSError as exc:
        print(f"refused: {exc}")
        return 1
