"""consume_now against the real broker: it returns on the first message, not at the timeout."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from radstream.config import Settings
from streams.consumer import consume_now
from streams.producer import make_producer

pytestmark = pytest.mark.integration


def _consumer(settings: Settings, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"g{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return c


def _values(msgs: list[Message]) -> list[bytes]:
    assert all(m.error() is None for m in msgs)
    return [m.value() for m in msgs]  # type: ignore[misc]


def test_a_message_arriving_during_the_wait_is_returned_long_before_the_timeout(
        topic_settings: Settings) -> None:
    topic = topic_settings.topics.retrieval_requests
    consumer = _consumer(topic_settings, topic)
    producer = make_producer(topic_settings.kafka)
    try:
        assert consume_now(consumer, 500, 1.0) == []  # nothing there: empty after the timeout

        def later() -> None:
            time.sleep(0.5)
            producer.produce(topic, value=b"one", partition=0)
            producer.flush(10)

        threading.Thread(target=later, daemon=True).start()
        t0 = time.monotonic()
        got = consume_now(consumer, 500, 30.0)
        waited = time.monotonic() - t0
        # consume(500, 30.0) would hold the one message until 500 were there or 30 s had passed
        assert _values(got) == [b"one"] and waited < 15.0
    finally:
        consumer.close()


def test_what_is_buffered_comes_together_in_order_and_at_most_max_messages(topic_settings: Settings) -> None:
    topic = topic_settings.topics.retrieval_requests
    producer = make_producer(topic_settings.kafka)
    for i in range(5):
        producer.produce(topic, value=b"m%d" % i, partition=0)
    producer.flush(10)
    consumer = _consumer(topic_settings, topic)
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(seen) < 5 and time.monotonic() < deadline:
            got = consume_now(consumer, 2, 1.0)
            assert len(got) <= 2
            seen += _values(got)
        assert seen == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert consume_now(consumer, 2, 0.2) == []
    finally:
        consumer.close()
