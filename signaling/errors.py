"""Errors of the control plane, each with a stable code.

``web/`` maps the classes to HTTP statuses; nothing here knows about HTTP.
"""

from __future__ import annotations


class SignalingError(Exception):
    """Root of the control-plane errors."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields


class NotFound(SignalingError):
    """Does not exist, or the caller may not know that it exists."""

    code = "not_found"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: tuple[str, ...] = (),
        probe: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, fields=fields)
        # (object type, id) that was asked for, so the refusal can be audited.
        self.probe = probe


class Invalid(SignalingError):
    """The request names something that cannot be used (the fields say which)."""

    code = "invalid"


class Forbidden(SignalingError):
    """The caller is known but their role or the rules do not allow this."""

    code = "forbidden"


class IllegalTransition(SignalingError):
    """The consultation's state does not allow this step (any more)."""

    code = "illegal_transition"


class RuleViolation(SignalingError):
    """A rule of remote medical practice forbids this (consent, practice years)."""

    code = "rule_violation"


class AuthFailed(SignalingError):
    """Wrong username or password (the message never says which)."""

    code = "login_failed"


class Locked(SignalingError):
    """Too many failed logins; the account is locked for a while."""

    code = "account_locked"


class Unauthenticated(SignalingError):
    """No valid session."""

    code = "unauthenticated"
