"""Rows through Redis: a forwarded socket's actor and a pushed consultation as JSON.

A forwarded socket's first frame carries who acts (``actor_to_json``), so the
room's owner acts for the right account; a push carries the consultation's ids
and states, which decide who may see it (``consultation_for_audience``: without
the reason or question, which stay out of Redis).
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import date, datetime
from typing import Any, TypeVar, cast

from records.models import Account, Consultation, Row
from signaling.workflow.base import Actor

R = TypeVar("R", bound=Row)


def row_to_json(row: Row) -> dict[str, Any]:
    """A typed row as JSON values (dates in ISO form, sets as lists)."""
    out: dict[str, Any] = {}
    for f in fields(cast(Any, row)):
        value = getattr(row, f.name)
        if isinstance(value, date | datetime):
            value = value.isoformat()
        elif isinstance(value, frozenset):
            value = sorted(value)
        out[f.name] = value
    return out


def row_from_json(cls: type[R], data: dict[str, Any]) -> R:
    """The inverse of ``row_to_json`` for the row class ``cls``."""
    values: dict[str, Any] = {}
    for f in fields(cast(Any, cls)):
        if f.name not in data:
            continue
        value = data[f.name]
        kind = str(f.type)
        if value is not None and "datetime" in kind:
            value = datetime.fromisoformat(value)
        elif value is not None and "date" in kind:
            value = date.fromisoformat(value)
        elif "frozenset" in kind:
            value = frozenset(value)
        values[f.name] = value
    return cls(**values)


def actor_to_json(actor: Actor) -> str:
    """Who sends a forwarded socket's frames."""
    return json.dumps(
        {
            "account": row_to_json(actor.account),
            "client_addr": actor.client_addr,
            "session": actor.session,
        }
    )


def actor_from_json(text: str) -> Actor:
    """The inverse of ``actor_to_json``."""
    data = json.loads(text)
    return Actor(
        account=row_from_json(Account, data["account"]),
        client_addr=data["client_addr"],
        session=data["session"],
    )


def consultation_for_audience(consultation: Consultation) -> dict[str, Any]:
    """What decides who may see a consultation, without the patient's story."""
    data = row_to_json(consultation)
    data["reason"] = data["question"] = ""
    return data
