"""The consultation lifecycle as an explicit state machine.

::

    requested --accept/assign--> accepted --go_live--> live --end--> ended --sign--> signed
        |  \\--escalate--> escalated --accept/assign--^                    \\--refer--> referred
        |--decline--> declined   (also from escalated)
        \\--cancel--> cancelled   (also from escalated and accepted)
    accepted --assign--> accepted (a coordinator reassigns)
"""

from __future__ import annotations

from enum import StrEnum

from records.vocab import ConsultationState, ErrorCode
from signaling.errors import IllegalTransition

# The states are part of the domain's vocabulary (stored, labelled, checked by the
# database); the transitions between them are this module's business.
State = ConsultationState


class Action(StrEnum):
    """What can happen to a consultation."""

    ACCEPT = "accept"
    ASSIGN = "assign"
    DECLINE = "decline"
    CANCEL = "cancel"
    ESCALATE = "escalate"
    GO_LIVE = "go_live"
    END = "end"
    SIGN = "sign"
    REFER = "refer"


TRANSITIONS: dict[tuple[State, Action], State] = {
    (State.REQUESTED, Action.ACCEPT): State.ACCEPTED,
    (State.REQUESTED, Action.ASSIGN): State.ACCEPTED,
    (State.REQUESTED, Action.DECLINE): State.DECLINED,
    (State.REQUESTED, Action.CANCEL): State.CANCELLED,
    (State.REQUESTED, Action.ESCALATE): State.ESCALATED,
    (State.ESCALATED, Action.ACCEPT): State.ACCEPTED,
    (State.ESCALATED, Action.ASSIGN): State.ACCEPTED,
    (State.ESCALATED, Action.DECLINE): State.DECLINED,
    (State.ESCALATED, Action.CANCEL): State.CANCELLED,
    (State.ACCEPTED, Action.ASSIGN): State.ACCEPTED,
    (State.ACCEPTED, Action.CANCEL): State.CANCELLED,
    (State.ACCEPTED, Action.GO_LIVE): State.LIVE,
    (State.LIVE, Action.END): State.ENDED,
    (State.ENDED, Action.SIGN): State.SIGNED,
    (State.ENDED, Action.REFER): State.REFERRED,
}

TERMINAL = frozenset({State.SIGNED, State.REFERRED, State.CANCELLED, State.DECLINED})
WAITING = (State.REQUESTED, State.ESCALATED)


def next_state(state: str, action: Action) -> State:
    """The state ``action`` leads to from ``state``.

    Raises:
        IllegalTransition: the action is not allowed in that state.
    """
    try:
        return TRANSITIONS[(State(state), action)]
    except (KeyError, ValueError):
        raise IllegalTransition(
            f"cannot {action.value} a consultation that is {state}",
            code=ErrorCode.ILLEGAL_TRANSITION,
        ) from None


def sources(action: Action) -> frozenset[State]:
    """Every state from which ``action`` is allowed."""
    return frozenset(s for (s, a) in TRANSITIONS if a is action)
