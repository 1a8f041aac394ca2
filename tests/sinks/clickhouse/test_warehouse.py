"""The warehouse on a real embedded ClickHouse (chDB): migrations, idempotency, latest views, OMOP views,
read-only queries. Records are written with write_records (the backfill path; the sink uses the same code)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.migrate import DDL_DIR, MigrationError, migrate
from sinks.clickhouse.query import Result, run_readonly
from sinks.clickhouse.rows import COLUMNS
from sinks.clickhouse.sink import write_records

from .factories import BASE_TIME, finding, findings, registered, report

pytestmark = pytest.mark.integration


def q(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def test_migrate_is_idempotent_and_tables_match_the_row_mapping(ch: Client, ch_settings: Settings) -> None:
    assert migrate(ch, ch_settings.clickhouse.database) == []
    assert q(ch, "SELECT count() FROM schema_migrations FINAL")[0][0] == len(list(DDL_DIR.glob("*.sql")))
    for table, cols in COLUMNS.items():
        # the columns a writer gives: not inserted_at (its default), not the keys the engine computes
        described = [r[0] for r in q(ch, f"DESCRIBE TABLE {table}") if r[2] not in ("MATERIALIZED", "ALIAS")]
        assert [c for c in described if c != "inserted_at"] == list(cols), table


def test_a_changed_table_migration_is_refused(ch: Client, ch_settings: Settings, tmp_path: Path) -> None:
    ddl = tmp_path / "ddl"
    shutil.copytree(DDL_DIR, ddl)
    first = sorted(ddl.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationError):
        migrate(ch, ch_settings.clickhouse.database, ddl)
    # views-only files may change: they are re-applied
    views = sorted(ddl.glob("*views*.sql"))[0]
    first.write_text((DDL_DIR / first.name).read_text())
    views.write_text(views.read_text() + "\n-- comment\n")
    assert migrate(ch, ch_settings.clickhouse.database, ddl) == [views.stem]


def _dataset() -> list[tuple[str, list[dict[str, object]]]]:
    reps = [
        report(
            f"A{i}",
            1,
            patient_id=f"P{i % 3}",
            modality="CT" if i % 2 else "MR",
            exam_time=BASE_TIME + timedelta(days=i),
        )
        for i in range(12)
    ]
    nlp = [
        findings(
            r,
            [finding("nodule", size_mm=float(i)), finding("effusion", negated=True)],
            assessments=[("BI-RADS", str(i % 6))],
            critical=["pneumothorax"] if i % 4 == 0 else [],
            communication_after=timedelta(minutes=i),
            chest_labels={"Nodule": "positive"},
        )
        for i, r in enumerate(reps)
    ]
    retrieval = [
        {
            "request_id": "q1",
            "project_id": "P-1",
            "requester": "ana",
            "accession": "A1",
            "destination_ae": "RESEARCH",
            "requested_time": BASE_TIME,
        }
    ]
    status = [
        {"request_id": "q1", "project_id": "P-1", "state": s, "time": BASE_TIME + timedelta(seconds=i)}
        for i, s in enumerate(["queued", "moving", "completed"])
    ]
    inst = [
        {
            "project_id": "P-1",
            "calling_ae": "ORTHANC",
            "called_ae": "RESEARCH",
            "study_instance_uid": reps[1]["study_instance_uid"],
            "series_instance_uid": f"1.9.{s}",
            "sop_instance_uid": f"1.9.{s}.{k}",
            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "accession": "A1",
            "modality": "CT",
            "path": f"/store/P-1/1.9.{s}/{k}.dcm",
            "size_bytes": 100,
            "time": BASE_TIME,
            "deidentified": True,
        }
        for s in range(2)
        for k in range(3)
    ]
    dead = [
        {
            "stage": "nlp-agent",
            "original_topic": "t",
            "partition": 0,
            "offset": 7,
            "value": b"x",
            "error_type": "SerdeError",
            "error": "bad",
            "time": BASE_TIME,
        }
    ]
    return [
        ("project_registration", [registered("P-1")]),
        ("report_finalized", reps),
        ("report_findings", nlp),
        ("retrieval_requested", retrieval),
        ("retrieval_status", status),
        ("received_instance", inst),
        ("dead_letter", dead),
    ]


TABLES = [t for t in COLUMNS]


def _counts(client: Client, final: bool = True) -> dict[str, int]:
    f = " FINAL" if final else ""
    return {t: int(q(client, f"SELECT count() FROM {t}{f}")[0][0]) for t in TABLES}


def test_replaying_everything_gives_identical_counts(ch: Client) -> None:
    for contract, recs in _dataset():
        write_records(ch, contract, recs)
    once = _counts(ch)
    assert once["findings"] == 24 and once["report_versions"] == 12 and once["received_instances"] == 6
    for contract, recs in _dataset():  # the whole history again, as a topic replay would deliver it
        write_records(ch, contract, recs)
    assert _counts(ch) == once
    assert _counts(ch, final=False)["findings"] == 48  # physically twice until merged ...
    for t in TABLES:
        ch.command(f"OPTIMIZE TABLE {t} FINAL")
    assert _counts(ch, final=False) == once  # ... and merged away by the ReplacingMergeTree keys
    # analysts get deduplicated answers without writing FINAL
    res = run_readonly(ch, "SELECT count() FROM findings", "rows")
    assert isinstance(res, Result) and res.rows[0][0] == 24


def test_latest_views_show_only_the_corrected_version(ch: Client) -> None:
    final = report("C1", 100, status="final", text="FINDINGS: nodule, effusion, atelectasis.")
    corrected = report("C1", 200, status="corrected", text="FINDINGS: small nodule only.")
    other = report("C2", 5)
    # the correction arrives first: the order of arrival must not matter
    write_records(ch, "report_finalized", [corrected, other, final])
    write_records(
        ch,
        "report_findings",
        [
            findings(corrected, [finding("nodule", size_mm=4.0)], assessments=[("Lung-RADS", "2")]),
            findings(
                final,
                [finding("nodule", size_mm=9.0), finding("effusion"), finding("atelectasis")],
                assessments=[("Lung-RADS", "4A")],
                critical=["pneumothorax"],
            ),
            findings(other, [finding("fracture")]),
        ],
    )
    rows = q(
        ch,
        "SELECT accession, report_version, concept, size_mm FROM findings_latest ORDER BY accession, concept",
    )
    assert rows == [("C1", 200, "nodule", 4.0), ("C2", 5, "fracture", None)]
    assert q(ch, "SELECT category FROM assessments_latest WHERE accession = 'C1'") == [("2",)]
    assert q(ch, "SELECT count() FROM critical_results_latest WHERE accession = 'C1'") == [(0,)]
    assert q(ch, "SELECT version, status FROM reports_latest WHERE accession = 'C1'") == [(200, "corrected")]
    assert q(ch, "SELECT count() FROM report_versions WHERE accession = 'C1'") == [(2,)]
    assert q(ch, "SELECT argMax(status, version) FROM report_versions WHERE accession = 'C1'") == [
        ("corrected",)
    ]
    assert q(
        ch, "SELECT rs_version, count() FROM note_nlp WHERE rs_accession = 'C1' GROUP BY rs_version"
    ) == [(200, 1)]


def test_a_new_version_without_its_nlp_yet_hides_the_old_findings(ch: Client) -> None:
    v1 = report("D1", 1)
    write_records(ch, "report_finalized", [v1])
    write_records(ch, "report_findings", [findings(v1, [finding("nodule")])])
    assert q(ch, "SELECT count() FROM findings_latest") == [(1,)]
    write_records(ch, "report_finalized", [report("D1", 2, status="corrected")])
    assert q(ch, "SELECT count() FROM findings_latest") == [(0,)]  # never the stale version


def test_an_nlp_rerun_of_the_same_version_replaces_its_rows(ch: Client) -> None:
    rep = report("E1", 1)
    write_records(ch, "report_finalized", [rep])
    write_records(ch, "report_findings", [findings(rep, [finding("nodule"), finding("mass")])])
    later = rep["status_time"] + timedelta(days=30)
    write_records(ch, "report_findings", [findings(rep, [finding("mass")], processed_time=later)])
    assert q(ch, "SELECT concept FROM findings_latest") == [("mass",)]


NLP_TABLES = ("report_nlp", "sections", "findings", "measurements", "recommendations", "assessments",
              "critical_results", "chest_labels")


def _physical(client: Client) -> dict[str, int]:
    for t in NLP_TABLES:
        client.command(f"OPTIMIZE TABLE {t} FINAL")
    return {t: int(q(client, f"SELECT count() FROM {t}")[0][0]) for t in NLP_TABLES}


def test_an_exact_resend_analysed_again_adds_no_rows_once_merged(ch: Client) -> None:
    from streams.handlers import analyze_report

    rep = report("R1", 1, text="FINDINGS: 8 mm nodule in the right upper lobe. Small left pleural effusion. "
                               "No pneumothorax.\nIMPRESSION: Lung-RADS 4A. Follow-up CT in 3 months.")
    write_records(ch, "report_finalized", [rep])
    first = analyze_report(dict(rep), now=BASE_TIME + timedelta(minutes=1))
    write_records(ch, "report_findings", [first])
    once = _physical(ch)
    assert once["findings"] >= 2 and once["measurements"] >= 1 and once["sections"] >= 2  # a real analysis
    # the same message again (an exact HL7 resend, or a replay of the reports topic): a new NLP run
    again = analyze_report(dict(rep), now=BASE_TIME + timedelta(hours=2))
    assert again["processed_time"] != first["processed_time"]
    write_records(ch, "report_findings", [again])
    assert _physical(ch) == once
    # the newest run is the one kept, and the latest views show it once
    assert q(ch, "SELECT toUnixTimestamp(processed_time) FROM report_nlp") == [
        (int(again["processed_time"].timestamp()),)]
    assert q(ch, "SELECT count() FROM findings_latest") == [(once["findings"],)]


def test_a_replayed_findings_topic_adds_no_rows_once_merged(ch: Client) -> None:
    rep = report("R2", 1)
    rec = findings(rep, [finding("nodule", size_mm=6.0), finding("effusion")],
                   assessments=[("Lung-RADS", "3")], critical=["pneumothorax"],
                   chest_labels={"Effusion": "positive"}, communication_after=timedelta(minutes=5))
    write_records(ch, "report_finalized", [rep])
    write_records(ch, "report_findings", [rec])
    once = _physical(ch)
    write_records(ch, "report_findings", [rec, rec])
    assert _physical(ch) == once == {"report_nlp": 1, "sections": 1, "findings": 2, "measurements": 0,
                                     "recommendations": 0, "assessments": 1, "critical_results": 1,
                                     "chest_labels": 1}


def test_a_new_nlp_version_replaces_the_old_in_the_latest_views(ch: Client) -> None:
    rep = report("R3", 1)
    write_records(ch, "report_finalized", [rep])
    old = findings(rep, [finding("nodule"), finding("effusion")], assessments=[("Lung-RADS", "3")],
                   chest_labels={"Effusion": "positive"})
    new = dict(findings(rep, [finding("mass")], processed_time=old["processed_time"] + timedelta(days=3)),
               nlp_version="test-2")
    write_records(ch, "report_findings", [old, new])
    assert q(ch, "SELECT nlp_version FROM nlp_latest") == [("test-2",)]
    assert q(ch, "SELECT concept, nlp_version FROM findings_latest") == [("mass", "test-2")]
    assert q(ch, "SELECT count() FROM assessments_latest") == [(0,)]
    assert q(ch, "SELECT count() FROM chest_labels_latest") == [(0,)]
    assert q(ch, "SELECT rs_version, lexical_variant FROM note_nlp") == [(1, "mass")]
    # both versions' results stay in the base tables; replaying the old one does not bring it back
    write_records(ch, "report_findings", [old])
    assert q(ch, "SELECT nlp_version, count() FROM findings FINAL GROUP BY nlp_version ORDER BY 1") == [
        ("test-1", 2), ("test-2", 1)]
    assert q(ch, "SELECT concept FROM findings_latest") == [("mass",)]


def test_cancelled_reports_leave_the_latest_views(ch: Client) -> None:
    rep = report("F1", 1)
    write_records(ch, "report_finalized", [rep])
    write_records(ch, "report_findings", [findings(rep, [finding("nodule")])])
    cancel = report("F1", 2, status="cancelled", text="")
    write_records(ch, "report_finalized", [cancel])
    write_records(ch, "report_findings", [findings(cancel, [])])
    assert q(ch, "SELECT count() FROM reports_latest") == [(0,)]
    assert q(ch, "SELECT count() FROM findings_latest") == [(0,)]
    assert q(ch, "SELECT status FROM reports FINAL") == [("cancelled",)]


def test_note_nlp_follows_the_omop_conventions(ch: Client) -> None:
    text = "FINDINGS: No effusion. Possible nodule. Mother had cancer. Old fracture. Mass in the liver."
    rep = report("G1", 1, text=text)
    found = [
        finding("effusion", start=text.index("effusion"), negated=True),
        finding("nodule", start=text.index("nodule"), uncertain=True),
        finding("cancer", start=text.index("cancer"), experiencer="family"),
        finding("fracture", start=text.index("fracture"), historical=True),
        finding("mass", start=text.index("Mass"), laterality="right", size_mm=12.5),
    ]
    write_records(ch, "report_finalized", [rep])
    write_records(ch, "report_findings", [findings(rep, found)])
    rows = {
        r[0]: r[1:]
        for r in q(
            ch,
            "SELECT rs_concept, term_exists, term_temporal, term_modifiers, snippet, "
            "offset, lexical_variant, note_id FROM note_nlp",
        )
    }
    assert {c: r[0] for c, r in rows.items()} == {
        "effusion": "N",
        "nodule": "N",
        "cancer": "N",
        "fracture": "Y",
        "mass": "Y",
    }
    assert rows["fracture"][1] == "past" and rows["mass"][1] == "present"
    assert rows["effusion"][2].startswith("negated=yes,subject=patient")
    assert rows["cancer"][2].startswith("negated=no,subject=family,certainty=definite")
    assert ",certainty=possible," in rows["nodule"][2]
    assert "laterality=right" in rows["mass"][2] and "size_mm=12.5" in rows["mass"][2]
    assert "No effusion" in rows["effusion"][3] and rows["effusion"][4] == str(text.index("effusion"))
    (note_id,) = q(ch, "SELECT note_id FROM note")[0]
    assert {r[6] for r in rows.values()} == {note_id}
    assert q(ch, "SELECT note_text, note_type_concept_id FROM note") == [(text, 32817)]


def test_image_occurrence_is_one_row_per_received_series(ch: Client) -> None:
    for contract, recs in _dataset():
        write_records(ch, contract, recs)
    rows = q(
        ch,
        "SELECT image_series_uid, rs_n_instances, local_path, rs_patient_id, person_id IS NOT NULL "
        "FROM image_occurrence ORDER BY image_series_uid",
    )
    assert rows == [
        ("1.9.0", 3, "/store/P-1/1.9.0", "P1", True),
        ("1.9.1", 3, "/store/P-1/1.9.1", "P1", True),
    ]
    assert q(ch, "SELECT state, completed FROM retrievals_latest") == [("completed", None)]
    write_records(
        ch,
        "retrieval_status",
        [
            {
                "request_id": "q1",
                "project_id": "P-1",
                "state": "partial",
                "study_instance_uids": ["1.2", "1.3"],
                "expected_instances": 9,
                "completed": 6,
                "time": BASE_TIME + timedelta(minutes=1),
            }
        ],
    )
    assert q(
        ch, "SELECT state, study_instance_uids, expected_instances, completed FROM retrievals_latest"
    ) == [("partial", ["1.2", "1.3"], 9, 6)]


def test_a_partial_retrieval_names_its_missing_instances(ch: Client) -> None:
    write_records(ch, "project_registration", [registered("P-1")])
    write_records(ch, "retrieval_requested", [{"request_id": "q9", "project_id": "P-1", "requester": "ana",
                                               "accession": "A9", "destination_ae": "RESEARCH",
                                               "requested_time": BASE_TIME}])
    write_records(ch, "retrieval_status", [
        {"request_id": "q9", "project_id": "P-1", "state": "queued", "time": BASE_TIME},
        {"request_id": "q9", "project_id": "P-1", "state": "partial", "expected_instances": 4, "completed": 3,
         "failed": 1, "stored": 2, "quarantined": 1, "missing": 1, "missing_sop_instance_uids": ["1.2.3.4"],
         "time": BASE_TIME + timedelta(minutes=1)},
    ])
    latest = "SELECT state, stored, quarantined, missing, missing_sop_instance_uids FROM retrievals_latest"
    assert q(ch, latest + " WHERE request_id = 'q9'") == [("partial", 2, 1, 1, ["1.2.3.4"])]
    assert q(ch, "SELECT stored, missing_sop_instance_uids FROM retrieval_events WHERE state = 'queued'") == [
        (None, [])]


def test_readonly_queries_cannot_write(ch: Client) -> None:
    write_records(ch, "report_finalized", [report("H1")])
    for sql in [
        "INSERT INTO reports (accession) VALUES ('x')",
        "DROP TABLE reports",
        "TRUNCATE TABLE findings",
        "CREATE TABLE t (a Int8) ENGINE = Memory",
        "ALTER TABLE reports DELETE WHERE 1",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    ]:
        with pytest.raises(Exception, match="(?i)readonly"):
            run_readonly(ch, sql, "tsv")
    assert run_readonly(ch, "SELECT accession FROM reports", "csv") == '"accession"\n"H1"\n'
    # the writer's own connection is untouched by the read-only one
    write_records(ch, "report_finalized", [report("H2")])
    assert q(ch, "SELECT count() FROM reports") == [(2,)]


def test_query_formats(ch: Client) -> None:
    write_records(ch, "report_finalized", [report("J1"), report("J2", modality="MR")])
    sql = "SELECT accession, modality FROM reports_latest ORDER BY accession"
    assert run_readonly(ch, sql, "tsv") == "accession\tmodality\nJ1\tCT\nJ2\tMR\n"
    assert str(run_readonly(ch, sql, "jsonl")).splitlines()[0] == '{"accession":"J1","modality":"CT"}'
    assert '"rows": 2' in str(run_readonly(ch, sql, "json"))
    assert str(run_readonly(ch, sql + " FORMAT CSV", "tsv")) == '"J1","CT"\n"J2","MR"\n'
    with pytest.raises(ValueError):
        run_readonly(ch, sql, "xml")


def test_upgrading_an_older_warehouse_adds_the_new_columns_to_tables_and_views(
    ch: Client, ch_settings: Settings, tmp_path: Path
) -> None:
    old = tmp_path / "old-ddl"
    old.mkdir()
    for path in sorted(DDL_DIR.glob("*.sql"))[:3]:  # the release before 004
        shutil.copy(path, old / path.name)
    up = ch_settings.replace(clickhouse={"database": "upgraded"})
    assert len(migrate(ch, up.clickhouse.database, old)) == 3
    assert "certainty" not in [r[0] for r in q(ch, "DESCRIBE TABLE upgraded.findings_latest")]
    # and any later ones
    assert [m.split("_")[0] for m in migrate(ch, up.clickhouse.database)][:2] == ["004", "005"]
    assert "certainty" in [r[0] for r in q(ch, "DESCRIBE TABLE upgraded.findings_latest")]
    assert "patient_id" in [r[0] for r in q(ch, "DESCRIBE TABLE upgraded.received_instances")]
    assert q(ch, "SELECT count() FROM upgraded.deid_map") == [(0,)]
    assert "expected_instances" in [r[0] for r in q(ch, "DESCRIBE TABLE upgraded.retrievals_latest")]
    assert q(ch, "SELECT count() FROM upgraded.note_nlp") == [(0,)]


def test_upgrading_rekeys_the_nlp_tables_and_collapses_the_old_duplicates(
    ch: Client, ch_settings: Settings, tmp_path: Path
) -> None:
    old = tmp_path / "old-ddl"
    old.mkdir()
    for path in sorted(DDL_DIR.glob("*.sql")):
        if path.name < "012":  # the release keyed on processed_time
            shutil.copy(path, old / path.name)
    db = ch_settings.replace(clickhouse={"database": "rekeyed"}).clickhouse.database
    migrate(ch, db, old)
    key = "site, accession, report_version, processed_time"
    for run in ("2026-03-01 10:00:00", "2026-04-01 10:00:00"):  # one report analysed twice, a month apart
        at = f"'default', 'U1', 1, '{run}'"
        ch.command(f"INSERT INTO {db}.report_nlp ({key}, event_id, status, patient_id, nlp_version) "
                   f"VALUES ({at}, 'e', 'final', 'P1', '0.4.0')")
        ch.command(f"INSERT INTO {db}.findings ({key}, finding_idx, concept, nlp_version) "
                   f"VALUES ({at}, 0, 'nodule', '0.4.0')")
        ch.command(f"INSERT INTO {db}.sections ({key}, section_idx, name) VALUES ({at}, 0, 'findings')")
    assert [m[:3] for m in migrate(ch, db)][:2] == ["012", "013"]  # and any later ones
    for t in ("report_nlp", "findings", "sections"):
        ch.command(f"OPTIMIZE TABLE {db}.{t} FINAL")
        assert q(ch, f"SELECT nlp_version, toString(processed_time) FROM {db}.{t}") == [
            ("0.4.0", "2026-04-01 10:00:00.000000")], t
        assert "nlp_version" in q(ch, f"SHOW CREATE TABLE {db}.{t}")[0][0].split("ORDER BY")[1], t
    assert q(ch, f"SELECT concept FROM {db}.findings_latest") == [("nodule",)]
    left = f"SELECT count() FROM system.tables WHERE database = '{db}' AND name LIKE '%pre012%'"
    assert q(ch, left) == [(0,)]
