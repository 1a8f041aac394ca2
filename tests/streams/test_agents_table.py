"""The agents' changelogged tables (``streams.agents.table``) on a real broker, in both stores (dicts and
the unlinked SQLite file): a restore reads back what was written, a table that owned a partition before
reads only what another owner wrote since, a delivery is reported to the caller, a tombstone deletes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message

from radstream.config import Settings
from streams.agents import create_changelogs
from streams.agents.table import ChangelogTable
from streams.producer import make_producer

Make = Callable[[Settings, str], ChangelogTable]


@pytest.fixture(params=["memory", "disk"])
def _table(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    store = tmp_path / "agents" if request.param == "disk" else None
    return lambda s, topic: ChangelogTable(s.kafka, topic, make_producer(s.kafka), store)


def _put(table: ChangelogTable, partition: int, key: bytes, value: object) -> None:
    errors: list[KafkaError | None] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        errors.append(err)

    table.put(partition, key, value, delivered)
    assert table._producer.flush(30) == 0
    assert errors == [None]


def test_restore_reads_back_each_partition(kafka_settings: Settings, _table: Make) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}-report-versions-changelog"
    create_changelogs(kafka_settings.kafka, {topic: 2})
    writer = _table(kafka_settings, topic)
    _put(writer, 0, b"site|A1", [{"version": 1, "text": "first"}])
    _put(writer, 0, b"site|A1", [{"version": 1, "text": "first"}, {"version": 2, "text": "addendum"}])
    _put(writer, 1, b"site|B1", {"p:d": {"matched": True}})

    reader = _table(kafka_settings, topic)
    reader.restore([0, 1])
    assert reader.get(0, b"site|A1") == [{"version": 1, "text": "first"}, {"version": 2, "text": "addendum"}]
    assert reader.get(1, b"site|B1") == {"p:d": {"matched": True}}
    assert reader.get(1, b"site|A1") is None  # keys belong to their partition
    assert reader.restored == 3


def test_a_partition_that_comes_back_reads_only_what_others_wrote(kafka_settings: Settings,
                                                                  _table: Make) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}-cohort-state-changelog"
    create_changelogs(kafka_settings.kafka, {topic: 1})
    first = _table(kafka_settings, topic)
    first.restore([0])  # empty
    _put(first, 0, b"k1", {"n": 1})
    first.release([0])

    second = _table(kafka_settings, topic)  # the partition's next owner
    second.restore([0])
    assert second.get(0, b"k1") == {"n": 1}
    _put(second, 0, b"k2", {"n": 2})
    _put(second, 0, b"k1", {"n": 3})

    before = first.restored
    first.restore([0])  # the partition is back: only the other owner's two updates are read
    assert first.restored - before == 2
    assert first.get(0, b"k1") == {"n": 3} and first.get(0, b"k2") == {"n": 2}


def test_a_tombstone_deletes_and_a_value_that_is_not_json_is_skipped(kafka_settings: Settings,
                                                                     _table: Make) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}-cohort-state-changelog"
    create_changelogs(kafka_settings.kafka, {topic: 1})
    producer = make_producer(kafka_settings.kafka)
    for key, value in ((b"gone", b"{}"), (b"kept", b'{"n":1}'), (b"gone", None), (b"bad", b"not json")):
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0
    table = _table(kafka_settings, topic)
    table.restore([0])
    assert table.restored == 4
    assert table.get(0, b"kept") == {"n": 1}
    assert table.get(0, b"gone") is None and table.get(0, b"bad", "default") == "default"
    table.close()


def test_the_disk_store_leaves_no_file_behind(kafka_settings: Settings, tmp_path: Path) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}-report-versions-changelog"
    create_changelogs(kafka_settings.kafka, {topic: 1})
    store = tmp_path / "agents"
    table = ChangelogTable(kafka_settings.kafka, topic, make_producer(kafka_settings.kafka), store)
    _put(table, 0, b"site|A1", [[1, "final", "x" * 5000]])
    assert os.listdir(store) == []  # unlinked once opened: a crash leaves no debris
    assert table.get(0, b"site|A1") == [[1, "final", "x" * 5000]]
    table.close()


class _Flaky:
    """A consumer whose first watermark requests fail as librdkafka's do while a broker is lost (a unit
    test: a broker kill cannot be timed to land inside the restore; tests/radstream/test_multibroker.py
    kills one while the worker runs, and once it did land there and stopped the worker)."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)

    def get_watermark_offsets(self, _tp: object, timeout: float) -> tuple[int, int]:
        if self.codes:
            from confluent_kafka import KafkaException

            raise KafkaException(KafkaError(self.codes.pop(0)))
        return 0, 7


def test_the_restore_asks_again_while_a_lost_brokers_partitions_move(kafka_settings: Settings) -> None:
    table = ChangelogTable(kafka_settings.kafka, "t", make_producer(kafka_settings.kafka), None)
    flaky = _Flaky(KafkaError._DESTROY_BROKER, KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)
    assert table._watermarks(flaky, 0) == (0, 7)  # type: ignore[arg-type]
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException):  # not a moving leader: fails at once
        table._watermarks(_Flaky(KafkaError.TOPIC_AUTHORIZATION_FAILED), 0)  # type: ignore[arg-type]
