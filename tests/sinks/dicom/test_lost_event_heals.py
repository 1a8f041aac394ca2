"""With Kafka coordination a lost SCP event heals by a second move: the worker reconciles against the
SCP's ``received_instance`` events, so an instance whose event never reached the broker counts as
missing, and the retry moves that instance (only it) again; the SCP stores it again (the same file,
overwritten) and produces its event anew. This is why the SCP keeps those events out of its outbox
in this mode (``ResearchStore._reread``).

Real Kafka, real Orthanc, our worker and SCP in this process (shared nothing: the expectations and the
outcomes go through the topics). The loss: the SCP hands one instance's first ``received_instance``
event to nobody (what a delivery that timed out in the producer, or a process gone before the send,
leaves behind)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from processors.ingest.pseudonym import keyed_uid
from radstream.config import Settings
from radstream.text_deid import research_key
from sinks.dicom.expect import ExpectedStudies
from sinks.dicom.journal import Event
from sinks.dicom.scp import ResearchStore, ScpConfig
from sinks.dicom.worker import Worker, WorkerOptions
from streams.producer import make_producer

from .conftest import spec
from .helpers import TEST_PROJECTS, final_of, from_start, request, statuses

pytestmark = pytest.mark.integration

KEY = "lost-event-test-key-" + "k" * 20


class LosingStore(ResearchStore):
    """Our SCP, except that the first ``received_instance`` event of the instance ``lose`` (as stored)
    never reaches the producer."""

    lose = b""
    lost = 0

    def _produce(self, ev: Event, n: int | None) -> None:
        if ev.topic == self.topics.received_instances and ev.key == self.lose and not self.lost:
            self.lost += 1
            return
        super()._produce(ev, n)


def _keys(settings: Settings, topic: str) -> Counter[bytes]:
    c = from_start(settings, topic)
    got: Counter[bytes] = Counter()
    try:
        for _ in range(10):  # everything the broker holds by now (the worker waited for it already)
            for msg in c.consume(100, timeout=0.5):
                if msg.error() is None and msg.key() is not None:
                    got[msg.key()] += 1
    finally:
        c.close()
    return got


def test_a_lost_event_is_healed_by_moving_that_instance_again(dicom_settings: Settings, tmp_path: Path) -> None:
    settings = dicom_settings.replace(
        research={"coordination": "kafka", "store_dir": str(tmp_path / "store")},
        ingest={"pseudonym_key": KEY}, pacs={"max_attempts": 3, "backoff_s": 0.2})
    key = KEY.encode()
    a2 = spec("A", 2)
    stored_sops = [keyed_uid(key, s) for s in a2.sop_uids()]  # IRB-7 is de-identified
    rid = request(settings, "A2", project="IRB-7")

    expected = ExpectedStudies(settings.kafka, settings.topics)
    expected.start()
    store = LosingStore(ScpConfig.of(settings.research, settings.ingest),
                        make_producer(settings.kafka, **{"linger.ms": 20}), settings.topics, TEST_PROJECTS,
                        expected)
    store.lose = stored_sops[1].encode()
    assert expected.loaded.wait(30)
    store.start()
    worker = Worker(settings.kafka, settings.topics, settings.pacs, settings.research, settings.state_dir,
                    WorkerOptions(settle_s=2.0), group_id=settings.kafka.consumer_group,
                    key=research_key(settings))
    t = threading.Thread(target=worker.run, kwargs={"until_idle": 2.0}, daemon=True)
    try:
        t.start()
        events = statuses(settings, {rid}, timeout=120)
        t.join(60)
        assert not t.is_alive()
    finally:
        worker.stop_event.set()
        store.stop()
        expected.stop()

    assert store.lost == 1  # the loss happened
    final: dict[str, Any] = final_of(events, rid)
    assert final["state"] == "completed", final["error"]
    assert final["attempt"] == 2  # the first attempt missed the instance whose event was lost
    assert (final["stored"], final["missing"]) == (a2.images, 0)
    retry = [e for e in events if e["request_id"] == rid and e["state"] == "queued" and e["attempt"] == 2]
    assert retry and "1 of 3 listed instances not in the research store" in retry[0]["error"]
    # the second move was of that instance only: the SCP received the study once and it once more
    assert store.stats.received == a2.images + 1 and store.stats.written == a2.images + 1
    # nothing stored twice, nothing lost: one file per instance, under its keyed UID
    files = [p.stem for p in (tmp_path / "store").rglob("*.dcm")]
    assert sorted(files) == sorted(stored_sops)
    # each instance's event on the topic: the lost one from its second store only, the others once
    got = _keys(settings, settings.topics.received_instances)
    assert got == Counter(s.encode() for s in stored_sops), got
    # the outbox kept nothing to produce later: the worker healed the loss already (the SCP before this
    # kept every event there, the lost one pending until some later start produced it a second time)
    assert (tmp_path / "store" / ".journal" / "outbox-0.log").read_bytes() == b""
    # its original (the restricted topic: kept in the outbox, never lost) from both stores
    originals = _keys(settings, settings.topics.received_restricted)
    assert set(originals) == {s.encode() for s in stored_sops}
    assert originals[stored_sops[1].encode()] == 2 and sum(originals.values()) == a2.images + 1
