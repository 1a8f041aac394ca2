"""Report-text de-identification through the real worker (NLP agent + ClickHouse sink on chDB) and a real
broker: analysts' tables and the live topics carry only de-identified text, the findings' offsets point
into it, the original stays in report_text_original, and a report that cannot be de-identified is
dead-lettered with the reason while the stream goes on."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

from processors.ingest.pseudonym import date_shift_days, keyed_identifier
from radstream.config import Settings
from streams import serde
from streams.producer import make_producer
from tests.streams.helpers import consume, free_port, report, worker_process

KEY = "pipeline-test-key-0123456789"
ROLES = Path(__file__).resolve().parents[2] / "sinks" / "clickhouse" / "roles"
PATIENT = "psn-00112233445566778899aabbccddeeff"
TEXT = (
    "CLINICAL HISTORY: 92-year-old woman, MRN 7654321.\n"
    "COMPARISON: CT dated 03/14/2024.\n"
    "FINDINGS: 7 mm nodule in the right upper lobe. No pleural effusion. Baker cyst.\n"
    "IMPRESSION: Right upper lobe nodule. Recommend CT follow-up in 3 months.\n"
    "Discussed with Dr. Blackwood at 13:55 on 03/15/2024."
)
PHI = ("Blackwood", "7654321", "03/14/2024", "03/15/2024", "92-year-old")
# the structured identifiers of report D1: none of them may reach an analysts' table or topic
CLINICAL = {"study_instance_uid": "1.2.840.99999.7.7.7", "visit_number": "VN-8080-A",
            "author": "Okafor^Ngozi", "placer_order_number": "PL-55501", "filler_order_number": "FL-55502",
            "source_message_id": "MSGCTRL-31337"}


def acc(accession: str) -> str:
    """The research accession the analysts' tables hold for a clinical one."""
    return keyed_identifier(KEY.encode(), "accession", accession)


def test_analysts_see_deidentified_text_and_findings_point_into_it(
    topic_settings: Settings, tmp_path: Path
) -> None:
    s = topic_settings.replace(
        state_dir=str(tmp_path),
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()},
        ingest={"pseudonym_key": KEY},
        clickhouse={"flush_ms": 200},
    )
    good = {**report("D1", TEXT), "patient_id": PATIENT, "patient_id_is_pseudonym": True, **CLINICAL,
            "report_id": "RID-D1-CLIN"}
    binary = {
        **report("D2", "FINDINGS: normal.\x00\x01\x02"),
        "patient_id": PATIENT,
        "patient_id_is_pseudonym": True,
    }
    after = {
        **report("D3", "FINDINGS: No pneumothorax. Called to J. Doe, RN."),
        "patient_id": PATIENT,
        "patient_id_is_pseudonym": True,
    }
    with worker_process(s, tmp_path / "worker.log"):
        p = make_producer(s.kafka)
        for rec in (good, binary, after):
            p.produce(
                s.topics.reports,
                key=f"default|{rec['accession']}".encode(),
                value=serde.encode("report_finalized", rec),
            )
        assert p.flush(30) == 0
        findings = consume(s, s.topics.findings, 2, timeout=120)
        deidentified = consume(s, s.topics.reports_deidentified, 2)
        dead = consume(s, s.topics.dead_letter, 1)
        time.sleep(3)  # the sink's flush (flush_ms 200) of the last records
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert len(findings) == 2 and len(deidentified) == 2, log[-3000:]

    # the live topics: no identifier of the original text, no clinical identifier, not even in the keys
    clinical = (*CLINICAL.values(), "Okafor", "RID-D1-CLIN", "|D1", "|D3")
    for m in findings + deidentified:
        assert not any(phi.encode() in m.value() for phi in PHI)
        assert not [v for v in clinical if v.encode() in m.value() + (m.key() or b"")], m.key()
    assert {m.key() for m in findings} == {f"default|{acc('D1')}".encode(), f"default|{acc('D3')}".encode()}
    dl = serde.decode("dead_letter", dead[0].value())
    assert dl["stage"] == "nlp-agent" and "NUL" in dl["error"] and dl["error_type"] == "TextDeidError"

    from sinks.clickhouse.client import open_client

    A1, A2, A3 = acc("D1"), acc("D2"), acc("D3")  # noqa: N806 - the research accessions
    client = open_client(s.clickhouse)
    try:
        q = client.query
        text = q(f"SELECT text FROM reports_latest WHERE accession = '{A1}'").result_rows[0][0]
        assert not any(phi in text for phi in PHI), text
        shifted = [
            date(2024, 3, 14) - timedelta(days=date_shift_days(KEY.encode(), PATIENT)),
            date(2024, 3, 15) - timedelta(days=date_shift_days(KEY.encode(), PATIENT)),
        ]
        assert all(f"{d:%m/%d/%Y}" in text for d in shifted), text
        assert "Baker cyst" in text and "13:55" in text and "7 mm nodule" in text
        versions = q(f"SELECT text FROM report_versions WHERE accession = '{A1}'").result_rows
        assert versions and all(r[0] == text for r in versions)
        original = q("SELECT text, patient_id FROM report_text_original WHERE accession = 'D1'").result_rows
        assert original == [(TEXT, PATIENT)]

        rows = q(f"SELECT concept, text, start, end FROM findings_latest WHERE accession = '{A1}'"
                 ).result_rows
        assert rows, "no findings"
        for concept, snippet, start, end in rows:
            assert text[start:end] == snippet, (concept, snippet, text[start:end])
        for table in ("sections", "measurements", "recommendations"):
            for snippet, start, end in q(
                f"SELECT {'title' if table == 'sections' else 'text'}, start, end "
                f"FROM {table} WHERE accession = '{A1}'"
            ).result_rows:
                assert 0 <= start <= end <= len(text)
                if table != "sections":
                    assert text[start:end] == snippet
        assert q(f"SELECT count() FROM measurements WHERE accession = '{A1}'").result_rows[0][0] >= 1
        # the stream went on after the bad report
        assert q(f"SELECT count() FROM reports_latest WHERE accession = '{A3}'").result_rows[0][0] == 1
        assert "Doe" not in q(f"SELECT text FROM reports_latest WHERE accession = '{A3}'").result_rows[0][0]
        assert q(f"SELECT count() FROM reports_latest WHERE accession = '{A2}'").result_rows[0][0] == 0

        # every table and view on the analysts' allowlist: no clinical identifier in any column
        present = {r[0] for r in q("SELECT name FROM system.tables WHERE database = currentDatabase()"
                                   ).result_rows}
        analyst = [t for t in json.loads((ROLES / "analyst.json").read_text())["tables"] if t in present]
        assert len(analyst) > 25  # the tables and views of the migrations (embeddings come with [ml])
        leaks = {}
        for table in analyst:
            rows = q(f"SELECT * FROM {table}").result_rows
            cells = [cell for row in rows for cell in row if isinstance(cell, str)]
            found = [v for v in clinical for cell in cells if v in cell]
            if found:
                leaks[table] = found
        assert not leaks, leaks
        assert q(f"SELECT count() FROM reports_latest WHERE accession = '{A1}' AND study_ref != ''"
                 ).result_rows[0][0] == 1
    finally:
        client.close()
