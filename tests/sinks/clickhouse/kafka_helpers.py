"""Small helpers for the sink tests against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from radstream.config import Settings
from sinks.clickhouse.service import SinkService
from streams.producer import make_producer, produce


def produce_all(settings: Settings, items: Iterable[tuple[str, str, str, dict[str, Any]]]) -> int:
    """items: (topic, contract, key, record). Returns how many were delivered."""
    producer = make_producer(settings.kafka)
    n = 0
    for topic, contract, key, rec in items:
        produce(producer, topic, contract, key, rec)
        n += 1
        if n % 500 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return n


def produce_raw(settings: Settings, topic: str, key: bytes | None, value: bytes) -> None:
    producer = make_producer(settings.kafka)
    producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def wait_until(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check} (last: {last!r})")


def _partitions(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "probe-partitions"})
    try:
        md = c.list_topics(timeout=10).topics
        return [TopicPartition(t, p) for t in topics for p in sorted(md[t].partitions)]
    finally:
        c.close()


def end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "probe-ends"})
    try:
        out = {}
        for tp in _partitions(settings, topics):
            _, hi = c.get_watermark_offsets(tp, timeout=10)
            out[(tp.topic, tp.partition)] = hi
        return out
    finally:
        c.close()


def committed(settings: Settings, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": group})
    try:
        got = c.committed(_partitions(settings, topics), timeout=10)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in got}
    finally:
        c.close()


@contextmanager
def running_sink(settings: Settings, **kwargs: Any) -> Iterator[SinkService]:
    """The warehouse sink's consumer loop running in a thread (as in the worker); stopped and closed on
    exit. Loop failures are re-raised in the test."""
    service = SinkService(settings.kafka, settings.topics, settings.clickhouse, **kwargs)
    service.start()
    try:
        assert service.opened.wait(60), f"the sink did not open the store: {service.error!r}"
        yield service
    finally:
        service.stop()
    assert service.thread is not None and not service.thread.is_alive(), "sink did not stop"
    if service.error is not None:
        raise service.error
