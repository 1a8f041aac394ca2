"""The retrieval worker as the handler of the streams layer's consumer loop: what it holds, dead-letters
and skips, its back-pressure, and (with a real Kafka, no PACS) when its records are committed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from radstream.config import Settings
from radstream.text_deid import research_key
from sinks.dicom.config import PacsConfig, ResearchConfig
from sinks.dicom.worker import Request, Worker, WorkerOptions
from streams import serde
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import Record

from .helpers import TEST_PROJECTS, request
from .test_dicom_recovery import wait_for
from .test_dicom_worker import run_worker

TOPIC = TopicsConfig().retrieval_requests


class FakeProducer:
    """Keeps what the worker produces; delivery callbacks run when the test says so."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.undelivered: list[tuple[str, bytes, Any]] = []  # topic, value, on_delivery

    def produce(self, topic: str, value: bytes, key: Any = None, on_delivery: Any = None,
                headers: Any = None) -> None:
        self.sent.append((topic, value))
        self.undelivered.append((topic, value, on_delivery))

    def deliver(self, err: Any = None) -> None:
        """Run the delivery callbacks of what was produced and not delivered yet."""
        todo, self.undelivered = self.undelivered, []
        for topic, value, on_delivery in todo:
            if on_delivery is not None:
                on_delivery(err, FakeMsg(topic, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def states(self) -> list[str]:
        return [serde.decode("retrieval_status", v)["state"] for _, v in self.sent]


class FakeMsg:
    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value


class FakeTicket:
    def __init__(self, record: Record) -> None:
        self.record = record
        self.is_done = False

    def done(self) -> None:
        self.is_done = True


class FakeAcks:
    def __init__(self) -> None:
        self.held: list[FakeTicket] = []
        self.dead: list[tuple[Record, BaseException | str]] = []

    def hold(self, record: Record) -> FakeTicket:
        self.held.append(FakeTicket(record))
        return self.held[-1]

    def dead_letter(self, record: Record, error: BaseException | str, error_type: str | None = None) -> None:
        self.dead.append((record, error))


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    monkeypatch.setattr("sinks.dicom.worker.make_producer", FakeProducer)
    w = Worker(KafkaConfig(bootstrap="127.0.0.1:1"), TopicsConfig(), PacsConfig(),
               ResearchConfig(store_dir=str(tmp_path / "store"), coordination="files"),
               tmp_path, WorkerOptions(max_queued=4))
    w.projects = TEST_PROJECTS  # type: ignore[assignment]  # no broker here: the projects as registered
    return w


def record(offset: int, value: bytes | None = None, partition: int = 0, **fields: Any) -> Record:
    rec = {"request_id": f"r{partition}-{offset}", "project_id": "P1", "requester": "pytest",
           "requester_roles": ["steward"], "accession": "A1", "destination_ae": "RESEARCH",
           "priority": "normal",
           "requested_time": datetime.now(UTC), **fields}
    if value is None:
        value = serde.encode("retrieval_requested", rec)
    return Record(TOPIC, partition, offset, str(rec["request_id"]).encode(), value)


def add(worker: Worker, *records: Record) -> FakeAcks:
    acks = FakeAcks()
    worker.add(list(records), acks)  # type: ignore[arg-type]
    return acks


def test_add_holds_requests_dead_letters_garbage_and_skips_final_ones(worker: Worker) -> None:
    worker.ledger.add("r0-2", "completed")
    acks = add(worker, record(0), record(1, value=b"not avro"), record(2))
    assert [t.record.offset for t in acks.held] == [0]  # the undecodable and the final one are not held
    assert [(r.offset, type(e).__name__) for r, e in acks.dead] == [(1, "SerdeError")]
    assert [r.id for r in worker._pending] == ["r0-0"]
    assert isinstance(worker.producer, FakeProducer) and worker.producer.states() == ["queued"]


def test_queued_is_emitted_before_a_mover_can_take_the_request(worker: Worker) -> None:
    # a mover that took it first would emit "resolving" with an earlier time than "queued" (the
    # timeline, ordered by time, then began with "resolving")
    producer = worker.producer
    assert isinstance(producer, FakeProducer)
    seen: list[int] = []
    produce = producer.produce

    def spy(topic: str, value: bytes, key: Any = None, on_delivery: Any = None, headers: Any = None) -> None:
        seen.append(len(worker._pending))
        produce(topic, value, key, on_delivery, headers)

    producer.produce = spy  # type: ignore[method-assign]
    add(worker, record(0), record(1))
    assert producer.states() == ["queued", "queued"] and seen == [0, 1]


def test_a_held_request_is_done_only_when_its_final_status_was_delivered(worker: Worker) -> None:
    producer = worker.producer
    assert isinstance(producer, FakeProducer)
    acks = add(worker, record(0, destination_ae="STRANGER"))  # refused at once: its final status
    assert producer.states() == ["failed"] and len(acks.held) == 1
    ticket = acks.held[0]
    assert not ticket.is_done and "r0-0" not in worker.ledger.done
    producer.deliver(err="broker down")  # produced again, still not done
    assert not ticket.is_done and producer.states() == ["failed", "failed"]
    producer.deliver()
    assert ticket.is_done and worker.ledger.done["r0-0"] == "failed"
    again = add(worker, record(0, destination_ae="STRANGER"))  # redelivered: skipped, nothing produced
    assert not again.held and len(producer.sent) == 2


def test_a_cancel_finishes_the_pending_request_and_is_not_held(worker: Worker) -> None:
    producer = worker.producer
    assert isinstance(producer, FakeProducer)
    first = add(worker, record(0))
    cancel = add(worker, record(1, request_id="r0-0", action="cancel"))
    assert not cancel.held and not worker._pending
    assert producer.states() == ["queued", "cancelled"]
    producer.deliver()
    assert first.held[0].is_done and worker.ledger.done["r0-0"] == "cancelled"


def test_a_request_redelivered_while_it_runs_here_is_not_queued_again(worker: Worker) -> None:
    producer = worker.producer
    assert isinstance(producer, FakeProducer)
    first = add(worker, record(0))
    [req] = worker._pending
    worker._pending, worker._active = [], {req.id: req}  # a mover took it
    worker.on_revoke([(TOPIC, 0)])  # a rebalance hands the partition back: the record comes again
    again = add(worker, record(0))
    assert not worker._pending and len(again.held) == 1 and req.ticket is again.held[0]
    worker._finish(req, "completed", None, None)
    producer.deliver()
    assert again.held[0].is_done and not first.held[0].is_done  # the new assignment's ticket commits


def test_busy_pauses_at_max_queued_and_resumes_below_half(worker: Worker) -> None:
    def queued(n: int) -> None:
        worker._pending = [Request({"request_id": str(k)}, 0, k, k) for k in range(n)]

    seen = []
    for n in (3, 4, 3, 2, 1, 3):  # max_queued 4: paused from 4 down to 2, fetching again at 1
        queued(n)
        seen.append(worker.busy())
    assert seen == [False, True, True, True, False, False]
    worker.stop_event.set()
    assert worker.busy()  # stopping: nothing more is fetched


def test_revoke_drops_the_pending_requests_of_lost_partitions(worker: Worker) -> None:
    add(worker, record(0, partition=0), record(0, partition=1), record(1, partition=1))
    worker.on_revoke([(TOPIC, 1), ("other-topic", 0)])
    assert [(r.partition, r.offset) for r in worker._pending] == [(0, 0)]


# -- with a real Kafka ----------------------------------------------------------------------------------
def committed(settings: Settings, group: str) -> int:
    """Records committed by ``group`` on the requests topic (summed over partitions)."""
    got = _on_requests(settings, group, lambda c, tps: c.committed(tps, timeout=10))
    return sum(max(tp.offset, 0) for tp in got)


def rewind(settings: Settings, group: str) -> None:
    """Commit offset 0 for ``group`` (no member is active): everything is delivered again."""
    def commit(c: Consumer, tps: list[TopicPartition]) -> None:
        c.commit(offsets=[TopicPartition(tp.topic, tp.partition, 0) for tp in tps], asynchronous=False)

    _on_requests(settings, group, commit)


def _on_requests(settings: Settings, group: str,
                 do: Callable[[Consumer, list[TopicPartition]], Any]) -> Any:
    """``do(consumer, partitions of the requests topic)`` with a consumer of ``group`` that joins nothing."""
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        topic = settings.topics.retrieval_requests
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return do(c, [TopicPartition(topic, p) for p in parts])
    finally:
        c.close()


def test_records_are_committed_after_their_final_status_and_redelivered_final_ones_are_skipped(
        topic_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = f"test-{uuid.uuid4().hex[:8]}"
    s = topic_settings.replace(state_dir=str(tmp_path), kafka={"consumer_group": group},
                               research={"store_dir": str(tmp_path / "store")})
    later: list[Callable[[], None]] = []  # the final statuses' delivery callbacks, run when the test says
    real = Worker._final_delivered

    def deferred(self: Worker, req: Request, state: str) -> Callable[[Any, Any], None]:
        callback = real(self, req, state)
        return lambda err, msg: later.append(lambda: callback(err, msg))

    monkeypatch.setattr(Worker, "_final_delivered", deferred)
    rid = request(s, "A1", destination="STRANGER")  # refused before any DICOM: final at once
    w = Worker(s.kafka, s.topics, s.pacs, s.research, s.state_dir, WorkerOptions(), group_id=group,
               key=research_key(s))
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: later and w.caught_up.is_set())
        w.stop_event.wait(1.5)  # several rounds of the loop, each of which commits what is done
        assert committed(s, group) == 0 and not w.is_idle()
        for callback in later:
            callback()
        wait_for(lambda: committed(s, group) == 1)
        wait_for(w.is_idle)
        assert w.ledger.done == {rid: "failed"}
        request(s, "A1", destination="STRANGER", request_id=rid)  # the same request once more: skipped
        wait_for(lambda: committed(s, group) == 2)
        assert [e["state"] for e in w.log] == ["failed"]
    finally:
        w.stop_event.set()
        thread.join(60)
    assert not thread.is_alive()
    monkeypatch.undo()
    rewind(s, group)  # a restart that lost its commits: both records come again, both are final
    w2 = run_worker(s)
    assert w2.log == [] and committed(s, group) == 2
