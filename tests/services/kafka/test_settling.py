"""Reads that must finish ask again while a failover settles, and only then
(``clearing_services.kafka.settling``); the chaos run on three nodes exercises them
against real brokers, these pin down the rule itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from clearing_services.kafka import settling
from clearing_services.kafka.settling import while_settling


def _failing(codes: list[int], answer: str) -> tuple[list[str], Callable[[], str]]:
    calls: list[str] = []

    def attempt() -> str:
        calls.append("attempt")
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return answer

    return calls, attempt


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settling, "LEADER_RETRY_SECONDS", 0.0)


def test_a_timed_out_metadata_request_and_a_moving_leader_are_asked_again() -> None:
    codes = [KafkaError._TIMED_OUT, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._TRANSPORT]
    calls, attempt = _failing(codes, "answer")
    refreshed: list[int] = []
    assert while_settling(attempt, lambda: refreshed.append(1)) == "answer"
    assert len(calls) == 4
    assert len(refreshed) == 3  # fresh metadata before each new try


def test_a_group_coordinator_moving_or_loading_is_asked_again() -> None:
    codes = [KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
             KafkaError.COORDINATOR_NOT_AVAILABLE]  # fmt: skip
    calls, attempt = _failing(codes, "committed")
    assert while_settling(attempt, lambda: None) == "committed"
    assert len(calls) == 4


def test_an_error_settling_does_not_cure_is_raised_at_once() -> None:
    calls, attempt = _failing([KafkaError.TOPIC_AUTHORIZATION_FAILED], "never")
    with pytest.raises(KafkaException) as raised:
        while_settling(attempt, lambda: None)
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert len(calls) == 1


def test_past_its_limit_the_last_error_is_raised() -> None:
    calls, attempt = _failing([KafkaError._TIMED_OUT] * 1000, "never")
    with pytest.raises(KafkaException) as raised:
        while_settling(attempt, lambda: None, timeout_seconds=0.0)
    assert raised.value.args[0].code() == KafkaError._TIMED_OUT
    assert len(calls) == 1  # a limit of 0: the first try only


def test_a_failing_refresh_does_not_end_the_retries() -> None:
    _, attempt = _failing([KafkaError._ALL_BROKERS_DOWN], "answer")

    def refresh() -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    assert while_settling(attempt, refresh) == "answer"
