"""Errors of the control plane, each with a stable code.

The codes are the members of ``records.vocab.ErrorCode``; ``web/errors.py`` maps
each code to an HTTP status. Nothing here knows about HTTP.
"""

from __future__ import annotations

from records.vocab import ErrorCode


class SignalingError(Exception):
    """Root of the control-plane errors.

    A class gives the default code; a raise site may name a more precise one
    (``Forbidden(..., code=ErrorCode.NOT_PARTICIPANT)``); mypy holds every code
    to the vocabulary.
    """

    code: ErrorCode = ErrorCode.ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields


class NotFound(SignalingError):
    """Does not exist, or the caller may not know that it exists."""

    code = ErrorCode.NOT_FOUND

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        fields: tuple[str, ...] = (),
        probe: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, fields=fields)
        # (object type, id) that was asked for, so the refusal can be audited.
        self.probe = probe


class Invalid(SignalingError):
    """The request names something that cannot be used (the fields say which)."""

    code = ErrorCode.INVALID


class Forbidden(SignalingError):
    """The caller is known but their role or the rules do not allow this."""

    code = ErrorCode.FORBIDDEN


class IllegalTransition(SignalingError):
    """The consultation's state does not allow this step (any more)."""

    code = ErrorCode.ILLEGAL_TRANSITION


class RuleViolation(SignalingError):
    """A rule of remote medical practice forbids this (consent, practice years)."""

    code = ErrorCode.RULE_VIOLATION


class AuthFailed(SignalingError):
    """Wrong username or password (the message never says which)."""

    code = ErrorCode.LOGIN_FAILED


class Locked(SignalingError):
    """Too many failed logins; the account is locked for a while."""

    code = ErrorCode.ACCOUNT_LOCKED


class Unauthenticated(SignalingError):
    """No valid session."""

    code = ErrorCode.UNAUTHENTICATED


class PacsError(SignalingError):
    """The regional PACS could not be used (not configured, down, refusing, slow)."""

    code = ErrorCode.PACS_UNREACHABLE
