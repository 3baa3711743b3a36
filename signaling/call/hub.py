"""Presence and server push: who is connected, and telling them what changed.

A pushed message carries identifiers and states only, never patient data: the
page fetches the details through the API, where access is checked and audited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from records.models import Account, Consultation
from records.vocab import Role
from signaling.call.outbound import (
    ConsultationChanged,
    ConsultationOverdue,
    ServerMessage,
    encode,
)
from signaling.workflow import policy

log = logging.getLogger(__name__)


class Channel(Protocol):
    """One connected client (a browser tab's WebSocket, or a test's fake)."""

    async def send(self, message: ServerMessage) -> None:
        """Deliver one message (``outbound.encode`` gives its text); raise if the client is gone."""
        ...

    async def send_text(self, text: str) -> None:
        """Deliver one message already encoded (one sent to many is encoded once)."""
        ...


@runtime_checkable
class Closable(Protocol):
    """A channel the server can hang up (a WebSocket; a test's fake may not be)."""

    async def close(self, reason: str) -> None:
        """End the connection, telling the client ``reason``."""
        ...


class Hub:
    """Connected channels, keyed by the account behind them."""

    def __init__(self) -> None:
        """Start with nobody connected."""
        self._channels: dict[Channel, Account] = {}

    def subscribe(self, account: Account, channel: Channel) -> None:
        """Start pushing to ``channel`` what ``account`` may see."""
        self._channels[channel] = account

    def unsubscribe(self, channel: Channel) -> None:
        """Stop pushing to ``channel``."""
        self._channels.pop(channel, None)

    def __len__(self) -> int:
        return len(self._channels)

    async def close_account(self, account_id: str) -> int:
        """Hang up every channel of ``account_id`` at once (the account was
        deactivated or its password reset); how many there were.

        This is the administration service's ``AccountSockets`` port. Each
        channel's own handler then leaves its call as after any drop.
        """
        targets = [ch for ch, acc in self._channels.items() if acc.id == account_id]
        for ch in targets:
            self.unsubscribe(ch)
        await asyncio.gather(
            *(ch.close("account deactivated") for ch in targets if isinstance(ch, Closable)),
            return_exceptions=True,
        )
        return len(targets)

    async def publish(self, message: ServerMessage, audience: Callable[[Account], bool]) -> int:
        """Send ``message`` to every channel whose account is in ``audience``.

        Returns:
            How many channels it was delivered to. A channel whose send fails is
            dropped (its socket handler cleans up the rest).
        """
        targets = [ch for ch, acc in self._channels.items() if audience(acc)]
        text = encode(message)
        results = await asyncio.gather(
            *(ch.send_text(text) for ch in targets), return_exceptions=True
        )
        delivered = 0
        for ch, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                log.info("push failed, dropping channel: %s", type(result).__name__)
                self.unsubscribe(ch)
            else:
                delivered += 1
        return delivered


def consultation_changed(consultation: Consultation) -> ConsultationChanged:
    """The push message for a consultation whose state or assignment changed."""
    return ConsultationChanged(
        id=consultation.id,
        state=consultation.state,
        escalated=consultation.escalated,
        department_id=consultation.department_id,
    )


# Told of every committed change of a consultation (the call plane is one).
ChangeListener = Callable[[Consultation], Awaitable[None]]


class ConsultationPushes:
    """The workflow's ``Notifier``: a change goes to whoever may see the consultation,
    and to the listeners in this process (the call plane drops members who are no
    longer participants)."""

    def __init__(self, hub: Hub) -> None:
        """Push through ``hub``."""
        self.hub = hub
        self.listeners: list[ChangeListener] = []

    def listen(self, listener: ChangeListener) -> None:
        """Tell ``listener`` of every change, before the push goes out."""
        self.listeners.append(listener)

    async def consultation_changed(self, consultation: Consultation) -> None:
        """Tell the listeners, then push ``consultation.changed`` to every channel
        whose account may see it.

        The change is committed already: a listener that fails is logged and the
        others (and the push) still go ahead.
        """
        for listener in self.listeners:
            try:
                await listener(consultation)
            except Exception:
                log.exception("consultation=%s change listener failed", consultation.id)
        await self.hub.publish(
            consultation_changed(consultation), lambda acc: policy.can_see(acc, consultation)
        )

    async def consultation_overdue(self, consultation: Consultation, deadline: str) -> None:
        """Push ``consultation.overdue`` to the coordinators who may see it (the
        others learn of it from the ``consultation.changed`` that goes with it)."""
        await self.hub.publish(
            ConsultationOverdue(
                id=consultation.id,
                state=consultation.state,
                department_id=consultation.department_id,
                deadline=deadline,
            ),
            lambda acc: acc.role == Role.COORDINATOR and policy.can_see(acc, consultation),
        )
