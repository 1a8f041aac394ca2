"""The research SCP's events of stored instances are not lost when the broker refuses them or is away
(real broker, real C-STOREs over pynetdicom, ``files`` coordination: nothing else would bring the
warehouse's ``received_instances`` / ``deid_map`` rows back): each is kept in the SCP's outbox (and a
journaled instance's in its journal record) until the broker acknowledges it, produced again after a
refusal and at the next start, and arrives exactly once."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radstream.config import Settings
from radstream.stack.orthanc import free_port
from sinks.dicom import scp as scp_module
from sinks.dicom import synth
from sinks.dicom.scp import ResearchStore, ScpConfig
from streams.producer import make_producer

from .helpers import TEST_PROJECTS

pytestmark = pytest.mark.integration

KEY = b"delivery-test-key-" + b"k" * 14
PROBE = b"probe"  # the key of the records that find out whether a topic's new limit is in effect


def _studies(tag: str) -> list[synth.StudySpec]:
    return [synth.StudySpec(f"DL{tag}{k}", f"DLPAT{tag}{k}", "D^L", "20240101", 4, rows=8, cols=8)
            for k in (1, 2)]


def _store(settings: Settings, store_dir: Path, producer: Any, journal_mb: int = 64) -> ResearchStore:
    return ResearchStore(ScpConfig(ae_title="RESEARCH", port=free_port(), host="127.0.0.1",
                                   store_dir=store_dir, allowed_calling_aes=("ORTHANC",), deid_key=KEY,
                                   journal_mb=journal_mb),
                         producer, settings.topics, TEST_PROJECTS)


def _send(port: int, studies: list[synth.StudySpec]) -> None:
    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context(CTImageStorage, synth.ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
    assert assoc.is_established
    try:
        for s in studies:
            for i in range(s.images):
                assert assoc.send_c_store(synth.instance(s, i)).Status == 0x0000
    finally:
        assoc.release()


def _all(settings: Settings, topic: str, want: int, quiet_s: float = 3.0, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic``: read until ``want`` arrived and then ``quiet_s`` passed without more
    (a repetition would come in that time)."""
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[Any] = []
    deadline, last = time.monotonic() + timeout, time.monotonic()
    try:
        while time.monotonic() < deadline and (len(out) < want or time.monotonic() - last < quiet_s):
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
                last = time.monotonic()
    finally:
        c.close()
    return out


def _exactly_once(settings: Settings, studies: list[synth.StudySpec]) -> None:
    n = sum(s.images for s in studies)
    for topic in (settings.topics.received_instances, settings.topics.received_restricted):
        got = _all(settings, topic, n)
        keys = Counter(m.key() for m in got if m.key() != PROBE)
        assert len(keys) == n, f"{topic}: {len(keys)} of {n} instances' events arrived"
        repeated = [k for k, v in keys.items() if v > 1]
        assert not repeated, f"{topic}: repeated {repeated}"


def _set_max_bytes(settings: Settings, topic: str, value: int) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(10)
    # the broker applies a topic's new configuration a moment later: probe until it does
    probe = Producer({"bootstrap.servers": settings.kafka.bootstrap, "linger.ms": 0})
    deadline = time.monotonic() + 30
    box: list[Any] = []
    while time.monotonic() < deadline:
        box.clear()
        probe.produce(topic, b"p" * 600, key=PROBE, on_delivery=lambda err, _m: box.append(err))
        probe.flush(10)
        refused = bool(box) and box[0] is not None and box[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
        if refused == (value < 600):
            return
        time.sleep(0.2)
    raise AssertionError(f"max.message.bytes={value} of {topic} not in effect within 30 s")


@pytest.mark.parametrize("journal_mb", [64, 0])
def test_refused_events_are_produced_again_once_the_broker_takes_them(
        topic_settings: Settings, tmp_path: Path, journal_mb: int) -> None:
    """The broker refuses every event of the stored instances (the topic's ``max.message.bytes`` below
    a record batch), then takes them again: each instance's ``received_instance`` arrives exactly
    once without a new C-STORE (the old SCP counted and logged the refusal, and that was all)."""
    settings = topic_settings
    studies = _studies(f"R{journal_mb}")
    n = sum(s.images for s in studies)
    topic = settings.topics.received_instances
    _set_max_bytes(settings, topic, 64)
    store = _store(settings, tmp_path / "store", make_producer(settings.kafka, **{"linger.ms": 5}),
                   journal_mb=journal_mb)
    for s in studies:
        store.registry.register(s.study_uid, "IRB-7", "r-" + s.accession, "RESEARCH")
    port = store.start()
    try:
        _send(port, studies)
        store.kick()
        outbox = getattr(store, "outbox", None)
        if outbox is not None:  # (the SCP before the outbox: the refusals were logged, and that was all)
            deadline = time.monotonic() + 90  # a loaded host's fresh broker: slow to give a producer id
            while time.monotonic() < deadline and outbox.refusals < n:
                time.sleep(0.1)
            assert outbox.refusals >= n, (f"the broker refused {outbox.refusals} events, not {n} "
                                          f"({len(outbox.pending)} pending)")
        else:
            time.sleep(5)
        _set_max_bytes(settings, topic, 1_048_588)
        _exactly_once(settings, studies)
        assert outbox is not None
        deadline = time.monotonic() + 10
        while outbox.pending and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not outbox.pending
    finally:
        store.stop()


def test_events_not_acknowledged_before_a_stop_are_produced_at_the_next_start(
        topic_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SCP whose broker is unreachable stores instances (answered, durable) and stops; the next SCP
    on that store produces their events once it starts, exactly once."""
    settings = topic_settings
    studies = _studies("S")
    # the stop waits this long for the broker away
    monkeypatch.setattr(scp_module, "DRAIN_S", 2.0, raising=False)
    away = dataclasses.replace(settings.kafka, bootstrap=f"127.0.0.1:{free_port()}")
    first = _store(settings, tmp_path / "store", make_producer(away, **{"message.timeout.ms": 1000}))
    for s in studies:
        first.registry.register(s.study_uid, "IRB-7", "r-" + s.accession, "RESEARCH")
    port = first.start()
    try:
        _send(port, studies)
        first.drain()
    finally:
        first.stop()
    assert any(n.startswith("outbox-") for n in os.listdir(tmp_path / "store" / ".journal"))
    second = _store(settings, tmp_path / "store", make_producer(settings.kafka, **{"linger.ms": 5}))
    second.start()
    try:
        _exactly_once(settings, studies)
    finally:
        second.stop()


def test_a_crash_before_the_events_leave_loses_none(topic_settings: Settings, tmp_path: Path) -> None:
    """A host crash after the C-STORE responses and before the broker took the events: the journal's
    replay writes the files again and produces their events from its records (the outbox's file,
    written without a sync, is gone with the page cache here)."""
    settings = topic_settings
    studies = _studies("C")
    away = dataclasses.replace(settings.kafka, bootstrap=f"127.0.0.1:{free_port()}")
    first = _store(settings, tmp_path / "store", make_producer(away, **{"message.timeout.ms": 60_000}))
    for s in studies:
        first.registry.register(s.study_uid, "IRB-7", "r-" + s.accession, "RESEARCH")
    port = first.start()
    _send(port, studies)
    assert first._writer is not None
    first._writer.join()
    # the crash: the server goes, the journal is left without a checkpoint, the outbox file is lost
    first._server.shutdown()
    assert first.journal is not None
    os.close(first.journal._fd)
    outbox = getattr(first, "outbox", None)
    if outbox is not None:  # (the SCP before the outbox had none)
        os.close(outbox._fd)
        os.close(outbox._lock_fd)
        os.unlink(outbox.path)
    second = _store(settings, tmp_path / "store", make_producer(settings.kafka, **{"linger.ms": 5}))
    second.start()
    try:
        assert second.journal is not None and second.journal.replayed == sum(s.images for s in studies)
        _exactly_once(settings, studies)
    finally:
        second.stop()
