"""End to end: a patient's report and the images of the same patient, retrieved into a de-identified
project, move their dates by the same number of days and carry the same research identifiers (accession,
study UID, patient pseudonym); the report row's study_ref opens to the clinical identifiers.

A report for the seeded study's patient is ingested (file backfill: parsers, pseudonyms, NLP and text
de-identification into the warehouse, real chDB); the study is C-MOVEd from the real Orthanc into a
de-identified project through our storage SCP. The shift seen in the warehouse text and the shift seen in
the images' StudyDate must be equal. The DICOM project set-up is in ``deid_project_store`` only.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest

from processors.ingest.research import open_study_ref
from radstream.config import Settings
from radstream.text_deid import research_key
from sinks.dicom.projects import StaticProjects
from sinks.dicom.scp import ResearchStore, ScpConfig
from tests.sinks.dicom.conftest import orthanc_state, pacs_settings, spec  # noqa: F401, F811 - fixtures
from tests.sinks.dicom.helpers import project

pytestmark = pytest.mark.integration

KEY = "e2e-date-shift-key-0123456789abcdef"
PROJECT = "IRB-TEXTDATES"


def deid_project_store(settings: Settings) -> ResearchStore:
    """A research store that de-identifies ``PROJECT`` with the installation's key (ingest section)."""
    cfg = ScpConfig.of(settings.research, settings.ingest)
    return ResearchStore(cfg, projects=StaticProjects([project(PROJECT, identified=False)]))


def test_text_and_image_dates_shift_by_the_same_days(pacs_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    from radstream.backfill import run_backfill
    from sinks.clickhouse.client import open_client
    from sinks.dicom.expect import Registry
    from sinks.dicom.find import Pacs
    from sinks.dicom.move import c_move_study

    study = spec("C", 2)  # seeded in Orthanc by the DICOM tests' session fixture
    exam = datetime.strptime(study.study_date, "%Y%m%d").date()
    s = pacs_settings.replace(ingest={"pseudonym_key": KEY})
    text = (
        f"EXAM: CT CHEST\nCOMPARISON: CT dated {exam:%m/%d/%Y}.\n"
        "FINDINGS: 6 mm nodule in the left lower lobe.\nIMPRESSION: Follow-up CT in 12 months."
    )
    reports = tmp_path / "reports.jsonl"
    reports.write_text(
        json.dumps(
            {
                "accession": study.accession,
                "patient_id": study.patient_id,
                "study_instance_uid": study.study_uid,
                "exam_time": f"{exam:%Y-%m-%d}T10:00:00Z",
                "visit": "VISIT-E2E-1",
                "radiologist": "Moreau^Claire",
                "modality": "CT",
                "status": "final",
                "text": text,
            }
        )
        + "\n"
    )
    summary = run_backfill(s, [reports], workers=0)
    assert summary.loaded == 1

    client = open_client(s.clickhouse)
    try:
        (stored,) = client.query("SELECT text, patient_id FROM reports_latest").result_rows[0:1]
        (original,) = client.query("SELECT text FROM report_text_original").result_rows[0]
        research = client.query("SELECT accession, study_instance_uid, toDate(exam_time), study_ref, "
                                "visit_number, author FROM reports_latest").result_rows[0]
        columns = client.query("SELECT * FROM reports_latest").result_rows[0]
    finally:
        client.close()
    assert original == text and f"{exam:%m/%d/%Y}" not in stored[0]
    m = re.search(r"CT dated (\d\d)/(\d\d)/(\d{4})", stored[0])
    assert m, stored[0]
    text_shift = (exam - date(int(m.group(3)), int(m.group(1)), int(m.group(2)))).days

    store = deid_project_store(s)
    Registry(store.cfg.store_dir).register(study.study_uid, PROJECT, "e2e", "RESEARCH")
    store.start()
    try:
        result = c_move_study(Pacs.of(s.pacs), "RESEARCH", study.study_uid)
    finally:
        store.stop()
    assert result.outcome == "completed"
    files = list((store.cfg.store_dir / PROJECT).rglob("*.dcm"))
    assert files
    image_dates = {pydicom.dcmread(p).StudyDate for p in files}
    patients = {pydicom.dcmread(p).PatientID for p in files}
    assert len(image_dates) == 1 and patients == {stored[1]}  # the warehouse's pseudonym is the images'
    image_shift = (exam - datetime.strptime(image_dates.pop(), "%Y%m%d").date()).days
    assert 1 <= text_shift <= 365
    assert text_shift == image_shift
    # the structured columns: research values that equal the images', the exam date shifted alike
    accession, study_uid, exam_date, ref, visit, author = research
    image = pydicom.dcmread(files[0])
    assert (accession, study_uid) == (image.AccessionNumber, image.StudyInstanceUID)
    assert accession != study.accession and study_uid != study.study_uid
    assert (exam - exam_date).days == text_shift
    clinical = (study.accession, study.study_uid, study.patient_id, "VISIT-E2E-1", "Moreau")
    assert not [v for v in clinical for c in columns if isinstance(c, str) and v in c]
    assert visit.startswith("VIS-") and author.startswith("STA-")
    opened = open_study_ref(research_key(s), ref)
    assert (opened.accession, opened.study_instance_uid, opened.patient_id, opened.study_date) == (
        study.accession, study.study_uid, None, f"{exam:%Y%m%d}")  # ingest keyed the patient id first
