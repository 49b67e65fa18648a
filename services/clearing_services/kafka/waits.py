"""How long the services' Kafka calls wait where no setting says, in seconds.

Why one module: the same metadata request waited ``timeout=10`` in a dozen places
and the same consume loop ``timeout=0.5`` in six, bare numbers whose unit the reader
had to know (seconds for confluent-kafka, milliseconds in its configuration).
"""

from __future__ import annotations

# One metadata or offsets request to the broker: list_topics, offsets_for_times,
# committed offsets, an admin client's future.
METADATA_TIMEOUT_SECONDS = 10.0

# One consume() call of a loop that looks at its stop flag or deadline between calls:
# how soon it notices, not how long it may run.
CONSUME_WAIT_SECONDS = 0.5

# A producer whose local queue is full: how long to serve deliveries before trying
# to hand it the record again.
QUEUE_DRAIN_SECONDS = 0.1

# A partition whose leader is moving or not yet elected (a new topic, a broker
# restart): how long to wait before asking again.
LEADER_RETRY_SECONDS = 0.2
