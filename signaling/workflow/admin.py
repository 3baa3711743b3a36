"""Administration: institutions, agreements, departments, accounts, staff imports.

Every action is one audited transaction (``Tx``). The acting administrator is an
``Actor`` (the pages and the API) or, for ``teleconsult admin ...`` on the
server's console, nobody: then the service was built with ``cli_user`` (the OS
user who ran the command), which every audit entry names.

Accounts are never deleted. Deactivating one ends its sessions at once and,
through the ``AccountSockets`` port (the call plane's hub, wired by the
composition root), closes its open WebSockets. A password reset gives a
temporary password, shown once to the administrator; it is good only for
choosing a new one (``AuthService.change_password``).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import date
from typing import Any, Protocol

import sqlalchemy as sa

from records import store
from records.models import Account, Agreement, Department, Institution
from records.passwords import Passwords
from records.vocab import AgreementKind, ErrorCode, InstitutionKind, Role
from signaling.errors import Forbidden, Invalid, NotFound
from signaling.workflow.accounts import (
    TEMPORARY_HASHING,
    AccountFields,
    ImportResult,
    Issued,
    check_fields,
    check_staff_file,
    insert_account,
    temporary_password,
)
from signaling.workflow.base import Actor, Context, Service, Tx, stored
from signaling.workflow.second_factor import failure_key

# The institutions that ask, and those asked (departments of specialist hospitals
# take requests: ``DirectoryService.departments``).
REQUESTING_KINDS = frozenset({InstitutionKind.TOWNSHIP_CLINIC, InstitutionKind.COUNTY_HOSPITAL})
CONSULTED_KINDS = frozenset({InstitutionKind.SPECIALIST_HOSPITAL})


class AccountSockets(Protocol):
    """Where the open connections of an account are closed (the call plane's hub)."""

    async def close_account(self, account_id: str) -> int:
        """Close every open connection of ``account_id``; how many there were."""
        ...


class NoSockets:
    """``AccountSockets`` of a service with no connections in its process.

    A server running beside it closes the account's sockets at its next session
    sweep (``web/ws.py``), since the sessions are revoked in the database. (The
    command line notes the accounts instead and tells the servers through
    Redis: ``web/cli_admin.py``.)
    """

    async def close_account(self, account_id: str) -> int:
        """Nothing to close."""
        return 0


@functools.cache
def _temporary_hasher() -> Passwords:
    """The hasher of temporary passwords: one per process, made on first use.

    Not one per service: a ``Passwords`` hashes a dummy when built, and an app
    builds its services at every start (the test suite starts one per test).
    """
    return Passwords(**TEMPORARY_HASHING)


class AdminService(Service):
    """The administrator's use cases (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        *,
        passwords: Passwords,
        sockets: AccountSockets | None = None,
        cli_user: str | None = None,
    ) -> None:
        """Wire the service; ``cli_user`` is set only by the command line."""
        super().__init__(ctx)
        self.passwords = passwords
        # Not `sockets or ...`: an empty hub has a length of 0, and is falsy.
        self.sockets = sockets if sockets is not None else NoSockets()
        self.cli_user = cli_user

    # -- helpers ----------------------------------------------------------------------

    def _allow(self, actor: Actor | None) -> None:
        if actor is None:
            if self.cli_user is None:
                raise Forbidden("administration needs an administrator", code=ErrorCode.FORBIDDEN)
            return
        self.require_role(actor, Role.ADMIN)

    def _audit(
        self, tx: Tx, action: str, object_type: str, object_id: str | None, **detail: Any
    ) -> None:
        if tx.actor is None:
            detail["cli_user"] = self.cli_user
        tx.audit(f"admin.{action}", object_type, object_id, **detail)

    async def _hash(self, password: str) -> str:
        """The stored form of a temporary password (see ``TEMPORARY_HASHING``)."""
        return await asyncio.to_thread(_temporary_hasher().hash, password)

    # -- reads ------------------------------------------------------------------------

    async def institutions(self, actor: Actor | None) -> list[Institution]:
        """Every institution, by name."""
        self._allow(actor)
        return await self.read(store.list_institutions)

    async def agreements(self, actor: Actor | None) -> list[Agreement]:
        """Every agreement, ended ones too, newest first."""
        self._allow(actor)
        return await self.read(store.list_agreements)

    async def departments(self, actor: Actor | None) -> list[tuple[Department, Institution]]:
        """Every department of every institution."""
        self._allow(actor)
        return await self.read(store.list_departments)

    async def accounts(
        self,
        actor: Actor | None,
        *,
        institution_id: str | None = None,
        role: str | None = None,
        active: bool | None = None,
        text: str | None = None,
    ) -> list[Account]:
        """Accounts matching the filters, deactivated ones too."""
        self._allow(actor)
        return await self.read(
            lambda conn: store.list_all_accounts(
                conn, institution_id=institution_id, role=role, active=active, text=text
            )
        )

    # -- institutions and agreements --------------------------------------------------

    async def add_institution(
        self, actor: Actor | None, *, name: str, kind: str, region: str
    ) -> Institution:
        """Add a clinic or hospital."""
        self._allow(actor)

        def work(tx: Tx) -> Institution:
            iid = store.add_institution(tx.conn, name=name, kind=kind, region=region)
            self._audit(tx, "institution.add", "institution", iid, name=name, kind=kind)
            return stored(store.get_institution(tx.conn, iid))

        return await self.write(actor, work)

    async def edit_institution(
        self, actor: Actor | None, institution_id: str, *, name: str, kind: str, region: str
    ) -> Institution:
        """Change an institution's name, kind or region."""
        self._allow(actor)

        def work(tx: Tx) -> Institution:
            self._institution(tx.conn, institution_id)
            store.update_institution(tx.conn, institution_id, name=name, kind=kind, region=region)
            self._audit(tx, "institution.edit", "institution", institution_id, name=name, kind=kind)
            return stored(store.get_institution(tx.conn, institution_id))

        return await self.write(actor, work)

    @staticmethod
    def _institution(conn: sa.Connection, institution_id: str, field: str = "id") -> Institution:
        found = store.get_institution(conn, institution_id)
        if found is None:
            raise NotFound("institution not found", fields=(field,))
        return found

    async def add_agreement(
        self,
        actor: Actor | None,
        *,
        requesting_institution_id: str,
        consulting_institution_id: str,
        kind: str,
        since: date | None = None,
    ) -> Agreement:
        """Let a clinic or county hospital ask a specialist hospital for consultations."""
        self._allow(actor)

        def work(tx: Tx) -> Agreement:
            asking = self._institution(
                tx.conn, requesting_institution_id, "requesting_institution_id"
            )
            asked = self._institution(
                tx.conn, consulting_institution_id, "consulting_institution_id"
            )
            if asking.kind not in REQUESTING_KINDS:
                raise Invalid(
                    "only clinics and county hospitals request consultations",
                    fields=("requesting_institution_id",),
                )
            if asked.kind not in CONSULTED_KINDS:
                raise Invalid(
                    "only specialist hospitals are asked for consultations",
                    fields=("consulting_institution_id",),
                )
            if store.active_agreement(tx.conn, asking.id, asked.id) is not None:
                raise Invalid(
                    "these institutions have an active agreement already",
                    code=ErrorCode.CONFLICT,
                    fields=("consulting_institution_id",),
                )
            aid = store.add_agreement(
                tx.conn,
                requesting_institution_id=asking.id,
                consulting_institution_id=asked.id,
                kind=AgreementKind(kind).value,
                since=since or tx.now.date(),
                created_at=tx.now,
            )
            self._audit(
                tx,
                "agreement.add",
                "agreement",
                aid,
                requesting_institution_id=asking.id,
                consulting_institution_id=asked.id,
                kind=kind,
            )
            return stored(store.get_agreement(tx.conn, aid))

        return await self.write(actor, work)

    async def end_agreement(self, actor: Actor | None, agreement_id: str) -> Agreement:
        """End an agreement: requests already made go on, new ones are refused."""
        self._allow(actor)

        def work(tx: Tx) -> Agreement:
            if store.get_agreement(tx.conn, agreement_id) is None:
                raise NotFound("agreement not found", fields=("agreement_id",))
            if not store.end_agreement(tx.conn, agreement_id, tx.now):
                raise Invalid("the agreement has ended already", code=ErrorCode.CONFLICT)
            self._audit(tx, "agreement.end", "agreement", agreement_id)
            return stored(store.get_agreement(tx.conn, agreement_id))

        return await self.write(actor, work)

    # -- departments ------------------------------------------------------------------

    async def add_department(
        self, actor: Actor | None, *, institution_id: str, code: str, name: str
    ) -> Department:
        """Add a department to an institution."""
        self._allow(actor)

        def work(tx: Tx) -> Department:
            self._institution(tx.conn, institution_id, "institution_id")
            did = store.add_department(tx.conn, institution_id=institution_id, code=code, name=name)
            self._audit(tx, "department.add", "department", did, code=code, name=name)
            return stored(store.get_department(tx.conn, did))

        return await self.write(actor, work)

    async def edit_department(
        self, actor: Actor | None, department_id: str, *, name: str
    ) -> Department:
        """Rename a department."""
        self._allow(actor)

        def work(tx: Tx) -> Department:
            if store.get_department(tx.conn, department_id) is None:
                raise NotFound("department not found", fields=("department_id",))
            store.update_department(tx.conn, department_id, name=name)
            self._audit(tx, "department.edit", "department", department_id, name=name)
            return stored(store.get_department(tx.conn, department_id))

        return await self.write(actor, work)

    # -- accounts ---------------------------------------------------------------------

    async def add_account(
        self, actor: Actor | None, *, username: str, institution_id: str, fields: AccountFields
    ) -> Issued:
        """Create an account with a temporary password (changed at the first login)."""
        self._allow(actor)
        password = temporary_password()
        hashed = await self._hash(password)

        def work(tx: Tx) -> Account:
            self._institution(tx.conn, institution_id, "institution_id")
            check_fields(tx.conn, institution_id, fields)
            aid = insert_account(tx, username, institution_id, fields, hashed)
            self._audit(tx, "account.add", "account", aid, username=username, role=fields.role)
            return stored(store.get_account(tx.conn, aid))

        return Issued(account=await self.write(actor, work), password=password)

    def _account(self, conn: sa.Connection, account_id: str) -> Account:
        found = store.get_account(conn, account_id)
        if found is None:
            raise NotFound("account not found", fields=("account_id",))
        return found

    async def edit_account(
        self, actor: Actor | None, account_id: str, fields: AccountFields
    ) -> Account:
        """Change what is known of a person (the username and institution stay)."""
        self._allow(actor)

        def work(tx: Tx) -> Account:
            account = self._account(tx.conn, account_id)
            check_fields(tx.conn, account.institution_id, fields)
            store.update_account(
                tx.conn,
                account_id,
                department_ids=fields.department_ids,
                display_name=fields.display_name,
                role=fields.role,
                title=fields.title,
                licence_no=fields.licence_no,
                practice_start=fields.practice_start,
                phone=fields.phone,
            )
            self._audit(tx, "account.edit", "account", account_id, role=fields.role)
            return stored(store.get_account(tx.conn, account_id))

        return await self.write(actor, work)

    async def deactivate(self, actor: Actor | None, account_id: str) -> Account:
        """Deactivate an account: its sessions end and its open sockets close at once.

        Nothing is deleted: the name stays on every timeline and audit entry.
        """
        self._allow(actor)

        def work(tx: Tx) -> Account:
            account = self._account(tx.conn, account_id)
            if actor is not None and account.id == actor.id:
                raise Invalid("you cannot deactivate your own account", fields=("account_id",))
            if not account.active:
                raise Invalid("the account is deactivated already", code=ErrorCode.CONFLICT)
            store.update_account(
                tx.conn,
                account_id,
                active=False,
                deactivated_at=tx.now,
                deactivated_by=actor.id if actor else None,
            )
            ended = store.revoke_sessions(tx.conn, tx.now, account_id=account_id)
            self._audit(tx, "account.deactivate", "account", account_id, sessions_ended=ended)
            return stored(store.get_account(tx.conn, account_id))

        account = await self.write(actor, work)
        await self.sockets.close_account(account_id)
        return account

    async def reset_second_factor(self, actor: Actor | None, account_id: str) -> int:
        """Remove an account's second factor (a lost phone): its sessions end, its
        sockets close, and the person enrols again at their next sign-in.

        Returns:
            How many sessions were ended.

        Raises:
            Forbidden: ``role_forbidden`` for anyone but an administrator.
            NotFound: no such account.
        """
        self._allow(actor)

        def work(tx: Tx) -> int:
            self._account(tx.conn, account_id)
            had = store.delete_second_factor(tx.conn, account_id)
            ended = store.revoke_sessions(tx.conn, tx.now, account_id=account_id)
            # A lock-out for wrong codes ends with the factor it was about.
            store.clear_login_failures(tx.conn, failure_key(account_id))
            self._audit(
                tx,
                "account.reset_second_factor",
                "account",
                account_id,
                had_second_factor=had,
                sessions_ended=ended,
            )
            return ended

        ended = await self.write(actor, work)
        await self.sockets.close_account(account_id)
        return ended

    async def reactivate(self, actor: Actor | None, account_id: str) -> Account:
        """Let a deactivated person log in again."""
        self._allow(actor)

        def work(tx: Tx) -> Account:
            account = self._account(tx.conn, account_id)
            if account.active:
                raise Invalid("the account is active", code=ErrorCode.CONFLICT)
            store.update_account(
                tx.conn, account_id, active=True, deactivated_at=None, deactivated_by=None
            )
            self._audit(tx, "account.reactivate", "account", account_id)
            return stored(store.get_account(tx.conn, account_id))

        return await self.write(actor, work)

    async def reset_password(self, actor: Actor | None, account_id: str) -> Issued:
        """A temporary password for someone who forgot theirs; a new one at the next login.

        The old password stops working and the person's sessions end (whoever
        knew the old one is logged out too).
        """
        self._allow(actor)
        password = temporary_password()
        hashed = await self._hash(password)

        def work(tx: Tx) -> Account:
            self._account(tx.conn, account_id)
            store.set_password(tx.conn, account_id, hashed, must_change=True)
            ended = store.revoke_sessions(tx.conn, tx.now, account_id=account_id)
            self._audit(tx, "account.reset_password", "account", account_id, sessions_ended=ended)
            return stored(store.get_account(tx.conn, account_id))

        account = await self.write(actor, work)
        await self.sockets.close_account(account_id)
        return Issued(account=account, password=password)

    async def bootstrap(
        self,
        *,
        username: str,
        display_name: str,
        institution: str,
        kind: str,
        region: str,
    ) -> Issued:
        """The first administrator of a fresh install (and their institution).

        Refused once any administrator exists: later ones are made by an
        administrator, in the pages or with ``admin add-account``.
        """
        self._allow(None)
        password = temporary_password()
        hashed = await self._hash(password)

        def work(tx: Tx) -> Account:
            if store.count_accounts(tx.conn, role=Role.ADMIN):
                raise Invalid(
                    "an administrator exists already: log in as them", code=ErrorCode.CONFLICT
                )
            iid = store.institution_by_name(tx.conn, institution) or store.add_institution(
                tx.conn, name=institution, kind=kind, region=region
            )
            fields = AccountFields(display_name=display_name, role=Role.ADMIN.value)
            aid = insert_account(tx, username, iid, fields, hashed)
            self._audit(tx, "bootstrap", "account", aid, username=username, institution_id=iid)
            return stored(store.get_account(tx.conn, aid))

        return Issued(account=await self.write(None, work), password=password)

    # -- staff lists ------------------------------------------------------------------

    async def import_preview(self, actor: Actor | None, data: bytes) -> ImportResult:
        """Check a staff list (CSV or XLSX) without storing anything."""
        self._allow(actor)

        def work(tx: Tx) -> ImportResult:
            checked = check_staff_file(tx.conn, data, today=self.clock.now().date())
            self._audit(
                tx,
                "import.preview",
                "staff_list",
                None,
                rows=len(checked.cells),
                problems=len(checked.problems),
            )
            return checked

        return await self.write(actor, work)

    async def import_commit(self, actor: Actor | None, data: bytes) -> ImportResult:
        """Store every person of a staff list in one transaction, or nobody.

        The file is checked again inside the transaction (the directory may have
        changed since the preview); any problem stores nothing and the result
        names them all.
        """
        self._allow(actor)
        today = self.clock.now().date()
        preview = await self.read(lambda conn: check_staff_file(conn, data, today=today))
        if not preview.ok:
            return preview
        passwords = [temporary_password() for _ in preview.rows]
        # Hashed before the write lock is taken (about 5 ms each).
        hashes = [await self._hash(p) for p in passwords]

        def work(tx: Tx) -> ImportResult:
            checked = check_staff_file(tx.conn, data, today=today)
            if not checked.ok or len(checked.rows) != len(hashes):
                return checked
            issued = []
            for row, password, hashed in zip(checked.rows, passwords, hashes, strict=True):
                fields = AccountFields(
                    display_name=row.display_name,
                    role=row.role,
                    title=row.title,
                    licence_no=row.licence_no,
                    practice_start=row.practice_start,
                    phone=row.phone,
                    department_ids=row.department_ids,
                )
                aid = insert_account(tx, row.username, row.institution_id, fields, hashed)
                issued.append(
                    Issued(account=stored(store.get_account(tx.conn, aid)), password=password)
                )
            self._audit(
                tx,
                "import.commit",
                "staff_list",
                None,
                accounts=[i.account.id for i in issued],
            )
            return ImportResult(rows=checked.rows, problems=[], issued=issued, cells=checked.cells)

        return await self.write(actor, work)
