"""Is a Kafka broker there? Asked once, before a command that needs one does anything.

Why: with no broker at the address, librdkafka's clients retry quietly until each
call's own timeout, so a command failed after 35-50 s with a traceback, or worse
answered as if all were well (``clearing lag --json`` printed no consumer groups).
One metadata request under a deadline settles it in seconds and names the address.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from clearing_core.errors import ClearingError
from clearing_services.kafka.clients import RDKAFKA_LOGGER, admin_client

EX_UNAVAILABLE = 69  # sysexits.h: "a service is unavailable"
# The broker answered but would not serve this client: wrong credentials or TLS trust.
_REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})


class BrokerUnreachableError(ClearingError):
    """No Kafka broker answered at the address in time, or it refused this client."""

    reason_code = "BROKER_UNREACHABLE"
    exit_code = EX_UNAVAILABLE


def require_broker(bootstrap: str, timeout_seconds: float) -> None:
    """Return once the cluster at ``bootstrap`` answers a metadata request; raise
    ``BrokerUnreachableError`` when it does not within ``timeout_seconds``."""
    errors: list[KafkaError] = []
    # Its failure is told by the error below: librdkafka's own lines only when debugging
    quiet = not RDKAFKA_LOGGER.isEnabledFor(logging.DEBUG)
    admin = admin_client(bootstrap, error_cb=errors.append, **({"log_level": 0} if quiet else {}))
    try:
        if admin.list_topics(timeout=timeout_seconds).brokers:
            return
    except KafkaException:
        pass
    admin.poll(0)  # hands over the errors that the failed attempt queued
    refusal = next((e for e in errors if e.code() in _REFUSALS), None)
    if refusal is not None:
        raise BrokerUnreachableError(
            f"the Kafka broker at {bootstrap} refused this client: {refusal.str()} "
            "(check CLEARING_KAFKA_*)"
        )
    raise BrokerUnreachableError(
        f"no Kafka broker answers at {bootstrap} (within {timeout_seconds:g} s): "
        "start one with `clearing broker start`, or set KAFKA_BOOTSTRAP"
    )
