"""The NLP agent's whole texts on a real broker: a report version consumed again after a newer report
version pruned it from the version history (the changelog restored by a successor worker), or an older
version arriving late, is analysed on its own text, never on an empty one (whose results would replace
the good ones under the same key)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer

from processors.ingest.model import ReportEvent
from radstream.config import Settings
from streams import serde
from streams.agents import create_changelogs
from streams.agents.nlp import NlpHandler, NlpRunner
from streams.agents.outbox import Completion
from streams.agents.table import ChangelogTable
from streams.config import MlConfig, WorkerConfig
from streams.handlers import analyze_batch
from streams.loop import Record
from streams.producer import make_producer

V1 = "FINDINGS: Right lower lobe consolidation consistent with pneumonia.\nIMPRESSION: Pneumonia."
V2 = ("FINDINGS: Right lower lobe consolidation consistent with pneumonia. Small right pleural effusion.\n"
      "IMPRESSION: Pneumonia with effusion.")


def _record(settings: Settings, accession: str, version: int, status: str, text: str, offset: int) -> Record:
    ev = ReportEvent(site="s", accession=accession, report_id=accession, version=version, status=status,
                     patient_id="P1", text=text, source_format="hl7v2", received_time=datetime.now(UTC))
    value = serde.encode("report_finalized", ev.to_avro())
    return Record(settings.topics.reports, 0, offset, ev.key.encode(), value)


def _handler(settings: Settings, runner: NlpRunner, changelog: str) -> tuple[NlpHandler, Producer]:
    producer = make_producer(settings.kafka)
    table = ChangelogTable(settings.kafka, changelog, producer)
    return NlpHandler(settings.topics, runner, producer, table), producer


def _concepts(value: bytes | None, text: str | None) -> list[str]:
    out = analyze_batch([value], texts=[text])[0]
    assert out.value is not None, out.error
    return sorted(f["concept"] for f in serde.decode("report_findings", out.value)["findings"])


def test_a_version_pruned_from_the_history_is_analysed_on_its_own_text(kafka_settings: Settings) -> None:
    changelog = f"t{uuid.uuid4().hex[:8]}-report-versions-changelog"
    create_changelogs(kafka_settings.kafka, {changelog: 1})
    runner = NlpRunner(WorkerConfig(nlp_processes=0), MlConfig())
    try:
        v1 = _record(kafka_settings, "ACC-1", 1_000, "preliminary", V1, 0)
        v2 = _record(kafka_settings, "ACC-1", 2_000, "final", V2, 1)
        first, p1 = _handler(kafka_settings, runner, changelog)
        texts = first.whole_texts([v1, v2], Completion([]))
        assert p1.flush(30) == 0
        assert texts == [V1, V2]
        good = _concepts(v1.value, texts[0])
        assert good

        # a successor restores the changelog (v2 only: v1 was pruned) and gets v1 and v2 again
        second, p2 = _handler(kafka_settings, runner, changelog)
        second.on_assign([(kafka_settings.topics.reports, 0)])
        again = second.whole_texts([v1, v2], Completion([]))
        assert again == [None, V2]  # None: the message's own text
        assert _concepts(v1.value, again[0]) == good

        # an older version that arrives after a newer one, without any redelivery
        final = _record(kafka_settings, "ACC-2", 2_000, "final", V2, 2)
        late = _record(kafka_settings, "ACC-2", 1_000, "preliminary", V1, 3)
        assert second.whole_texts([final], Completion([])) + second.whole_texts([late], Completion([])) == [
            V2, None]
        assert p2.flush(30) == 0
    finally:
        runner.close()
