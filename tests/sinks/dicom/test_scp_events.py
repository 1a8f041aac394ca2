"""How the research SCP hands its events to Kafka (real broker, real C-STOREs over pynetdicom): one
partition per study, and sent when the association ends rather than after the producer's linger."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radstream.config import Settings
from radstream.stack.orthanc import free_port
from sinks.dicom import synth
from sinks.dicom.expect import STUDY_HEADER
from sinks.dicom.scp import ResearchStore, ScpConfig
from streams.producer import make_producer
from tests.streams.helpers import consume

from .helpers import TEST_PROJECTS

pytestmark = pytest.mark.integration

LINGER_MS = 20_000  # far longer than the test waits: only a kick sends the events in time


STUDIES = [synth.StudySpec(f"EV{k}", f"EVPAT{k}", "E^V", "20240101", 6, rows=8, cols=8) for k in (1, 2)]
N = sum(s.images for s in STUDIES)


def _store_and_release(settings: Settings, store_dir: Any, linger_ms: int) -> float:
    """C-STORE the instances of ``STUDIES`` (de-identified project: a received_instance and a
    received_original each) over one association, release it; the time of the release."""
    producer = make_producer(settings.kafka, **{"linger.ms": linger_ms})
    store = ResearchStore(ScpConfig(ae_title="RESEARCH", port=free_port(), host="127.0.0.1",
                                    store_dir=store_dir, allowed_calling_aes=("ORTHANC",),
                                    deid_key=b"events-test-key-" + b"k" * 16),
                          producer, settings.topics, TEST_PROJECTS)
    for s in STUDIES:
        store.registry.register(s.study_uid, "IRB-7", "r-" + s.accession, "RESEARCH")
    port = store.start()
    try:
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(CTImageStorage, synth.ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
        assert assoc.is_established
        for s in STUDIES:
            for i in range(s.images):
                assert assoc.send_c_store(synth.instance(s, i)).Status == 0x0000
        assoc.release()
        released = time.monotonic()
        # stop() flushes what is left: wait for the events first, as a running SCP would
        consume(settings, settings.topics.received_instances, N, timeout=2 * linger_ms / 1000 + 10)
        return released
    finally:
        store.stop()


def test_the_events_of_a_study_go_to_one_partition(topic_settings: Settings, tmp_path: Any) -> None:
    """One record batch per study and linger, not one per partition its SOP UIDs hash to."""
    settings = topic_settings
    _store_and_release(settings, tmp_path / "store", linger_ms=50)
    stored = consume(settings, settings.topics.received_instances, N, timeout=10.0)
    originals = consume(settings, settings.topics.received_restricted, N, timeout=10.0)
    assert len(stored) == N and len(originals) == N
    for records in (stored, originals):
        partitions: dict[str, set[int]] = defaultdict(set)
        for m in records:
            study = dict(m.headers() or []).get(STUDY_HEADER) if records is stored else None
            partitions[study.decode() if study else _study_of(m.value())].add(m.partition())
        # every study's events in one partition (keyed by SOP UID they spread over both)
        assert len(partitions) == 2 and all(len(p) == 1 for p in partitions.values()), partitions


def test_the_events_leave_when_the_association_ends_not_after_the_linger(
        topic_settings: Settings, tmp_path: Any) -> None:
    """The worker waits for a study's last events before it reconciles: they must not wait out the
    producer's linger once the PACS has released the association."""
    settings = topic_settings
    seen: list[float] = []

    def first_read() -> None:
        consume(settings, settings.topics.received_instances, N, timeout=LINGER_MS / 1000 + 10)
        seen.append(time.monotonic())

    reader = threading.Thread(target=first_read)
    reader.start()
    released = _store_and_release(settings, tmp_path / "store", linger_ms=LINGER_MS)
    reader.join()
    assert seen and seen[0] - released < 8.0  # the linger is 20 s


def _study_of(value: bytes) -> str:
    from streams import serde

    return str(serde.decode("received_original", value)["study_instance_uid"])


def test_a_study_s_events_leave_in_few_requests_with_the_default_linger(
        topic_settings: Settings, tmp_path: Any) -> None:
    """Each produce request costs the broker more CPU than its events (and every reader of the topic a
    fetch): with the configured linger (``research.event_batch_ms``, as ``radstream dicom scp`` makes
    its producer) a study received at a PACS's pace goes out in a few requests, not one per instance
    (the worker's wait for a study's last events is the association's end, ``kick``, not the linger)."""
    import json

    settings = topic_settings
    produced: list[int] = []

    def stats(raw: str) -> None:
        brokers = json.loads(raw).get("brokers", {}).values()
        produced.append(sum(int(b.get("req", {}).get("Produce", 0)) for b in brokers))

    producer = make_producer(settings.kafka, **{"linger.ms": settings.research.event_batch_ms,
                                                "statistics.interval.ms": 100, "stats_cb": stats})
    store = ResearchStore(ScpConfig(ae_title="RESEARCH", port=free_port(), host="127.0.0.1",
                                    store_dir=tmp_path / "store", allowed_calling_aes=("ORTHANC",)),
                          producer, settings.topics, TEST_PROJECTS)
    study = synth.StudySpec("EL1", "ELPAT1", "E^L", "20240101", 16, rows=8, cols=8)
    store.registry.register(study.study_uid, "P1", "r-el1", "RESEARCH")  # identified: one event each
    port = store.start()
    try:
        # the producer connected (and its idempotence id had) before the study, as in a running SCP
        producer.produce(settings.topics.dead_letter, value=b"warm-up")
        producer.flush(30)
        before = produced[-1] if produced else 0
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(CTImageStorage, synth.ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
        assert assoc.is_established
        started = time.monotonic()
        for i in range(study.images):
            assert assoc.send_c_store(synth.instance(study, i)).Status == 0x0000
            time.sleep(0.025)  # a PACS sending ~40 images/s: each event alone in a 20 ms linger
        took = time.monotonic() - started
        assoc.release()
        assert len(consume(settings, settings.topics.received_instances, study.images, timeout=20)) == 16
        producer.poll(0.5)  # statistics reports after the last delivery
    finally:
        store.stop()
    sent = produced[-1] - before
    # a request per linger (250 ms) of the study and the one when the association ended; with 20 ms,
    # one per instance
    assert 0 < sent <= took / 0.25 + 2 and sent < study.images, (sent, took)
