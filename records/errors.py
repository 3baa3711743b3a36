"""Errors raised by the records layer, each with a stable code (``ErrorCode``)."""

from __future__ import annotations

from collections.abc import Iterable

from records.vocab import ErrorCode


class RecordsError(Exception):
    """Root of the records errors."""

    code: ErrorCode = ErrorCode.RECORDS_ERROR

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class NotFound(RecordsError):
    """The row does not exist (or the caller may not know that it does)."""

    code = ErrorCode.NOT_FOUND


class Conflict(RecordsError):
    """The write collides with what is stored (a unique key, a changed state)."""

    code = ErrorCode.CONFLICT


class AuditChainBroken(RecordsError):
    """The audit log's hash chain does not verify."""

    code = ErrorCode.AUDIT_CHAIN_BROKEN


class StorageFull(RecordsError):
    """The database's disk is full: nothing can be written, so nothing that must
    leave a trace (an audit entry, an event) can be done until there is room."""

    code = ErrorCode.STORAGE_FULL


class InvalidFhir(RecordsError):
    """A FHIR Bundle that cannot be imported; nothing of it is stored.

    ``fields`` holds the path of each fault, as ``entry[2].resource.code.coding``
    (each once, in the order found).
    """

    code = ErrorCode.INVALID_FHIR

    def __init__(self, message: str, fields: Iterable[str]) -> None:
        """Build the error.

        Args:
            message: what is wrong, for people.
            fields: the paths at fault; repeats are dropped.
        """
        super().__init__(message, fields=tuple(dict.fromkeys(fields)))


class UnreadableContent(RecordsError):
    """An uploaded file is not a supported kind, its parser refuses it, or it
    would cost more than the limits allow to read (``records.limits``)."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        """Build the error with the code that says which of these it is."""
        super().__init__(message, fields=("body",))
        self.code = code
