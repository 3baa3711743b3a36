"""Logins, sessions and lock-out.

A session token is 32 random bytes handed to the browser in a cookie; only its
SHA-256 is stored. Each session has its own CSRF token that cookie-authenticated
writes must echo in a header.

Every request looks its session up. A session read within the last
``session_cache_seconds`` is taken from memory, as long as nothing was written
to the tables it was read from (``SESSION_TABLES``: the sessions, the accounts
and the departments each serves) since it was read (``records.db.Watch``:
a logout, a password change, a deactivated account or a changed role is seen
by the next request of this process; other processes are told through Redis).
An ``admin`` command run from the shell tells them through Redis too. The
cache's age is the bound for a change no notice reaches (such a command with no
Redis configured, a Redis outage).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from records import store
from records.db import Watch
from records.models import Account
from records.passwords import Passwords
from records.vocab import ErrorCode
from signaling.errors import AuthFailed, Invalid, Locked
from signaling.workflow.base import Actor, Context, Service, Tx, stored

# The shortest password a person may choose (a temporary one is longer).
MIN_PASSWORD = 8
# The tables a cached session depends on (``AuthService.authenticate``).
SESSION_TABLES = ("sessions", "accounts", "account_departments")
# Sessions kept in memory at most (the oldest read goes first).
SESSION_CACHE_SIZE = 20_000


@dataclass(frozen=True, kw_only=True)
class Session:
    """An authenticated session."""

    token: str
    csrf_token: str
    account: Account
    # The password was right but the second factor is still owed: the session
    # reaches only the second-factor pages and endpoints until it is given.
    second_factor_pending: bool = False
    # When this session's user last gave the second factor (None: never).
    verified_at: datetime | None = None

    @property
    def token_hash(self) -> str:
        """The stored form of the token (names the session in the database)."""
        return token_hash(self.token)


@dataclass(frozen=True)
class _Cached:
    session: Session
    expires_at: datetime
    generation: int
    read_at: float  # time.monotonic()


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def username_key(username: str) -> str:
    """The stored form of a username in the failure count (it may be a mistyped password)."""
    return hashlib.sha256(username.encode()).hexdigest()


class AuthService(Service):
    """Checks passwords, counts failures, issues and revokes sessions."""

    def __init__(
        self,
        ctx: Context,
        *,
        passwords: Passwords,
        max_failures: int,
        lockout_seconds: int,
        session_ttl_seconds: int,
        second_factor_roles: frozenset[str] = frozenset(),
        sessions_changed: Watch | None = None,
        cache_seconds: float = 0.0,
    ) -> None:
        """Wire the service; the numbers come from settings (see README).

        ``second_factor_roles``: roles whose sessions owe the TOTP second factor
        after the password (``totp_roles``). ``sessions_changed`` counts the
        writes to ``SESSION_TABLES``; with it, a session read less than
        ``cache_seconds`` ago is not read again (see the module docstring).
        """
        super().__init__(ctx)
        self.sessions_changed = sessions_changed
        self.cache_seconds = cache_seconds if sessions_changed is not None else 0.0
        self._cached: dict[str, _Cached] = {}
        self.second_factor_roles = second_factor_roles
        self.passwords = passwords
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_seconds)
        self.ttl = timedelta(seconds=session_ttl_seconds)

    async def login(self, username: str, password: str, client_addr: str | None) -> Session:
        """Check the password and open a session.

        Failures are counted per username whether or not it has an account, so an
        unknown name is refused, counted and locked out exactly like a real one:
        neither the answer nor the lock-out tells which usernames exist.

        Raises:
            AuthFailed: unknown user, wrong password or inactive account (the
                message is the same for each, so usernames cannot be probed).
            Locked: too many failures for this username; no password is checked
                until the lock ends.
        """
        key = username_key(username)

        def look(conn: sa.Connection) -> tuple[tuple[Account, str] | None, datetime | None]:
            return store.get_login(conn, username), store.login_locked_until(conn, key)

        found, locked_until = await self.read(look)
        now = self.clock.now()
        who = Actor(account=found[0], client_addr=client_addr) if found else None
        if locked_until and locked_until > now:
            account_id = found[0].id if found else None
            await self.write(
                who,
                lambda tx: tx.audit("auth.locked_out", "account", account_id),
                client_addr=client_addr,
            )
            raise Locked("too many failed logins; try again later")
        stored_hash = found[1] if found else None
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        ok = await asyncio.to_thread(self.passwords.check, stored_hash, password)
        if not found or not ok or not found[0].active:
            account_id = found[0].id if found else None

            # Recorded in its own transaction: raising inside it would roll back
            # the failure count, the lock and the audit entry.
            def failed(tx: Tx) -> None:
                failures, locked = store.count_login_failure(
                    tx.conn, key, lock_at=self.max_failures, lock_until=now + self.lockout
                )
                tx.audit(
                    "auth.lock" if locked else "auth.login_failed",
                    "account",
                    account_id,
                    failures=failures,
                )

            await self.write(who, failed, client_addr=client_addr)
            raise AuthFailed("wrong username or password")
        account = found[0]
        # A stronger hash after a settings change; computed before the write lock.
        rehash = (
            await asyncio.to_thread(self.passwords.hash, password)
            if self.passwords.needs_rehash(found[1])
            else None
        )
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        pending = account.role in self.second_factor_roles

        def work(tx: Tx) -> Account:
            store.clear_login_failures(tx.conn, key)
            if rehash is not None:
                store.set_password_hash(tx.conn, account.id, rehash)
            store.add_session(
                tx.conn,
                token_hash=token_hash(token),
                account_id=account.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + self.ttl,
                client_addr=client_addr,
                second_factor_pending=pending,
            )
            tx.audit("auth.login", "account", account.id, second_factor_pending=pending)
            written.append(self.sessions_changed.generation if self.sessions_changed else 0)
            return stored(store.get_account(tx.conn, account.id))

        written: list[int] = []
        fresh = await self.write(Actor(account=account, client_addr=client_addr), work)
        session = Session(
            token=token, csrf_token=csrf, account=fresh, second_factor_pending=pending
        )
        # The first page after a login finds its session in memory, unless another
        # write to the sessions or accounts came between this one's last statement
        # and now (the count moved once since, when this transaction ended).
        if written and self.sessions_changed and self.sessions_changed.generation == written[0] + 1:
            self._keep(session, now + self.ttl, written[0] + 1, time.monotonic())
        return session

    async def authenticate(self, token: str, *, fresh: bool = False) -> Session | None:
        """The live session for a cookie's token, or None (expired, revoked, inactive).

        ``fresh``: read it from the database even if it is cached (the sweep
        that closes the sockets of ended sessions).
        """
        now = self.clock.now()
        key = token_hash(token)
        watch = self.sessions_changed
        hit = None if fresh else self._cached.get(key)
        if (
            hit is not None
            and watch is not None
            and hit.generation == watch.generation
            and time.monotonic() - hit.read_at < self.cache_seconds
            and hit.expires_at > now
        ):
            return hit.session
        generation = watch.generation if watch is not None else 0
        read_at = time.monotonic()
        found = await self.read(lambda conn: self._read_session(conn, token, key, now))
        if found is None:
            self._cached.pop(key, None)
            return None
        session, expires_at = found
        if watch is not None and watch.generation == generation:
            # Nothing written to the sessions or accounts since the read began.
            self._keep(session, expires_at, generation, read_at)
        return session

    def _keep(
        self, session: Session, expires_at: datetime, generation: int, read_at: float
    ) -> None:
        if self.cache_seconds <= 0:
            return
        key = session.token_hash
        self._cached.pop(key, None)
        self._cached[key] = _Cached(session, expires_at, generation, read_at)
        if len(self._cached) > SESSION_CACHE_SIZE:
            del self._cached[next(iter(self._cached))]

    def _read_session(
        self, conn: sa.Connection, token: str, key: str, now: datetime
    ) -> tuple[Session, datetime] | None:
        row = store.get_session(conn, key)
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
            return None
        account = store.get_account(conn, row["account_id"])
        if account is None or not account.active:
            return None
        return (
            Session(
                token=token,
                csrf_token=row["csrf_token"],
                account=account,
                # Also owed by a session of a role that must give it but never
                # did (opened before the role was in ``totp_roles``).
                second_factor_pending=bool(row["second_factor_pending"])
                or (account.role in self.second_factor_roles and row["verified_at"] is None),
                verified_at=row["verified_at"],
            ),
            row["expires_at"],
        )

    async def change_password(
        self, session: Session, current: str, new: str, client_addr: str | None
    ) -> Session:
        """Replace the password (the way out of a forced change after a reset).

        The current password must be given again, so a session left open on a
        shared PC cannot be used to take the account over. The person's other
        sessions end; this one stays.

        Raises:
            AuthFailed: the current password is wrong (counted like a failed login).
            Invalid: the new password is too weak (``password_too_weak``).
        """
        account = session.account
        if len(new) < MIN_PASSWORD or new == current or new == account.username:
            raise Invalid(
                f"choose a new password of at least {MIN_PASSWORD} characters, "
                "other than the old one and the username",
                code=ErrorCode.PASSWORD_TOO_WEAK,
                fields=("new_password",),
            )
        found = await self.read(lambda conn: store.get_login(conn, account.username))
        ok = await asyncio.to_thread(self.passwords.check, found[1] if found else None, current)
        actor = Actor(account=account, client_addr=client_addr)
        if not ok:
            await self.write(
                actor, lambda tx: tx.audit("auth.password_change_failed", "account", account.id)
            )
            raise AuthFailed("the current password is wrong", fields=("current_password",))
        hashed = await asyncio.to_thread(self.passwords.hash, new)

        def work(tx: Tx) -> Account:
            store.set_password(tx.conn, account.id, hashed, must_change=False)
            ended = store.revoke_sessions(
                tx.conn, tx.now, account_id=account.id, keep=token_hash(session.token)
            )
            tx.audit("auth.password_changed", "account", account.id, sessions_ended=ended)
            return stored(store.get_account(tx.conn, account.id))

        fresh = await self.write(actor, work)
        return Session(token=session.token, csrf_token=session.csrf_token, account=fresh)

    async def logout(self, session: Session, client_addr: str | None) -> None:
        """Revoke the session server-side (the cookie becomes worthless)."""
        actor = Actor(account=session.account, client_addr=client_addr)

        def work(tx: Tx) -> None:
            store.revoke_sessions(tx.conn, tx.now, token_hash=token_hash(session.token))
            tx.audit("auth.logout", "account", session.account.id)

        await self.write(actor, work)
