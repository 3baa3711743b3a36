"""Logins, sessions and lock-out.

A session token is 32 random bytes handed to the browser in a cookie; only its
SHA-256 is stored. Each session has its own CSRF token that cookie-authenticated
writes must echo in a header.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from records import audit, store
from records.clock import Clock
from records.db import Database
from records.models import Account
from records.passwords import Passwords
from signaling.errors import AuthFailed, Locked


@dataclass(frozen=True, kw_only=True)
class Session:
    """An authenticated session."""

    token: str
    csrf_token: str
    account: Account


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


class AuthService:
    """Checks passwords, counts failures, issues and revokes sessions."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        passwords: Passwords,
        max_failures: int,
        lockout_seconds: int,
        session_ttl_seconds: int,
    ) -> None:
        """Wire the service; the numbers come from settings (see README)."""
        self.db = db
        self.clock = clock
        self.passwords = passwords
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_seconds)
        self.ttl = timedelta(seconds=session_ttl_seconds)

    async def login(self, username: str, password: str, client_addr: str | None) -> Session:
        """Check the password and open a session.

        Raises:
            AuthFailed: unknown user, wrong password or inactive account (the
                message is the same for each, so usernames cannot be probed).
            Locked: too many failures; no password is checked until the lock ends.
        """
        async with self.db.read() as conn:
            found = await store.get_login(conn, username)
        now = self.clock.now()
        if found and found[0].locked_until and found[0].locked_until > now:
            async with self.db.write() as conn:
                await audit.append(
                    conn,
                    at=now,
                    actor_id=found[0].id,
                    action="auth.locked_out",
                    object_type="account",
                    object_id=found[0].id,
                    client_addr=client_addr,
                )
            raise Locked("too many failed logins; try again later")
        stored = found[1] if found else None
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        ok = await asyncio.to_thread(self.passwords.check, stored, password)
        if not found or not ok or not found[0].active:
            # Recorded in its own transaction: raising inside it would roll back
            # the failure count, the lock and the audit entry.
            async with self.db.write() as conn:
                current = await store.get_login(conn, username) if found else None
                if current:
                    # Counted from the row as it is now, inside the write lock, so
                    # concurrent wrong guesses cannot overwrite each other's count.
                    account = current[0]
                    failures = account.failed_logins + 1
                    locked = now + self.lockout if failures >= self.max_failures else None
                    await store.set_login_state(
                        conn,
                        account.id,
                        failed_logins=0 if locked else failures,
                        locked_until=locked,
                    )
                    await audit.append(
                        conn,
                        at=now,
                        actor_id=account.id,
                        action="auth.lock" if locked else "auth.login_failed",
                        object_type="account",
                        object_id=account.id,
                        client_addr=client_addr,
                        detail={"failures": failures},
                    )
                else:
                    await audit.append(
                        conn,
                        at=now,
                        actor_id=None,
                        action="auth.login_failed",
                        object_type="account",
                        object_id=None,
                        client_addr=client_addr,
                    )
            raise AuthFailed("wrong username or password")
        async with self.db.write() as conn:
            account = found[0]
            rehash = None
            if self.passwords.needs_rehash(found[1]):
                rehash = await asyncio.to_thread(self.passwords.hash, password)
            await store.set_login_state(
                conn, account.id, failed_logins=0, locked_until=None, password_hash=rehash
            )
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            await store.add_session(
                conn,
                token_hash=token_hash(token),
                account_id=account.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + self.ttl,
                client_addr=client_addr,
            )
            await audit.append(
                conn,
                at=now,
                actor_id=account.id,
                action="auth.login",
                object_type="account",
                object_id=account.id,
                client_addr=client_addr,
            )
            fresh = await store.get_account(conn, account.id)
        assert fresh is not None  # noqa: S101
        return Session(token=token, csrf_token=csrf, account=fresh)

    async def authenticate(self, token: str) -> Session | None:
        """The live session for a cookie's token, or None (expired, revoked, inactive)."""
        async with self.db.read() as conn:
            row = await store.get_session(conn, token_hash(token))
            if row is None or row["revoked_at"] is not None:
                return None
            if row["expires_at"] <= self.clock.now():
                return None
            account = await store.get_account(conn, row["account_id"])
        if account is None or not account.active:
            return None
        return Session(token=token, csrf_token=row["csrf_token"], account=account)

    async def logout(self, session: Session, client_addr: str | None) -> None:
        """Revoke the session server-side (the cookie becomes worthless)."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await store.revoke_sessions(conn, now, token_hash=token_hash(session.token))
            await audit.append(
                conn,
                at=now,
                actor_id=session.account.id,
                action="auth.logout",
                object_type="account",
                object_id=session.account.id,
                client_addr=client_addr,
            )
