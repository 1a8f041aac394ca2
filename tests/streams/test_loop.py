"""The one consumer loop against the real broker: commit only what is done, retry a failed flush
without committing, hold records until their ticket, dead-letter with the reason, pause while busy,
read a compacted topic whole."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer

from radstream.config import Settings
from streams import serde
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record, Ticket, run_in_thread
from streams.producer import make_producer
from tests.sinks.clickhouse.kafka_helpers import committed, end_offsets, wait_until

pytestmark = pytest.mark.integration


def _produce(settings: Settings, topic: str, values: Sequence[bytes], partition: int = 0) -> None:
    producer = make_producer(settings.kafka)
    for v in values:
        producer.produce(topic, value=v, key=b"k", partition=partition)
    assert producer.flush(30) == 0


def _config(settings: Settings, topic: str, **kw: object) -> LoopConfig:
    return LoopConfig(group_id=f"g{uuid.uuid4().hex[:8]}", topics=[topic], stage="test-loop",
                      dead_letter_topic=settings.topics.dead_letter, poll_s=0.1, **kw)  # type: ignore[arg-type]


@contextmanager
def _running(settings: Settings, config: LoopConfig, handler: Handler) -> Iterator[ConsumerLoop]:
    loop = ConsumerLoop(settings.kafka, config, handler)
    thread, stop = run_in_thread(loop, "test-loop")
    try:
        yield loop
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


@contextmanager
def _second_member(s: Settings, cfg: LoopConfig, loop: ConsumerLoop) -> Iterator[set[int]]:
    """Another member joins the loop's group (every partition of the loop is revoked, some come back to
    it); yields the partitions the loop has once the group is stable again, which it must have."""
    other = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": cfg.group_id,
                      "enable.auto.commit": False, "auto.offset.reset": "latest"})
    try:
        other.subscribe(list(cfg.topics))
        deadline = time.monotonic() + 30
        while not other.assignment():
            assert time.monotonic() < deadline, "the second member got no assignment"
            other.poll(0.2)
        ours = set(range(s.kafka.partitions)) - {tp.partition for tp in other.assignment()}
        assert ours
        wait_until(lambda: loop.assigned.is_set() and {p for _, p in loop._at_end} == ours,
                   what="the loop's new assignment")
        yield ours
    finally:
        other.close()


class Batching(Handler):
    """Buffers values; ``failures`` flushes fail first; values starting with b"bad" are dead-lettered."""

    def __init__(self, failures: int = 0) -> None:
        self.buffer: list[bytes] = []
        self.durable: list[bytes] = []
        self.failures = failures
        self.attempts = 0

    def add(self, records: Sequence[Record], acks: Acks) -> None:
        for r in records:
            if (r.value or b"").startswith(b"bad"):
                acks.dead_letter(r, "bad value")
            else:
                self.buffer.append(r.value or b"")

    def due(self) -> float | None:
        return time.monotonic() if self.buffer else None

    def flush(self) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError(f"store down (attempt {self.attempts})")
        self.durable += self.buffer
        self.buffer = []

    def abandon(self) -> None:
        self.buffer = []


def test_a_failing_flush_commits_nothing_then_everything_once_it_succeeds(topic_settings: Settings) -> None:
    s, topic = topic_settings, topic_settings.topics.reports
    _produce(s, topic, [b"a", b"b", b"c"])
    handler = Batching(failures=3)
    cfg = _config(s, topic)
    with _running(s, cfg, handler) as loop:
        wait_until(lambda: loop.stats.failed_attempts >= 2, what="failed flushes")
        assert committed(s, cfg.group_id, [topic]).get((topic, 0), 0) == 0
        assert handler.durable == []
        wait_until(lambda: committed(s, cfg.group_id, [topic]) == end_offsets(s, [topic]), what="commit")
        assert handler.durable == [b"a", b"b", b"c"]
        assert "store down" in loop.stats.last_error


class FailsAtStop(Batching):
    """Flushes only when the loop stops (``due`` says an hour from now), and that last flush fails first."""

    def due(self) -> float | None:
        return time.monotonic() + 3600 if self.buffer else None

    def full(self) -> bool:
        return False


def test_the_last_flush_at_stop_retries_within_its_budget(topic_settings: Settings) -> None:
    s, topic = topic_settings, topic_settings.topics.reports
    _produce(s, topic, [b"a", b"b"])
    handler = FailsAtStop(failures=2)
    cfg = _config(s, topic, final_flush_s=10.0)
    with _running(s, cfg, handler):
        wait_until(lambda: len(handler.buffer) == 2, what="records taken")
        assert handler.attempts == 0
    assert (handler.attempts, handler.durable) == (3, [b"a", b"b"])
    assert committed(s, cfg.group_id, [topic]) == end_offsets(s, [topic])


def test_held_records_are_committed_only_up_to_the_first_open_ticket(topic_settings: Settings) -> None:
    s, topic = topic_settings, topic_settings.topics.reports
    _produce(s, topic, [b"0", b"1", b"2", b"3"])
    tickets: dict[bytes, Ticket] = {}

    class Holding(Handler):
        def add(self, records: Sequence[Record], acks: Acks) -> None:
            for r in records:
                if r.value != b"0":  # 0 is done at the next flush; the others wait for their ticket
                    tickets[r.value or b""] = acks.hold(r)

    cfg = _config(s, topic)
    with _running(s, cfg, Holding()) as loop:
        wait_until(lambda: len(tickets) == 3, what="records held")
        wait_until(lambda: committed(s, cfg.group_id, [topic]).get((topic, 0)) == 1, what="first commit")
        tickets[b"2"].done()  # out of order: 1 is still open, so nothing more is committable
        tickets[b"3"].done()
        time.sleep(0.5)
        assert committed(s, cfg.group_id, [topic])[(topic, 0)] == 1
        assert loop.outstanding() == 1
        tickets[b"1"].done()
        wait_until(lambda: committed(s, cfg.group_id, [topic])[(topic, 0)] == 4, what="all done")
        assert loop.outstanding() == 0


def test_rejected_records_go_to_the_dead_letter_topic_with_the_reason_and_the_stream_goes_on(
        topic_settings: Settings) -> None:
    s, topic = topic_settings, topic_settings.topics.reports
    _produce(s, topic, [b"ok1", b"bad-bytes", b"ok2"])
    handler = Batching()
    cfg = _config(s, topic)
    with _running(s, cfg, handler) as loop:
        wait_until(lambda: committed(s, cfg.group_id, [topic]) == end_offsets(s, [topic]), what="commit")
        assert handler.durable == [b"ok1", b"ok2"] and loop.stats.dead_letters == 1
    dead: list[dict[str, object]] = []

    class Collect(Handler):
        def add(self, records: Sequence[Record], acks: Acks) -> None:
            dead.extend(serde.decode("dead_letter", r.value) for r in records)

    with _running(s, _config(s, s.topics.dead_letter), Collect()):
        wait_until(lambda: dead, what="the dead letter")
    (letter,) = dead
    assert letter["stage"] == "test-loop" and letter["error"] == "bad value"
    assert letter["value"] == b"bad-bytes" and letter["original_topic"] == topic and letter["offset"] == 1


def test_nothing_is_fetched_while_the_handler_is_busy(topic_settings: Settings) -> None:
    s, topic = topic_settings, topic_settings.topics.reports
    got: list[bytes] = []
    busy = threading.Event()

    class Busy(Handler):
        def add(self, records: Sequence[Record], acks: Acks) -> None:
            got.extend(r.value or b"" for r in records)
            busy.set()  # full after the first batch

        def busy(self) -> bool:
            return busy.is_set()

    cfg = _config(s, topic)
    with _running(s, cfg, Busy()) as loop:
        wait_until(loop.assigned.is_set, what="assignment")
        _produce(s, topic, [b"first"])
        wait_until(lambda: got, what="first record")
        time.sleep(0.5)  # the loop pauses
        _produce(s, topic, [b"second"])
        time.sleep(1.0)
        assert got == [b"first"]
        assert loop.stats.pauses >= 1  # busy longer than pause_after_s
        busy.clear()
        wait_until(lambda: got == [b"first", b"second"], what="resumed")


def test_a_partition_paused_when_it_was_revoked_is_fetched_again_when_it_comes_back(
        topic_settings: Settings) -> None:
    """librdkafka keeps a partition's pause through a revoke and its re-assignment to the same consumer.
    The handler here, like the NLP agent, is busy while it holds work and finishes that work in
    ``drain`` on the revoke, so the loop is not busy after the rebalance: a partition it paused before
    and got back must be fetched again (it was not: a scaled-out NLP worker left reports without
    findings after another worker died)."""
    s, topic = topic_settings, topic_settings.topics.reports
    got: list[tuple[int, bytes]] = []
    drained = threading.Event()

    class Nlpish(Handler):
        """Busy from its first record until the revoke's drain finishes its work; not busy after it
        (a record delivered again after the rebalance keeps it busy only for a moment in the NLP agent)."""

        def add(self, records: Sequence[Record], acks: Acks) -> None:
            got.extend((r.partition, r.value or b"") for r in records)

        def busy(self) -> bool:
            return bool(got) and not drained.is_set()

        def drain(self, partitions: Sequence[tuple[str, int]], timeout_s: float) -> None:
            drained.set()

    cfg = _config(s, topic, pause_after_s=0.3)
    partitions = set(range(s.kafka.partitions))
    assert len(partitions) >= 2
    with _running(s, cfg, Nlpish()) as loop:
        wait_until(loop.assigned.is_set, what="assignment")
        for p in partitions:
            _produce(s, topic, [b"first"], partition=p)
        wait_until(lambda: loop.stats.pauses >= 1, what="the busy loop paused")
        # a second member: every partition of the loop is revoked, some come back to it
        with _second_member(s, cfg, loop) as ours:
            assert drained.is_set()
            for p in ours:
                _produce(s, topic, [b"second"], partition=p)
            wait_until(lambda: {p for p, v in got if v == b"second"} == ours, timeout=20,
                       what="records of the partitions that came back")


def test_a_rebalance_during_a_failing_flush_fetches_nothing_more_until_the_flush_succeeds(
        topic_settings: Settings) -> None:
    """The store is down and the flush is retried; a second member joins meanwhile. The partitions the
    loop gets back must stay paused too, else the handler buffers the stream for the whole outage."""
    s, topic = topic_settings, topic_settings.topics.reports
    handler = Batching(failures=10**6)  # the store is down until the test says otherwise
    cfg = _config(s, topic)
    partitions = set(range(s.kafka.partitions))
    with _running(s, cfg, handler) as loop:
        wait_until(loop.assigned.is_set, what="assignment")
        for p in partitions:
            _produce(s, topic, [b"first"], partition=p)
        # retried with backoff: from the sixth failure on, 6.4 s and then 10 s between attempts
        wait_until(lambda: loop.stats.failed_attempts >= 6, what="failed flushes")
        with _second_member(s, cfg, loop) as ours:
            for p in ours:
                _produce(s, topic, [b"second"] * 5, partition=p)
            time.sleep(3)  # within the wait for the next attempt: nothing new is taken meanwhile
            assert b"second" not in handler.buffer
            handler.failures = 0  # the store is back
            wait_until(lambda: handler.durable.count(b"second") == 5 * len(ours), timeout=30,
                       what="the records after the outage")


def test_a_short_busy_spell_is_waited_out_without_pausing(topic_settings: Settings) -> None:
    """librdkafka's fetcher notices a resume only at its next wake-up (up to a second): a handler that
    is busy for a moment after each batch must not pay that on every batch."""
    s, topic = topic_settings, topic_settings.topics.reports
    got: list[bytes] = []
    until = [0.0]

    class Briefly(Handler):
        def add(self, records: Sequence[Record], acks: Acks) -> None:
            got.extend(r.value or b"" for r in records)
            until[0] = time.monotonic() + 0.1

        def busy(self) -> bool:
            return time.monotonic() < until[0]

    cfg = _config(s, topic)
    with _running(s, cfg, Briefly()) as loop:
        wait_until(loop.assigned.is_set, what="assignment")
        for i in range(10):
            _produce(s, topic, [b"%d" % i])
            time.sleep(0.05)
        wait_until(lambda: len(got) == 10, what="every record")
        assert loop.stats.pauses == 0
    assert got == [b"%d" % i for i in range(10)]


def test_a_replaying_loop_reads_the_topic_whole_and_says_when_it_is_loaded(topic_settings: Settings) -> None:
    s, topic = topic_settings, topic_settings.topics.cohort_watches
    seen: list[bytes] = []

    class Collect(Handler):
        def add(self, records: Sequence[Record], acks: Acks) -> None:
            seen.extend(r.value or b"" for r in records)

    with _running(s, _config(s, topic, replay=True), Collect()) as loop:  # an empty topic is loaded too
        assert loop.caught_up.wait(20)
    _produce(s, topic, [b"w1", b"w2"])
    with _running(s, _config(s, topic, replay=True), Collect()) as loop:
        assert loop.caught_up.wait(20)
        assert seen == [b"w1", b"w2"]


def test_a_fenced_static_member_joins_again_with_a_new_consumer_and_the_stream_goes_on(
        topic_settings: Settings) -> None:
    """Another member taking over the loop's ``group.instance.id`` (as the broker does to the loop itself
    when the group coordinator moves during a broker failure) is fatal to a librdkafka consumer: the
    loop replaces its consumer, and records produced after are processed."""
    s, topic = topic_settings, topic_settings.topics.reports
    handler = Batching()
    instance = f"inst-{uuid.uuid4().hex[:8]}"
    cfg = _config(s, topic, conf={"group.instance.id": instance})
    with _running(s, cfg, handler) as loop:
        wait_until(loop.assigned.is_set, what="assignment")
        _produce(s, topic, [b"a", b"b"])
        wait_until(lambda: handler.durable == [b"a", b"b"], what="first records")
        intruder = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": cfg.group_id,
                             "group.instance.id": instance, "session.timeout.ms": 10_000})
        intruder.subscribe([topic])
        deadline = time.monotonic() + 30
        while not intruder.assignment():
            assert time.monotonic() < deadline, "the second member got no assignment"
            intruder.poll(0.2)
        intruder.close()
        wait_until(lambda: loop.stats.consumer_restarts >= 1, what="the loop's new consumer")
        wait_until(loop.assigned.is_set, what="assignment of the new consumer")
        _produce(s, topic, [b"c"])
        wait_until(lambda: b"c" in handler.durable, what="a record after the fencing")
        wait_until(lambda: committed(s, cfg.group_id, [topic]) == end_offsets(s, [topic]), what="commit")
    assert sorted(set(handler.durable)) == [b"a", b"b", b"c"]
