"""Consuming without batching delay.

``Consumer.consume(n, timeout)`` returns when ``n`` messages are buffered or the timeout has passed
(librdkafka's ``rd_kafka_consume_batch_queue``; confluent-kafka-python issues #407 and #2205): with
fewer than ``n`` messages waiting, a message that arrives during the call waits up to the whole timeout.
Sinks that batch on purpose (the ClickHouse writer, the embedding agent) want that; a worker that should
start on a request at once does not.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def consume_now(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Wait up to ``timeout`` for one message, then return it with whatever else is already buffered
    (at most ``max_messages`` in all); an empty list on timeout."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=0)]
