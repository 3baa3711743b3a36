"""The lifecycle table, checked exhaustively."""

from __future__ import annotations

import pytest

from signaling.errors import IllegalTransition
from signaling.workflow.lifecycle import TERMINAL, TRANSITIONS, Action, State, next_state, sources

EXPECTED = {
    State.REQUESTED: {
        "accept": "accepted",
        "assign": "accepted",
        "decline": "declined",
        "cancel": "cancelled",
        "escalate": "escalated",
    },
    State.ESCALATED: {
        "accept": "accepted",
        "assign": "accepted",
        "decline": "declined",
        "cancel": "cancelled",
    },
    State.ACCEPTED: {"assign": "accepted", "cancel": "cancelled", "go_live": "live"},
    State.LIVE: {"end": "ended"},
    State.ENDED: {"sign": "signed", "refer": "referred"},
    State.SIGNED: {},
    State.REFERRED: {},
    State.CANCELLED: {},
    State.DECLINED: {},
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(Action))
def test_each_pair_is_allowed_or_refused(state: State, action: Action) -> None:
    expected = EXPECTED[state].get(action.value)
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            next_state(state, action)
        assert info.value.code == "illegal_transition"
    else:
        assert next_state(state, action) == expected


def test_terminal_states_have_no_way_out() -> None:
    assert {s for s in State if not EXPECTED[s]} == TERMINAL
    assert all(s not in TERMINAL for s, _ in TRANSITIONS)


def test_sources_are_derived_from_the_table() -> None:
    assert sources(Action.ACCEPT) == {State.REQUESTED, State.ESCALATED}
    assert sources(Action.GO_LIVE) == {State.ACCEPTED}


def test_unknown_state_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        next_state("archived", Action.END)
