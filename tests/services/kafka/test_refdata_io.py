"""Reference data through Kafka: a publish is read back identical, and a running
follower swaps in a new version and creates the batch topics of new rails."""

from __future__ import annotations

import threading
import time

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata import load_refdata
from clearing_core.refdata.demo_chain import demo_address
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.refdata import (
    RefdataFollower,
    RefdataHolder,
    load_refdata_from_topics,
    publish_refdata,
)
from clearing_services.kafka.topics import create_topics, load_topic_plan
from tests.conftest import REPO

SOURCE = (REPO / "tests/data/pipeline-refdata.yaml").read_text()


def test_publish_load_and_follow(
    kafka_bootstrap: str, codec: SingleObjectCodec, unique: str
) -> None:
    first = load_refdata(SOURCE)
    create_topics(admin_client(kafka_bootstrap), load_topic_plan().for_rails(first.rails))
    publish_refdata(kafka_bootstrap, codec, first, by=f"t-{unique}")
    loaded = load_refdata_from_topics(kafka_bootstrap, codec, group=f"l-{unique}")
    assert loaded.digest == first.digest

    holder = RefdataHolder(loaded)
    follower = RefdataFollower(kafka_bootstrap, codec, holder)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(2)  # the follower starts at the end of the topics
        rail = f"usd-r{unique}"[:20]
        extra = SOURCE.replace(
            "participants:",
            f"- {{rail_id: {rail}, name: Extra, currency: USD, decimals: 6, model: DIRECT,\n"
            f"   export_format: TOKEN_BATCH, cycle_seconds: 86400, token_symbol: USDX,\n"
            f"   chain: embedded, clearing_house_address: '{demo_address(rail)}'}}\n"
            "participants:",
        )
        second = load_refdata(extra)
        publish_refdata(kafka_bootstrap, codec, second, by=f"t-{unique}")
        deadline = time.monotonic() + 60
        while holder.get().digest != second.digest:
            assert time.monotonic() < deadline, "the follower never saw the new version"
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)
    topics = admin_client(kafka_bootstrap).list_topics(timeout=10).topics
    assert f"clearing.settlement.batches.{rail}" in topics
    # publishing the first version again removes the extra rail with a tombstone
    publish_refdata(kafka_bootstrap, codec, first, by=f"t-{unique}")
    assert (
        load_refdata_from_topics(kafka_bootstrap, codec, group=f"m-{unique}").digest == first.digest
    )
