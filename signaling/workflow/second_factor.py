"""Real-name re-verification: the TOTP second factor (RFC 6238) of physicians.

The rules of remote medical practice want the physician to confirm their identity
personally before each consultation. A password can be shared or left typed in
on a clinic PC; a code from the physician's own phone cannot. So, for the roles
in ``totp_roles``:

* **Login** is two steps: the password opens a session that only reaches the
  second-factor pages (``Session.second_factor_pending``), and the code completes
  it. The first time, the physician *enrols*: the server makes a secret, the page
  shows it as a QR code and as text, and a correct code from the phone confirms
  it; ten single-use *recovery codes* are then shown once (only their argon2
  hashes are kept) for a lost phone.
* **Joining a call** needs a verification of this session no older than
  ``reverify_window``; when it is older, the join is refused with
  ``verification_required``, the call page asks for a code, and the verification
  goes on the consultation's timeline (``identity_verified``) and into the audit
  log. Verification is kept per session, so a session cookie copied to another PC
  gains nothing from a code typed on the physician's own.

A code is accepted once: the time step it belongs to is stored and a code of that
step or an earlier one is refused (someone reading over the shoulder cannot
replay it). One step of clock drift either way is accepted (the phone's clock).
Wrong codes are counted per account like wrong passwords (``login_failures``,
keyed by a hash that cannot collide with a username's) and lock the second
factor for ``login_lockout_seconds`` after ``login_max_failures``.

The secret is sealed with the app's master key (``records.sealed_values.seal_value``)
when encryption at rest is configured, so a copy of the database does not give
anyone a physician's codes. An administrator's reset removes the enrolment and
ends the person's sessions; they enrol again at their next login.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

import pyotp
import sqlalchemy as sa

from records import sealed, sealed_values, store
from records.models import Account
from records.passwords import Passwords
from records.vocab import ErrorCode, EventKind
from signaling.errors import Forbidden, Invalid, Locked, NotFound, SignalingError
from signaling.workflow.base import Actor, Context, Service, Tx

# Recovery codes: ten of them, 10 characters from an alphabet without look-alikes
# (no 0/O, 1/I/L), shown as two groups of five.
RECOVERY_CODES = 10
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
# Steps of clock drift accepted either side of the server's (30 s each).
DRIFT_STEPS = 1
ISSUER = "teleconsult"


@dataclass(frozen=True, kw_only=True)
class Enrolment:
    """A second factor being enrolled: what the enrolment page shows."""

    secret: str
    uri: str


def totp_context(account_id: str) -> bytes:
    """What a sealed TOTP secret is bound to (its account: a copied value does not open)."""
    return f"totp:{account_id}".encode()


def failure_key(account_id: str) -> str:
    """The ``login_failures`` key of an account's wrong codes (never a username's hash)."""
    return hashlib.sha256(f"second-factor\0{account_id}".encode()).hexdigest()


def new_recovery_code() -> str:
    """One recovery code, as shown: ``ABCDE-FGHJK``."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def normalize_recovery_code(text: str) -> str:
    """A typed recovery code as stored: upper case, spaces and dashes dropped."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


class SecondFactorService(Service):
    """Enrols, checks and resets TOTP second factors; decides when a join needs one."""

    def __init__(
        self,
        ctx: Context,
        *,
        passwords: Passwords,
        keyring: sealed.Keyring | None,
        roles: frozenset[str],
        reverify_window_seconds: int,
        max_failures: int,
        lockout_seconds: int,
        issuer: str = ISSUER,
    ) -> None:
        """Wire the service.

        Args:
            ctx: database, clock, notifier.
            passwords: the argon2 hasher (recovery codes are hashed like passwords).
            keyring: seals the TOTP secrets; None: stored plain (no key configured).
            roles: the roles that must give the second factor (``totp_roles``).
            reverify_window_seconds: how old a verification may be at a join.
            max_failures: wrong codes before the second factor is locked.
            lockout_seconds: how long it stays locked.
            issuer: the name the authenticator app shows beside the account.
        """
        super().__init__(ctx)
        self.passwords = passwords
        self.keyring = keyring
        self.roles = roles
        self.window = timedelta(seconds=reverify_window_seconds)
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_seconds)
        self.issuer = issuer

    # -- who needs it -------------------------------------------------------------

    def required(self, account: Account) -> bool:
        """Whether ``account``'s role must give the second factor."""
        return account.role in self.roles

    async def enrolled(self, account_id: str) -> bool:
        """Whether the account has a confirmed second factor."""
        row = await self.read(lambda conn: store.get_second_factor(conn, account_id))
        return row is not None and row["enrolled_at"] is not None

    async def require_verified(self, actor: Actor) -> None:
        """Refuse a join when the actor's session was not verified within the window.

        Raises:
            Forbidden: ``verification_required`` (the page asks for a code and
                ``verify_for_call`` records it).
        """
        if not self.required(actor.account):
            return
        session = actor.session

        def look(conn: sa.Connection) -> datetime | None:
            row = store.get_session(conn, session) if session else None
            return row["verified_at"] if row else None

        verified_at = await self.read(look)
        if verified_at is None or self.clock.now() - verified_at > self.window:
            raise Forbidden(
                "confirm your identity with your authenticator code to join",
                code=ErrorCode.VERIFICATION_REQUIRED,
            )

    # -- enrolment ----------------------------------------------------------------

    def _secret(self, row: dict[str, Any], account_id: str) -> str:
        try:
            return sealed_values.open_value(
                row["secret"], self.keyring, totp_context(account_id)
            ).decode("ascii")
        except sealed.SealError as exc:
            # A secret sealed under a key no longer configured: only a reset helps.
            raise SignalingError(
                "the second factor cannot be read; ask the administrator to reset it"
            ) from exc

    async def begin_enrolment(self, actor: Actor) -> Enrolment:
        """The secret to enrol (a new one, or the one a reload of the page shows again).

        Raises:
            SignalingError: ``conflict`` when the account is enrolled already.
        """
        account = actor.account
        fresh = pyotp.random_base32()
        sealed_fresh = sealed_values.seal_value(
            fresh.encode(), self.keyring, totp_context(account.id)
        )

        def work(tx: Tx) -> str:
            row = store.get_second_factor(tx.conn, account.id)
            if row is not None and row["enrolled_at"] is not None:
                raise SignalingError("a second factor is enrolled already", code=ErrorCode.CONFLICT)
            if row is not None:
                return self._secret(row, account.id)
            store.start_second_factor(tx.conn, account.id, secret=sealed_fresh, at=tx.now)
            tx.audit("auth.totp_enrolment_started", "account", account.id)
            return fresh

        secret = await self.write(actor, work)
        uri = pyotp.TOTP(secret).provisioning_uri(name=account.username, issuer_name=self.issuer)
        return Enrolment(secret=secret, uri=uri)

    async def confirm_enrolment(self, actor: Actor, code: str) -> list[str]:
        """Confirm the enrolment with a code from the phone; the recovery codes, once.

        The session is then verified (the login's second step is done).

        Raises:
            Invalid: ``wrong_code``.
            Locked: too many wrong codes.
            SignalingError: ``conflict`` (enrolled already) or ``not_found`` (no
                enrolment started).
        """
        account = actor.account
        await self._check_lock(actor)
        row = await self.read(lambda conn: store.get_second_factor(conn, account.id))
        if row is None:
            raise NotFound("start the enrolment first", code=ErrorCode.NOT_FOUND)
        if row["enrolled_at"] is not None:
            raise SignalingError("a second factor is enrolled already", code=ErrorCode.CONFLICT)
        step = self._match(self._secret(row, account.id), code)
        if step is None:
            await self._failed(actor, "enrol")
        # Ten argon2 hashes: only for a right code (a wrong one costs no more
        # than a wrong password), and off the event loop.
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        hashes = await asyncio.to_thread(
            lambda: [self.passwords.hash(normalize_recovery_code(c)) for c in codes]
        )

        def work(tx: Tx) -> bool:
            if step is None or not store.use_step(tx.conn, account.id, step):
                return False
            store.confirm_second_factor(tx.conn, account.id, at=tx.now)
            store.replace_recovery_codes(tx.conn, account.id, hashes, at=tx.now)
            store.clear_login_failures(tx.conn, failure_key(account.id))
            self._verified(tx)
            tx.audit("auth.totp_enrolled", "account", account.id)
            return True

        if not await self.write(actor, work):
            await self._failed(actor, "enrol")
        return codes

    # -- verification -------------------------------------------------------------

    async def verify_login(self, actor: Actor, code: str) -> str:
        """Complete a login with a TOTP or recovery code; which one it was.

        Raises:
            Invalid: ``wrong_code``.
            Locked: too many wrong codes.
            NotFound: no enrolled second factor (enrol first).
        """
        used = await self._verify(actor, code, lambda tx, kind: None, purpose="login")
        return used

    async def verify_for_call(self, actor: Actor, consultation_id: str, code: str) -> datetime:
        """Verify before joining a consultation's call: on its timeline and audited.

        Raises:
            NotFound: the consultation is not visible to the actor (audited probe).
            Forbidden: not a participant.
            Invalid: ``wrong_code``.
            Locked: too many wrong codes.
        """

        def check(tx: Tx) -> None:
            c = tx.consultation(consultation_id)
            tx.require_participant(c, "you are not a participant of this call")

        # Who may not join is told so before any code is looked at.
        await self.write(actor, check)

        def record(tx: Tx, kind: str) -> None:
            tx.event(consultation_id, EventKind.IDENTITY_VERIFIED, {"method": kind})
            tx.audit("consultation.identity_verified", "consultation", consultation_id, method=kind)

        await self._verify(actor, code, record, purpose="call", consultation_id=consultation_id)
        return self.clock.now()

    async def _verify(
        self,
        actor: Actor,
        code: str,
        also: Callable[[Tx, str], None],
        *,
        purpose: str,
        consultation_id: str | None = None,
    ) -> str:
        account = actor.account
        await self._check_lock(actor)
        row = await self.read(lambda conn: store.get_second_factor(conn, account.id))
        if row is None or row["enrolled_at"] is None:
            raise NotFound("no second factor is enrolled", code=ErrorCode.NOT_FOUND)
        step = self._match(self._secret(row, account.id), code)
        # Not a current TOTP code: perhaps a recovery code (10 characters).
        recovery = None if step is not None else await self._recovery_match(account.id, code)

        def work(tx: Tx) -> str | None:
            if step is not None:
                if not store.use_step(tx.conn, account.id, step):
                    return None
                kind = "totp"
            elif recovery is not None:
                if not store.use_recovery_code(tx.conn, recovery, at=tx.now):
                    return None
                kind = "recovery_code"
            else:
                return None
            store.clear_login_failures(tx.conn, failure_key(account.id))
            self._verified(tx)
            tx.audit("auth.second_factor", "account", account.id, purpose=purpose, method=kind)
            also(tx, kind)
            return kind

        used = await self.write(actor, work)
        if used is None:
            await self._failed(actor, purpose, consultation_id)
        return str(used)

    def _verified(self, tx: Tx) -> None:
        session = tx.actor.session if tx.actor else None
        if session is not None:
            store.set_session_verified(tx.conn, session, at=tx.now)

    def _match(self, secret: str, code: str) -> int | None:
        """The time step whose code ``code`` is (within the drift), or None."""
        code = code.strip().replace(" ", "")
        if len(code) != 6 or not code.isdigit():
            return None
        totp = pyotp.TOTP(secret)
        now = self.clock.now()
        step = int(now.timestamp()) // totp.interval
        for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
            expected = totp.at(now, counter_offset=offset)
            if hmac.compare_digest(expected, code):
                return step + offset
        return None

    async def _recovery_match(self, account_id: str, text: str) -> str | None:
        typed = normalize_recovery_code(text)
        if len(typed) != 10:
            return None
        unused = await self.read(lambda conn: store.unused_recovery_codes(conn, account_id))

        # argon2 per stored code: off the event loop.
        def find() -> str | None:
            return next(
                (cid for cid, h in unused if self.passwords.check(h, typed)),
                None,
            )

        return await asyncio.to_thread(find)

    async def _check_lock(self, actor: Actor) -> None:
        key = failure_key(actor.id)
        until = await self.read(lambda conn: store.login_locked_until(conn, key))
        if until is not None and until > self.clock.now():
            await self.write(
                actor, lambda tx: tx.audit("auth.second_factor_locked_out", "account", actor.id)
            )
            raise Locked("too many wrong codes; try again later")

    async def _failed(
        self, actor: Actor, purpose: str, consultation_id: str | None = None
    ) -> NoReturn:
        """Count and audit a wrong code (in its own transaction), then refuse it."""
        now = self.clock.now()

        def work(tx: Tx) -> None:
            failures, locked = store.count_login_failure(
                tx.conn,
                failure_key(actor.id),
                lock_at=self.max_failures,
                lock_until=now + self.lockout,
            )
            detail: dict[str, Any] = {"purpose": purpose, "failures": failures}
            if consultation_id is not None:
                detail["consultation_id"] = consultation_id
            tx.audit(
                "auth.second_factor_lock" if locked else "auth.second_factor_failed",
                "account",
                actor.id,
                **detail,
            )

        await self.write(actor, work)
        raise Invalid("wrong or already used code", code=ErrorCode.WRONG_CODE, fields=("code",))

    # -- administration -----------------------------------------------------------
