"""Errors raised by the records layer, each with a stable code."""

from __future__ import annotations

from collections.abc import Iterable


class RecordsError(Exception):
    """Root of the records errors."""

    code = "records_error"

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class NotFound(RecordsError):
    """The row does not exist (or the caller may not know that it does)."""

    code = "not_found"


class Conflict(RecordsError):
    """The write collides with what is stored (a unique key, a changed state)."""

    code = "conflict"


class AuditChainBroken(RecordsError):
    """The audit log's hash chain does not verify."""

    code = "audit_chain_broken"


class InvalidFhir(RecordsError):
    """A FHIR Bundle that cannot be imported; nothing of it is stored.

    ``fields`` holds the path of each fault, as ``entry[2].resource.code.coding``
    (each once, in the order found).
    """

    code = "invalid_fhir"

    def __init__(self, message: str, fields: Iterable[str]) -> None:
        """Build the error.

        Args:
            message: what is wrong, for people.
            fields: the paths at fault; repeats are dropped.
        """
        super().__init__(message, fields=tuple(dict.fromkeys(fields)))
