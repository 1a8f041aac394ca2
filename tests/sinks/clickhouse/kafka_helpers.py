"""Small helpers for the sink tests against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from radstream.config import Settings
from sinks.clickhouse.service import SinkService
from sinks.dicom.projects import Project, publish
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


_COORDINATOR_MOVING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS}


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
    """The group's committed offsets (0 where none)."""
    with CommitProbe(settings, group, topics) as probe:
        return probe()


class CommitProbe:
    """Asks the broker for a group's committed offsets, again and again, over one connection (a probe
    that must not miss a short window cannot pay for a new client each time). A group the broker is
    still loading or moving answers NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS for a moment: asked
    again then."""

    def __init__(self, settings: Settings, group: str, topics: list[str]) -> None:
        self.partitions = _partitions(settings, topics)
        self.consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": group})

    def __enter__(self) -> CommitProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()

    def __call__(self) -> dict[tuple[str, int], int]:
        deadline = time.monotonic() + 30
        while True:
            try:
                got = self.consumer.committed(self.partitions, timeout=10)
                return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in got}
            except KafkaException as exc:
                err = exc.args[0]
                moving = err.retriable() or err.code() in _COORDINATOR_MOVING
                if not moving or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


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


@contextmanager
def sink_knowing(settings: Settings, *registrations: dict[str, Any]) -> Iterator[SinkService]:
    """``running_sink`` once it has stored these project registrations, published to its topic first."""
    for rec in registrations:
        publish(settings.kafka, settings.topics, Project.from_record(rec))
    with running_sink(settings) as sink:
        wait_until(lambda: sink.client.query("SELECT count() FROM projects").result_rows[0][0]
                   == len(registrations), what=", ".join(str(r["project_id"]) for r in registrations))
        yield sink
