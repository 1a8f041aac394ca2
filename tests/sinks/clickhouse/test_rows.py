"""Unit tests: contract records -> warehouse rows (no ClickHouse, no Kafka)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas import SCHEMA_DIR
from sinks.clickhouse.rows import COLUMNS, CONTRACT_OF, TABLES_OF, Origin, rows_for, rows_for_many
from streams import audit, serde

from .factories import BASE_TIME, finding, findings, report

T0 = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


def _as_dicts(rows: dict[str, list[list[object]]], table: str) -> list[dict[str, object]]:
    return [dict(zip(COLUMNS[table], r, strict=True)) for r in rows[table]]


def sample_records() -> dict[str, dict[str, object]]:
    rep = report("A1", 3, patient_class=None)
    return {
        "report_finalized": rep,
        "report_findings": findings(
            rep,
            [finding("nodule", size_mm=9.0), finding("effusion", negated=True)],
            assessments=[("Lung-RADS", "4A")],
            critical=["pneumothorax"],
            communication_after=timedelta(minutes=12),
            chest_labels={"Nodule": "positive"},
            measurements=[
                {
                    "text": "9 mm",
                    "start": 3,
                    "end": 7,
                    "dims_mm": [9.0, 7.0],
                    "max_mm": 9.0,
                    "prior_max_mm": None,
                    "finding": 0,
                }
            ],
            recommendations=[
                {
                    "text": "CT in 3 months",
                    "start": 20,
                    "end": 34,
                    "kind": "imaging_followup",
                    "modality": "CT",
                    "interval_days_min": 90,
                    "interval_days_max": 90,
                    "guideline": None,
                }
            ],
        ),
        "retrieval_requested": {
            "request_id": "q1",
            "project_id": "P-7",
            "requester": "ana",
            "accession": "A1",
            "destination_ae": "RESEARCH",
            "requested_time": T0,
        },
        "retrieval_status": {
            "request_id": "q1",
            "project_id": "P-7",
            "state": "completed",
            "completed": 3,
            "failed": 0,
            "time": T0 + timedelta(seconds=9),
        },
        "received_instance": {
            "project_id": "P-7",
            "calling_ae": "ORTHANC",
            "called_ae": "RESEARCH",
            "study_instance_uid": "1.2",
            "series_instance_uid": "1.2.3",
            "sop_instance_uid": "1.2.3.4",
            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "path": "/x/1.2.3.4.dcm",
            "size_bytes": 1234,
            "time": T0,
            "deidentified": True,
            "accession": "ACC-1F",
            "patient_id": "psn-77",
        },
        "received_original": {
            "project_id": "P-7",
            "study_instance_uid": "1.2",
            "series_instance_uid": "1.2.3",
            "sop_instance_uid": "1.2.3.4",
            "accession": "ACC-1F",
            "patient_id": "psn-77",
            "original_sop_instance_uid": "9.9.9",
            "original_series_instance_uid": "9.9",
            "original_study_instance_uid": "9",
            "original_accession": "A-REAL",
            "original_patient_id": "MRN-REAL",
            "time": T0,
        },
        "project_registration": {
            "project_id": "P-7",
            "identified": True,
            "irb_reference": "IRB-2026-001",
            "retain_modified_dates": True,
            "retain_patient_characteristics": False,
            "retain_device_identity": False,
            "retain_uids": False,
            "clean_descriptors": True,
            "private_safe_list": ["(0019,10xx)"],
            "allow_burned_in_risk": False,
            "destination_ae": "RESEARCH",
            "owner": "ana",
            "registered_by": "steward1",
            "active": True,
            "time": T0,
        },
        "quarantine_event": {
            "action": "released",
            "project_id": "P-7",
            "request_id": "q1",
            "study_instance_uid": "9",
            "series_instance_uid": "9.9",
            "sop_instance_uid": "9.9.9",
            "sop_class_uid": "1.2.840.10008.5.1.4.1.1.6.1",
            "modality": "US",
            "reason": "BurnedInAnnotation=YES",
            "path": "/x/1.2.3.4.dcm",
            "size_bytes": 1234,
            "actor": "steward1",
            "note": "checked: no text in the pixels",
            "time": T0,
        },
        "audit_event": audit.event("ana", "sql.query", allowed=False, query="SELECT * FROM deid_map",
                                   tables=["rs.deid_map"], duration_ms=1.5, reason="refused"),
        "dead_letter": {
            "stage": "nlp-agent",
            "value": b"\x00garbage",
            "error_type": "SerdeError",
            "error": "not Avro",
            "time": T0,
        },
    }


@pytest.mark.parametrize("contract", sorted(TABLES_OF))
def test_every_row_fits_its_table_and_survives_the_wire(contract: str) -> None:
    schema = CONTRACT_OF.get(contract, contract)
    rec = sample_records()[schema]
    decoded = serde.decode(schema, serde.encode(schema, rec))  # what the sink really sees
    rows = rows_for(contract, decoded, Origin("topic-x", 1, 42))
    assert set(rows) == set(TABLES_OF[contract])
    for table, block in rows.items():
        for row in block:
            assert len(row) == len(COLUMNS[table]), table
            if "kafka_offset" in COLUMNS[table]:
                d = dict(zip(COLUMNS[table], row, strict=True))
                assert (d["kafka_topic"], d["kafka_partition"], d["kafka_offset"]) == ("topic-x", 1, 42)


def test_every_retrieval_request_and_cancel_is_audited() -> None:
    req = sample_records()["retrieval_requested"]
    (row,) = _as_dicts(rows_for("retrieval_requested", req), "audit_log")
    assert (row["event_id"], row["actor"], row["action"], row["project"], row["allowed"]) == (
        "retrieval:q1:request", "ana", "retrieval.request", "P-7", True)
    (cancel,) = _as_dicts(rows_for("retrieval_requested", {**req, "action": "cancel"}), "audit_log")
    assert cancel["action"] == "retrieval.cancel" and cancel["event_id"] == "retrieval:q1:cancel"
    ev = serde.decode("audit_event", serde.encode("audit_event", sample_records()["audit_event"]))
    (row,) = _as_dicts(rows_for("audit_event", ev), "audit_log")
    assert row["allowed"] is False and row["tables"] == ["rs.deid_map"]
    assert '"reason": "refused"' in str(row["detail"])


def test_report_rows_fill_exam_time_and_blank_optionals() -> None:
    rep = report("A9", 2, patient_class=None)
    (row,) = _as_dicts(rows_for("report_finalized", rep), "report_versions")
    assert row["exam_time"] == rep["observation_time"]
    assert row["patient_class"] == "" and row["source_message_id"] == ""
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("", -1, -1)
    rep2 = report("A9", 2, observation_time=None)
    (row2,) = _as_dicts(rows_for("report_finalized", rep2), "reports")
    assert row2["exam_time"] == rep2["status_time"]
    rep3 = report("A9", 2, observation_time=None, status_time=None)
    (row3,) = _as_dicts(rows_for("report_finalized", rep3), "reports")
    assert row3["exam_time"] == rep3["received_time"]


def test_findings_rows_keep_indices_modifiers_and_links() -> None:
    rec = sample_records()["report_findings"]
    rows = rows_for("report_findings", rec)
    f = _as_dicts(rows, "findings")
    assert [x["finding_idx"] for x in f] == [0, 1]
    assert [x["concept"] for x in f] == ["nodule", "effusion"]
    assert f[1]["negated"] is True and f[0]["size_mm"] == 9.0 and f[0]["laterality"] == ""
    (m,) = _as_dicts(rows, "measurements")
    assert m["finding_concept"] == "nodule" and m["dims_mm"] == [9.0, 7.0]
    (c,) = _as_dicts(rows, "critical_results")
    assert c["communication_time"] == rec["communication"]["time"]  # type: ignore[index]
    (hdr,) = _as_dicts(rows, "report_nlp")
    assert (hdr["n_findings"], hdr["n_critical"]) == (2, 1)
    (a,) = _as_dicts(rows, "assessments")
    assert (a["system"], a["category"]) == ("Lung-RADS", "4A")
    (lab,) = _as_dicts(rows, "chest_labels")
    assert (lab["label"], lab["value"]) == ("Nodule", "positive")
    keys = {tuple(r[:4]) for table in TABLES_OF["report_findings"] for r in rows[table]}
    assert keys == {("default", "A1", 3, rec["processed_time"])}


def test_measurement_without_a_valid_finding_index() -> None:
    rep = report("A2")
    rec = findings(
        rep,
        [],
        measurements=[
            {
                "text": "3 cm",
                "start": 0,
                "end": 4,
                "dims_mm": [30.0],
                "max_mm": 30.0,
                "prior_max_mm": 20.0,
                "finding": 5,
            }
        ],
    )
    (m,) = _as_dicts(rows_for("report_findings", rec), "measurements")
    assert m["finding_concept"] == "" and m["finding_idx"] == 5 and m["prior_max_mm"] == 20.0


def test_dead_letter_rows_hash_value_and_mark_missing_positions() -> None:
    rec = sample_records()["dead_letter"]
    (row,) = _as_dicts(rows_for("dead_letter", rec), "dead_letters")
    assert row["value_sha256"] == hashlib.sha256(b"\x00garbage").hexdigest()
    assert (row["original_partition"], row["original_offset"], row["original_topic"]) == (-1, -1, "")
    assert row["value"] == b"\x00garbage"


def test_received_instance_rows_never_carry_the_originals_which_go_to_the_restricted_map() -> None:
    rec = sample_records()["received_instance"]
    rows = rows_for("received_instance", rec)
    assert not rows["received_instances_identified"]
    assert _as_dicts(rows, "received_instances")[0]["patient_id"] == "psn-77"
    # an identified project's instance carries the hospital's values: the steward-only table, never this one
    identified = rows_for("received_instance", {**rec, "deidentified": False, "patient_id": "MRN-REAL"})
    assert not identified["received_instances"] and len(identified["received_instances_identified"]) == 1
    restricted = rows_for("received_original", sample_records()["received_original"])
    assert set(restricted) == {"deid_map"}
    mapping = {(r["kind"], r["original"], r["pseudonym"]) for r in _as_dicts(restricted, "deid_map")}
    assert mapping == {("patient_id", "MRN-REAL", "psn-77"), ("accession", "A-REAL", "ACC-1F"),
                       ("study_instance_uid", "9", "1.2"), ("series_instance_uid", "9.9", "1.2.3"),
                       ("sop_instance_uid", "9.9.9", "1.2.3.4")}


def test_the_shared_received_contract_has_no_field_for_originals() -> None:
    """Originals travel only on the restricted topic (issue 13): v3 of received_instance cannot carry them."""
    fields = {f["name"] for f in json.loads((SCHEMA_DIR / "received_instance.avsc").read_text())["fields"]}
    assert not {f for f in fields if "original" in f}
    v2 = {k: None for k in ("original_sop_instance_uid", "original_patient_id")}
    decoded = serde.decode("received_instance", serde.encode("received_instance",
                                                             sample_records()["received_instance"] | v2))
    assert not {k for k in decoded if k.startswith("original_")}


def test_timestamps_from_integers_are_utc_micros() -> None:
    rep = report("A3", exam_time=BASE_TIME)
    rep["received_time"] = int(BASE_TIME.timestamp() * 1_000_000)
    (row,) = _as_dicts(rows_for("report_finalized", rep), "report_versions")
    assert row["received_time"] == BASE_TIME


def test_unknown_contract_is_refused() -> None:
    with pytest.raises(ValueError):
        rows_for("nope", {})
    assert rows_for_many("report_finalized", []) == {}


def test_sink_static_membership_per_embedded_store_and_overridable() -> None:
    from radstream.config import Settings
    from sinks.clickhouse.sink import static_instance_id

    a = Settings(state_dir="/tmp/a")
    b = Settings(state_dir="/tmp/b")
    assert static_instance_id(a.clickhouse).startswith("clickhouse-sink-")
    assert static_instance_id(a.clickhouse) == static_instance_id(a.clickhouse) != static_instance_id(
        b.clickhouse)
    assert static_instance_id(a.replace(clickhouse={"sink_instance_id": ""}).clickhouse) == ""
    assert static_instance_id(a.replace(clickhouse={"sink_instance_id": "sink-1"}).clickhouse) == "sink-1"
    # several sinks share a server
    assert static_instance_id(a.replace(clickhouse={"url": "http://ch:8123"}).clickhouse) == ""


def test_a_request_by_clinical_identifiers_keeps_them_out_of_the_analysts_table() -> None:
    """A clinical system's request (no study reference) by the PACS's own values, a device's UUID-derived
    2.25 UID among them: the analysts' table gets none of them (a UID's form says nothing), the audit
    entry (stewards) keeps the request as made. A research request (with its study_ref) shows as given."""
    req = {**sample_records()["retrieval_requested"], "accession": "RAD-77",
           "study_instance_uid": "2.25.329800735698586629295641978511506172918", "patient_id": "MRN-9",
           "study_date": "20260304", "study_ref": None}
    rows = rows_for("retrieval_requested", req)
    (shown,) = _as_dicts(rows, "retrieval_requests")
    assert (shown["accession"], shown["study_instance_uid"], shown["patient_id"], shown["study_date"]) == (
        "", "", "", "")
    (audited,) = _as_dicts(rows, "audit_log")
    detail = json.loads(audited["detail"])
    made = [detail[f] for f in ("accession", "study_instance_uid", "patient_id", "study_date")]
    assert made == ["RAD-77", "2.25.329800735698586629295641978511506172918", "MRN-9", "20260304"]
    research = {**req, "accession": "ACC-0123456789AB", "study_instance_uid": "2.25.1234",
                "patient_id": None, "study_date": None, "study_ref": "sr1.abc"}
    (shown,) = _as_dicts(rows_for("retrieval_requested", research), "retrieval_requests")
    assert (shown["accession"], shown["study_instance_uid"], shown["study_ref"]) == (
        "ACC-0123456789AB", "2.25.1234", "sr1.abc")
