"""research_ids: every identifier of a retrieval request goes out in research terms, also when the request
names its study by its study_ref (r11 finding 4: a study_ref beside the PACS's accession, the MRN and the
real exam date let all three through to the analysts' retrieval_requests)."""

from __future__ import annotations

from datetime import datetime, timedelta

from processors.ingest.pseudonym import date_shift_days, keyed_identifier, keyed_uid, pseudonym
from processors.ingest.research import open_study_ref, research_request
from radstream.retrieval import cohort_request, research_ids

KEY = b"k" * 32
ACC, MRN, UID, DAY = "RAD20240117001", "MRN7781234", "1.2.826.0.1.3680043.10.1337.42", "20240117"


def _shifted(patient: str, day: str) -> str:
    when = datetime.strptime(day, "%Y%m%d") - timedelta(days=date_shift_days(KEY, patient))
    return when.strftime("%Y%m%d")


def _row(**given: str) -> dict[str, str]:
    return {f: given.get(f, "") for f in ("accession", "study_instance_uid", "patient_id", "study_date",
                                          "study_ref")}


# what reports_latest holds for this study: its research values and its reference
RESEARCH = research_request(KEY, "default", accession=ACC, study_uid=UID, patient_id=MRN, study_date=DAY)
REF = RESEARCH["study_ref"]


def test_a_study_ref_beside_clinical_identifiers_keys_every_one() -> None:
    """``retrieve --study-ref R --accession A --study-uid U --patient-id P --study-date D``: each clinical
    value is keyed (the date moved by the patient's shift) and the reference stays for the worker."""
    ids = research_ids(KEY, "default", _row(study_ref=REF, accession=ACC, study_instance_uid=UID,
                                            patient_id=MRN, study_date=DAY))
    psn = pseudonym(KEY, "default", MRN)
    assert ids == {"accession": keyed_identifier(KEY, "accession", ACC),
                   "study_instance_uid": keyed_uid(KEY, UID), "study_ref": REF,
                   "patient_id": psn, "study_date": _shifted(psn, DAY)}
    assert {k: v for k, v in ids.items() if k != "study_ref"} == {
        k: v for k, v in RESEARCH.items() if k != "study_ref"}  # the analysts' own values of the study
    assert open_study_ref(KEY, ids["study_ref"]).accession == ACC  # what the worker resolves by


def test_a_research_accession_beside_a_real_patient_and_date_keys_them() -> None:
    """A cohort CSV with both kinds of columns: the research accession stays, the MRN is keyed, the real
    date is shifted; without a patient a real date is dropped, never passed on."""
    psn = pseudonym(KEY, "default", MRN)
    ids = research_ids(KEY, "default", _row(study_ref=REF, accession=RESEARCH["accession"], patient_id=MRN,
                                            study_date=DAY))
    assert (ids["accession"], ids["patient_id"], ids["study_date"]) == (RESEARCH["accession"], psn,
                                                                         _shifted(psn, DAY))
    ids = research_ids(KEY, "default", _row(study_ref=REF, accession=ACC, study_date=DAY))
    assert (ids["accession"], ids["patient_id"], ids["study_date"]) == (
        keyed_identifier(KEY, "accession", ACC), None, None)


def test_the_referenced_studys_own_uid_or_date_beside_its_ref_is_keyed() -> None:
    """Neither the form nor the neighbours tell a UID or a date: the reference does (it is opened in the
    process, nothing is shown)."""
    psn = pseudonym(KEY, "default", MRN)
    ids = research_ids(KEY, "default", _row(study_ref=REF, study_instance_uid=UID, study_date=DAY))
    assert (ids["study_instance_uid"], ids["study_date"]) == (keyed_uid(KEY, UID), _shifted(psn, DAY))


def test_a_pure_study_ref_row_is_unchanged() -> None:
    """A row of the analysts' tables (reference, research accession, pseudonym, keyed UID, shifted date)."""
    row = _row(**{k: v or "" for k, v in RESEARCH.items()})
    assert research_ids(KEY, "default", row) == RESEARCH
    assert research_ids(KEY, "default", _row(study_ref=REF)) == {
        "accession": None, "study_instance_uid": None, "study_ref": REF, "patient_id": None,
        "study_date": None}
    foreign = research_ids(KEY, "default", _row(study_ref="sr1.notours", study_date="20240101"))
    assert foreign["study_date"] == "20240101"  # not this key's reference: the worker refuses the request


def test_a_pure_clinical_row_is_keyed_as_before() -> None:
    row = _row(accession=ACC, study_instance_uid=UID, patient_id=MRN, study_date=DAY)
    assert research_ids(KEY, "default", row) == RESEARCH
    rec = cohort_request(KEY, "default", row, project="P-7", destination="RESEARCH", requester="ana",
                         now=datetime(2026, 1, 1))
    assert (rec["accession"], rec["patient_id"], rec["study_ref"]) == (
        RESEARCH["accession"], RESEARCH["patient_id"], REF)
