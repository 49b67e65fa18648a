"""Acknowledgements as a state machine per instruction: SETTLED and FAILED are final,
an identical repeat changes nothing, a contradiction of a final state is refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.cycle.acks import AckOutcome, AckProblem, Transition, apply_ack, transition
from clearing_core.cycle.ledger import rehearse_close
from tests.core.cycle.test_cycle import T0, context
from tests.support.events import settlement_ack

STATES = ("PENDING", "SETTLED", "FAILED")


def batch() -> dict[str, Any]:
    outcome = rehearse_close(context(), T0)
    assert outcome is not None
    return dict(outcome.batches[0])


def ack(b: dict[str, Any], status: str) -> dict[str, Any]:
    """The bank's word on the batch's first instruction."""
    return settlement_ack(b, b["instructions"][0], status, at=T0)


@pytest.mark.parametrize(("current", "status", "expected"), [
    (None, "SETTLED", Transition.APPLY), (None, "FAILED", Transition.APPLY),
    ("PENDING", "SETTLED", Transition.APPLY), ("PENDING", "PENDING", Transition.REPEAT),
    ("SETTLED", "SETTLED", Transition.REPEAT), ("FAILED", "FAILED", Transition.REPEAT),
    ("SETTLED", "FAILED", Transition.CONTRADICTS), ("FAILED", "SETTLED", Transition.CONTRADICTS),
    ("SETTLED", "PENDING", Transition.STALE), ("FAILED", "PENDING", Transition.STALE),
    (None, "PENDING", Transition.APPLY),
])  # fmt: skip
def test_the_transitions(current: str | None, status: str, expected: Transition) -> None:
    assert transition(current, status) is expected


@given(st.lists(st.sampled_from(STATES), max_size=12))
def test_a_final_state_never_changes_whatever_follows(statuses: list[str]) -> None:
    """Fold any sequence of acknowledgements: the first final one wins for good."""
    state: str | None = None
    for status in statuses:
        if transition(state, status) is Transition.APPLY:
            state = status
    finals = [s for s in statuses if s != "PENDING"]
    assert state == (finals[0] if finals else ("PENDING" if statuses else None))


def test_a_failure_carries_once_and_a_contradiction_is_refused() -> None:
    b = batch()
    failed = apply_ack(ack(b, "FAILED"), b, None)
    assert isinstance(failed, AckOutcome)
    assert failed.status is not None
    assert failed.status["status"] == "FAILED"
    assert failed.obligation is not None
    assert failed.obligation["amount_minor"] == b["instructions"][0]["amount_minor"]
    assert apply_ack(ack(b, "FAILED"), b, "FAILED") == AckOutcome(None, None)  # a repeat
    refused = apply_ack(ack(b, "FAILED"), b, "SETTLED")  # the payer would pay twice
    assert isinstance(refused, AckProblem)
    assert refused.reason_code == "ACK_CONTRADICTS_FINAL"
    assert "is SETTLED (final)" in refused.message
    settled = apply_ack(ack(b, "SETTLED"), b, None)
    assert isinstance(settled, AckOutcome)
    assert settled.obligation is None
    assert isinstance(apply_ack(ack(b, "SETTLED"), b, "FAILED"), AckProblem)


def test_a_pending_ack_is_recorded_and_a_late_one_after_a_final_state_changes_nothing() -> None:
    """A bank's interim report (ACSP, PDNG) is PENDING: recorded, nothing carried; one
    arriving after the final report (they cross on the wire) is neither applied nor
    refused as a contradiction."""
    b = batch()
    pending = apply_ack(ack(b, "PENDING"), b, None)
    assert isinstance(pending, AckOutcome)
    assert pending.status is not None
    assert (pending.status["status"], pending.obligation) == ("PENDING", None)
    assert apply_ack(ack(b, "PENDING"), b, "SETTLED") == AckOutcome(None, None)
    settled = apply_ack(ack(b, "SETTLED"), b, "PENDING")
    assert isinstance(settled, AckOutcome)
    assert settled.status is not None
    assert settled.status["status"] == "SETTLED"


def test_an_ack_that_does_not_match_its_batch_is_a_problem() -> None:
    b = batch()
    assert apply_ack(ack(b, "SETTLED"), None, None) == AckProblem(
        "UNKNOWN_BATCH", f"batch {b['batch_id']} is not known"
    )
    assert isinstance(apply_ack({**ack(b, "SETTLED"), "rail_id": "x"}, b, None), AckProblem)
    unknown = {**ack(b, "SETTLED"), "instruction_id": "nope"}
    problem = apply_ack(unknown, b, None)
    assert isinstance(problem, AckProblem)
    assert problem.reason_code == "UNKNOWN_INSTRUCTION"
