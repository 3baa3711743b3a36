"""What the call plane needs from the rest of ``signaling``, as narrow Protocols.

``Calls`` depends on these and not on the services that implement them, so the
workflow can be split and rewired without touching the call plane. Each
Protocol lists exactly the methods ``Calls`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from records.clock import Clock
from records.models import Consultation, Event, Institution
from records.vocab import EventKind
from signaling.workflow.base import Actor
from signaling.workflow.recording import Listener

# Told (consultation id, participant id, state, timeline event or None, and
# whether the leg is kept and why) when a recording leg ends: stopped,
# interrupted (ended by itself) or failed; the event (``recording_interrupted``)
# says a participant of a live call is not recorded. See the workflow's Listener.
RecordingListener = Listener


class CallWorkflow(Protocol):
    """The consultation workflow as the call sees it: access, timeline, states."""

    @property
    def clock(self) -> Clock:
        """The time TURN credentials are issued at."""
        ...

    async def call_access(self, actor: Actor, consultation_id: str) -> Consultation:
        """The consultation if ``actor`` may join its call now; raise otherwise.

        Raises:
            SignalingError: not visible, not a participant, not joinable, no consent.
        """
        ...

    async def events_after(self, actor: Actor, consultation_id: str, after_id: int) -> list[Event]:
        """Timeline events after ``after_id`` (what a returning page missed); audited."""
        ...

    async def call_event(
        self,
        actor: Actor,
        consultation_id: str,
        kind: EventKind,
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Store a call event (joined, rejoined, left, chat) on the timeline."""
        ...

    async def document_event(
        self,
        actor: Actor,
        consultation_id: str,
        document_id: str,
        kind: EventKind,
        page: int | None,
    ) -> Event:
        """Store that ``actor`` opened or showed a document during the call."""
        ...

    async def go_live(self, actor: Actor, consultation_id: str) -> Consultation:
        """Move an accepted consultation to live (two participants are in the call)."""
        ...

    async def end(self, actor: Actor, consultation_id: str) -> Consultation:
        """End the consultation's call for everyone."""
        ...


class CallVerifier(Protocol):
    """Real-name re-verification as the call sees it (the second factor)."""

    async def require_verified(self, actor: Actor) -> None:
        """Raise ``verification_required`` when ``actor`` must confirm their identity first.

        Raises:
            SignalingError: the identity check of the actor's session is too old.
        """
        ...


class CallDirectory(Protocol):
    """The directory as the call sees it."""

    async def institutions(self) -> list[Institution]:
        """Every institution (their names label the tiles)."""
        ...


class CallRecording(Protocol):
    """The recording service as the call sees it: one leg per recorded participant."""

    listener: RecordingListener | None
    # Whether (consultation id, participant id) is in that call now.
    present: Callable[[str, str], bool] | None

    async def allowed(self, consultation_id: str) -> bool:
        """Whether the patient's consent covers recording."""
        ...

    def is_recording(self, consultation_id: str, participant_id: str) -> bool:
        """Whether a leg of this participant runs."""
        ...

    def has_leg(self, consultation_id: str, participant_id: str) -> bool:
        """Whether a leg of this participant is connected (recording, or kept
        without a file because it carries the live call)."""
        ...

    def halted(self, consultation_id: str, participant_id: str) -> str | None:
        """Why a participant's leg is kept without a file (``disk_full``,
        ``write_failed``), or None when it is not."""
        ...

    async def start(self, actor: Actor, consultation_id: str, offer_sdp: str) -> str:
        """Answer a participant's recording offer; returns the answer SDP."""
        ...

    async def candidate(
        self,
        actor: Actor,
        consultation_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled candidate for the participant's recording leg."""
        ...

    async def stop(self, consultation_id: str, participant_id: str) -> object:
        """Stop and finish a participant's leg, if one runs."""
        ...

    async def stop_all(self, consultation_id: str, ended_by: str | None = None) -> object:
        """Finish every leg of a consultation (the call ended, by ``ended_by``'s page)."""
        ...

    async def relay_offer(self, consultation_id: str, source_id: str, viewer_id: str) -> str | None:
        """Open the relay of ``source_id``'s leg to ``viewer_id``: the offer SDP
        (None: no leg of the source runs)."""
        ...

    async def relay_answer(
        self, consultation_id: str, source_id: str, viewer_id: str, answer_sdp: str
    ) -> bool:
        """The viewer's answer for a relay; False if none was offered to it."""
        ...

    async def relay_close(self, consultation_id: str, viewer_id: str) -> None:
        """Close every relay to ``viewer_id`` (they left the call)."""
        ...
