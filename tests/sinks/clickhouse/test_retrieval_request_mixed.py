"""The analysts' retrieval_requests holds research values only, also for a request that names its study by
its study_ref beside the PACS's own identifiers (r11 finding 4): the sink blanks what is not in research
form (it has no key) and keeps the request as made in the stewards' audit entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.access import ROLES_DIR, policy_for
from sinks.clickhouse.query import run_readonly
from sinks.clickhouse.rows import COLUMNS, rows_for
from sinks.clickhouse.sink import write_records

T0 = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
CLINICAL = {"accession": "RAD20240117001", "study_instance_uid": "1.2.826.0.1.3680043.10.1337.42",
            "patient_id": "MRN7781234", "study_date": "20240117"}


def _request(rid: str, **ids: str | None) -> dict[str, object]:
    return {"request_id": rid, "action": "request", "project_id": "IRB-7", "requester": "steward1",
            "destination_ae": "RESEARCH", "source": "manual", "requested_time": T0, **ids}


def _shown(rec: dict[str, object]) -> dict[str, object]:
    (row,) = rows_for("retrieval_requested", rec)["retrieval_requests"]
    return dict(zip(COLUMNS["retrieval_requests"], row, strict=True))


def test_a_study_ref_beside_clinical_identifiers_stores_none_of_them_for_analysts() -> None:
    shown = _shown(_request("m1", study_ref="sr1.abc", **CLINICAL))
    assert [shown[f] for f in CLINICAL] == ["", "", "", ""] and shown["study_ref"] == "sr1.abc"
    (audited,) = rows_for("retrieval_requested", _request("m1", study_ref="sr1.abc", **CLINICAL))["audit_log"]
    detail = json.loads(audited[COLUMNS["audit_log"].index("detail")])
    assert {f: detail[f] for f in CLINICAL} == CLINICAL  # the stewards' audit entry: the request as made
    # one clinical value is enough to show the row was made from clinical values: its UID and date go too
    shown = _shown(_request("m2", study_ref="sr1.abc", accession="ACC-0123456789AB", patient_id="MRN7781234",
                            study_instance_uid="2.25.77", study_date="20240117"))
    assert [shown[f] for f in CLINICAL] == ["ACC-0123456789AB", "", "", ""]


def test_research_requests_show_as_given() -> None:
    """With its study reference: research accession, pseudonym, a UID (taken as research beside a
    reference) and the (shifted) date beside the pseudonym, as a standing cohort or the CLI sends them."""
    ids = {"accession": "ACC-0123456789AB", "study_instance_uid": "2.25.1234",
           "patient_id": "psn-0123456789abcdef0123456789abcdef", "study_date": "20230601"}
    shown = _shown(_request("r1", study_ref="sr1.abc", **ids))
    assert {f: shown[f] for f in ids} == ids


def test_the_analyst_reads_no_clinical_value_of_a_mixed_request(ch: Client) -> None:
    """Through the real writer into chDB and the analyst's policy."""
    write_records(ch, "retrieval_requested", [_request("m3", study_ref="sr1.abc", **CLINICAL)])
    out = str(run_readonly(ch, "SELECT accession, study_instance_uid, patient_id, study_date, study_ref "
                               "FROM retrieval_requests", "tsv", policy=policy_for(["analyst"], ROLES_DIR)))
    assert "sr1.abc" in out
    assert not [v for v in CLINICAL.values() if v in out], out
