"""The notices every web process hears on ``tc:all``, whoever writes them.

A web process publishes them through its ``Cluster``; a command run from the
shell (``web/cli_admin.py``) publishes them with a Redis client of its own,
through ``tell_sessions_changed``, without loading the call plane.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signaling.call.owners import PREFIX

if TYPE_CHECKING:  # the client is made by the caller, only with Redis
    from redis.asyncio import Redis


def sessions_changed_notice(sender: str) -> dict[str, Any]:
    """What tells every web process that ``sender`` wrote to the sessions or
    accounts (``signaling.workflow.auth.SESSION_TABLES``): the sessions each keeps
    in memory are read again."""
    return {"op": "sessions_changed", "from": sender}


def close_account_notice(sender: str, account_id: str) -> dict[str, Any]:
    """What tells every web process to hang up the sockets of ``account_id``
    (deactivated, its sessions ended)."""
    return {"op": "close_account", "from": sender, "account_id": account_id}


async def tell_sessions_changed(
    redis: Redis, sender: str, *, closed_accounts: Sequence[str] = ()
) -> None:
    """Publish those notices from outside the web processes (a command run from
    the shell, ``web/cli_admin.py``): the sessions changed, then the accounts
    whose sockets are to be hung up. In that order, on one channel: a page that
    reconnects at once finds its session gone."""
    await redis.publish(PREFIX + "all", json.dumps(sessions_changed_notice(sender)))
    for account_id in closed_accounts:
        notice = close_account_notice(sender, account_id)
        await redis.publish(PREFIX + "all", json.dumps(notice))
