"""The consumer loop's metrics on the real broker: lag per partition follows the committed offsets (held
records keep it up, their tickets bring it to 0), records in, flush time and dead letters by reason."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from radstream.config import Settings
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record, Ticket, run_in_thread
from streams.producer import make_producer
from tests.sinks.clickhouse.kafka_helpers import wait_until

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


class Holding(Handler):
    """Holds every record until the test says so; values starting with b"bad" are dead-lettered."""

    def __init__(self) -> None:
        self.tickets: list[Ticket] = []
        self.lock = threading.Lock()

    def add(self, records: Sequence[Record], acks: Acks) -> None:
        for r in records:
            if (r.value or b"").startswith(b"bad"):
                acks.dead_letter(r, ValueError("bad value"))
            else:
                with self.lock:
                    self.tickets.append(acks.hold(r))

    def release(self) -> None:
        with self.lock:
            tickets, self.tickets = self.tickets, []
        for t in tickets:
            t.done()


def test_lag_per_partition_follows_the_commits(topic_settings: Settings) -> None:
    s = topic_settings
    topic, group, stage = s.topics.reports, f"g{uuid.uuid4().hex[:8]}", f"lag-test-{uuid.uuid4().hex[:6]}"
    producer = make_producer(s.kafka)
    for partition, n in ((0, 7), (1, 3)):
        for i in range(n):
            producer.produce(topic, value=b"v%d" % i, key=b"k", partition=partition)
    producer.produce(topic, value=b"bad one", key=b"k", partition=1)
    assert producer.flush(30) == 0

    handler = Holding()
    loop = ConsumerLoop(s.kafka, LoopConfig(group_id=group, topics=[topic], stage=stage,
                                            dead_letter_topic=s.topics.dead_letter, poll_s=0.1), handler)
    assert sample("radstream_records_consumed_total", stage=stage, topic=topic) == 0  # at 0 from the start
    thread, stop = run_in_thread(loop, "lag-test")
    try:
        def lag(partition: int) -> float | None:
            return sample("radstream_consumer_lag_messages", group=group, topic=topic,
                          partition=str(partition))

        # everything was read, nothing committed (held): the lag is the partition's length; the dead letter
        # (done once delivered) is committable, but it sits behind the held records of its partition
        wait_until(lambda: lag(0) == 7 and lag(1) == 4, timeout=60, what="lag 7 and 4")
        assert sample("radstream_records_consumed_total", stage=stage, topic=topic) == 11
        assert sample("radstream_dead_letters_total", stage=stage, reason="ValueError") == 1
        assert (sample("radstream_loop_flush_duration_seconds_count", stage=stage) or 0) >= 1

        handler.release()
        wait_until(lambda: lag(0) == 0 and lag(1) == 0, timeout=60, what="lag back to 0")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert lag(0) is None and lag(1) is None  # a stopped loop's partitions are another member's to report
