"""The research view of a report event: keyed identifiers, shifted times, the encrypted study reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.ingest.model import ReportEvent
from processors.ingest.pseudonym import date_shift_days, keyed_identifier, keyed_uid, pseudonym
from processors.ingest.research import (
    StudyRefError,
    identifier_fields,
    looks_keyed,
    open_study_ref,
    research_findings,
    research_report,
    study_ref,
)

KEY = b"research-key-for-tests-0123456789"
EXAM = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
SIGNED = datetime(2026, 3, 4, 11, 0, tzinfo=UTC)


def report(**changes: object) -> dict[str, object]:
    ev = ReportEvent(
        site="north", accession="RAD2026-000123", report_id="F-77", version=int(SIGNED.timestamp() * 1e6),
        status="final", patient_id="MRN-445566", text="Chest radiograph. No pneumothorax.",
        source_format="hl7v2", received_time=SIGNED + timedelta(seconds=3), visit_number="V-9001",
        study_instance_uid="1.2.840.113619.2.55.3.4", observation_time=EXAM, status_time=SIGNED,
        author="Lee^Anna", source_message_id="MSG000042", placer_order_number="P-1",
        filler_order_number="F-77", patient_class="O", modality="CR")
    return {**ev.to_avro(), **changes}


def test_every_clinical_identifier_is_replaced_by_its_keyed_value() -> None:
    rec = report()
    out = research_report(rec, KEY)
    psn = pseudonym(KEY, "north", "MRN-445566")
    assert out["patient_id"] == psn and out["patient_id_is_pseudonym"] is True
    assert out["accession"] == keyed_identifier(KEY, "accession", "RAD2026-000123")
    assert out["study_instance_uid"] == keyed_uid(KEY, "1.2.840.113619.2.55.3.4")
    for name, kind in identifier_fields().items():
        assert out[name] == keyed_identifier(KEY, kind, str(rec[name])), name
    originals = {str(rec[f]) for f in (*identifier_fields(), "patient_id", "study_instance_uid")}
    flat = repr({k: v for k, v in out.items() if k != "study_ref"})
    assert not [o for o in originals if o in flat]  # no original value anywhere in the record
    assert out["text"] == rec["text"] and out["modality"] == "CR" and out["patient_class"] == "O"


def test_times_move_by_the_patients_date_shift_and_keep_their_intervals() -> None:
    rec = report()
    out = research_report(rec, KEY)
    days = date_shift_days(KEY, pseudonym(KEY, "north", "MRN-445566"))
    assert 1 <= days <= 365
    for name in ("observation_time", "status_time", "received_time"):
        assert out[name] == rec[name] - timedelta(days=days), name
    assert out["status_time"] - out["observation_time"] == SIGNED - EXAM
    assert out["version"] == rec["version"] - days * 86_400 * 10**6  # a status-time version moves too
    seq = research_report(report(version=7), KEY)  # a source sequence is not a time: kept
    assert seq["version"] == 7


def test_same_patient_same_shift_other_patient_other_values() -> None:
    a = research_report(report(), KEY)
    b = research_report(report(accession="RAD2026-000999", status_time=SIGNED + timedelta(days=40)), KEY)
    assert a["patient_id"] == b["patient_id"]
    assert (rec_shift(a) == rec_shift(b))
    c = research_report(report(patient_id="MRN-1"), KEY)
    assert c["patient_id"] != a["patient_id"]


def rec_shift(out: dict[str, object]) -> timedelta:
    return EXAM - out["observation_time"]  # type: ignore[operator]


def test_an_ingest_pseudonym_is_kept_and_not_put_into_the_reference() -> None:
    rec = report(patient_id="psn-0123456789abcdef0123456789abcdef", patient_id_is_pseudonym=True)
    out = research_report(rec, KEY)
    assert out["patient_id"] == rec["patient_id"]
    ref = open_study_ref(KEY, out["study_ref"])
    assert ref.patient_id is None  # the original is not known here


def test_the_study_reference_opens_to_the_clinical_identifiers_with_the_key_only() -> None:
    out = research_report(report(), KEY)
    ref = open_study_ref(KEY, out["study_ref"])
    assert (ref.site, ref.accession, ref.study_instance_uid, ref.patient_id, ref.study_date) == (
        "north", "RAD2026-000123", "1.2.840.113619.2.55.3.4", "MRN-445566", "20260304")
    assert "RAD2026" not in out["study_ref"] and "MRN" not in out["study_ref"]
    assert out["study_ref"] == research_report(report(), KEY)["study_ref"]  # deterministic: idempotent rows
    with pytest.raises(StudyRefError, match="does not open"):
        open_study_ref(b"another installation's key 000000", out["study_ref"])
    damaged = out["study_ref"][:-3] + ("A" if out["study_ref"][-3] != "A" else "B") + out["study_ref"][-2:]
    with pytest.raises(StudyRefError):
        open_study_ref(KEY, damaged)
    with pytest.raises(StudyRefError, match="not a study reference"):
        open_study_ref(KEY, "RAD2026-000123")


def test_findings_carry_the_reports_research_identifiers() -> None:
    rec = report()
    out = research_report(rec, KEY)
    findings = {"event_id": rec["event_id"], "site": "north", "accession": rec["accession"],
                "patient_id": rec["patient_id"], "report_version": rec["version"], "findings": []}
    got = research_findings(findings, out, KEY)
    assert got["accession"] == out["accession"] and got["patient_id"] == out["patient_id"]
    assert got["study_ref"] == out["study_ref"] and got["report_version"] == out["version"]


def test_looks_keyed_tells_pseudonyms_by_form_and_never_uids() -> None:
    out = research_report(report(), KEY)
    for value in (out["accession"], out["patient_id"], out["study_ref"]):
        assert looks_keyed(value), value
    # a keyed UID and a device's UUID-derived UID have the same form: neither counts as research by form
    device = "2.25.329800735698586629295641978511506172918"
    clinical = ("RAD2026-000123", "MRN-445566", "1.2.840.113619.2.55.3.4", "", None)
    for value in (out["study_instance_uid"], device, *clinical):
        assert not looks_keyed(value), value


@settings(max_examples=60, deadline=None)
@given(accession=st.text(min_size=1, max_size=40), uid=st.none() | st.text(max_size=64),
       patient=st.text(max_size=40))
def test_any_identifiers_round_trip_through_the_reference(accession: str, uid: str | None,
                                                          patient: str) -> None:
    rec = report(accession=accession, study_instance_uid=uid, patient_id=patient)
    ref = open_study_ref(KEY, study_ref(KEY, rec))
    assert ref.accession == accession and ref.study_instance_uid == (uid or None)
    assert ref.patient_id == (patient or None)
