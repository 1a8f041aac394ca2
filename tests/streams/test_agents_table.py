"""The agents' changelogged tables (``streams.agents.table``) on a real broker: a restore reads back what
was written, a table that owned a partition before reads only what another owner wrote since, and a
delivery is reported to the caller."""

from __future__ import annotations

import uuid

from confluent_kafka import KafkaError, Message

from radstream.config import Settings
from streams.agents import create_changelogs
from streams.agents.table import ChangelogTable
from streams.producer import make_producer


def _table(s: Settings, topic: str) -> ChangelogTable:
    return ChangelogTable(s.kafka, topic, make_producer(s.kafka))


def _put(table: ChangelogTable, partition: int, key: bytes, value: object) -> None:
    errors: list[KafkaError | None] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        errors.append(err)

    table.put(partition, key, value, delivered)
    assert table._producer.flush(30) == 0
    assert errors == [None]


def test_restore_reads_back_each_partition(kafka_settings: Settings) -> None:
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


def test_a_partition_that_comes_back_reads_only_what_others_wrote(kafka_settings: Settings) -> None:
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
