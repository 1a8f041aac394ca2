"""The leak test: instances with a traceable value in every E.1-1 attribute pydicom can set (nested, private,
curves, overlays) come out of de-identification with none of them, in any byte or any parsed element.

Unit level: ``Deidentifier.apply_file`` on the corpus. Integration level: the corpus is uploaded to the
real Orthanc, moved to the real research SCP configured for a de-identified project, and every stored
file is scanned.
"""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from radstream.config import Settings
from sinks.dicom import deid
from sinks.dicom.deid.table import library_table
from sinks.dicom.expect import Registry
from sinks.dicom.find import Pacs
from sinks.dicom.move import c_move_study
from sinks.dicom.projects import StaticProjects
from sinks.dicom.scp import ResearchStore, ScpConfig

from . import leak_corpus
from .helpers import project as project_of

KEY = b"leak-test-key-of-32-bytes-------"
# options that retain no identifying value: every traceable value must be gone
NOTHING_RETAINED = [
    deid.DeidOptions(),
    deid.DeidOptions(retain_modified_dates=False),
    deid.DeidOptions(clean_descriptors=True),
]


def test_the_corpus_covers_the_table_and_is_traceable() -> None:
    """The test can fail: every table attribute pydicom knows is set, nested and private values are there,
    and the encoded instances are full of traceable values before de-identification."""
    lib, _ = library_table()
    corpus = leak_corpus.build()
    known = {t for t, _ in leak_corpus.table_attributes()}
    assert len(known) > 550 and corpus.set_tags == known
    assert known >= {t for t in lib if t >> 16 not in leak_corpus.SKIP_GROUPS} - leak_corpus.SKIP_TAGS \
        - {t for t in lib if not _known(t)}
    assert {ds.Modality for ds in corpus.instances} == {"CT", "MR", "CR", "US"}
    for ds in corpus.instances:
        raw = leak_corpus.encode(ds)
        paths = list(leak_corpus.element_hits(leak_corpus.read(raw)))
        assert len(paths) > 1000
        assert any("] > " in p and "PatientName" in p for p in paths)  # nested
        assert any(p.startswith("(0009,") for p in paths) and any(p.startswith("(6000,") for p in paths)
        assert {tok for tok, _ in leak_corpus.byte_hits(raw)} == set(leak_corpus.TOKENS)
        # attributes the table does not list: UIDs, names, URLs, at the top and nested; an unknown public
        # attribute (UN holding a Patient's Name); a DT range whose second side is a date too
        for tag, _ in leak_corpus.unlisted_identifying():
            assert any(p.startswith(f"({tag >> 16:04X},{tag & 0xFFFF:04X})") for p in paths), f"{tag:08X}"
        assert any("] > (0008,1167)" in p for p in paths) and any("] > (0014,2006)" in p for p in paths)
        assert any(p.startswith("(0022,1FF0)") for p in paths) and b"ZQXLEAK^IN AN UNKNOWN" in raw
        assert raw.count(leak_corpus.DATE.encode() + leak_corpus.TIME.encode() + b"-" +
                         leak_corpus.DATE.encode()) == 1


def _known(tag: int) -> bool:
    from pydicom.datadict import dictionary_has_tag

    return dictionary_has_tag(tag)


@pytest.mark.parametrize("options", NOTHING_RETAINED, ids=["default", "no-dates", "clean-descriptors"])
def test_no_traceable_value_survives_apply_file(options: deid.DeidOptions) -> None:
    d = deid.Deidentifier(KEY)
    for ds in leak_corpus.build().instances:
        out, _ = d.apply_file(leak_corpus.encode(ds), "LEAK", options)
        assert leak_corpus.byte_hits(out) == [], ds.Modality
        assert list(leak_corpus.element_hits(leak_corpus.read(out))) == [], ds.Modality
        assert leak_corpus.read(out).PatientIdentityRemoved == "YES"


# -- integration: Orthanc -> C-MOVE -> our SCP ---------------------------------------------------------
def deidentified_project_store(settings: Settings, study_uid: str, project: str) -> ResearchStore:
    """The research SCP with ``project`` de-identified and ``study_uid`` expected for it (the one place that
    knows how a de-identified project is configured)."""
    cfg = ScpConfig.of(settings.research, settings.ingest)
    cfg.deid_key = KEY
    # de-identified (the default); the corpus's ultrasound instances carry no burned-in text
    registered = project_of(project, identified=False, allow_burned_in_risk=True)
    store = ResearchStore(cfg, projects=StaticProjects([registered]))
    Registry(cfg.store_dir).register(study_uid, project, "leak-request", "RESEARCH")
    return store


def _upload(settings: Settings, files: list[bytes]) -> None:
    conn = http.client.HTTPConnection(settings.pacs.host, settings.pacs.http_port, timeout=60)
    try:
        for body in files:
            conn.request("POST", "/instances", body=body, headers={"Content-Type": "application/dicom"})
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200, data[:300]
    finally:
        conn.close()


@pytest.mark.integration
def test_no_traceable_value_survives_retrieval(pacs_settings: Settings, tmp_path: Path) -> None:
    corpus = leak_corpus.build(study_key=2)
    for ds in corpus.instances:
        # an instance that carries an encapsulated document goes to the quarantine, never through the
        # profile (test_store_safety); here every instance must pass the profile (the unit tests above
        # cover EncapsulatedDocument's action)
        del ds.EncapsulatedDocument
    files = [leak_corpus.encode(ds) for ds in corpus.instances]
    _upload(pacs_settings, files)
    study_uid = str(corpus.instances[0].StudyInstanceUID)
    store = deidentified_project_store(pacs_settings, study_uid, "LEAK")
    store.start()
    try:
        result = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", study_uid)
    finally:
        store.stop()
    assert result.outcome == "completed", result
    # the project tree is what researchers get (the store root also holds the SCP's bookkeeping)
    stored = sorted(p for p in (store.cfg.store_dir / "LEAK").rglob("*") if p.is_file())
    dicom = [p for p in stored if p.suffix == ".dcm"]
    assert len(dicom) == len(files)
    for p in stored:  # every stored byte, not only the images
        assert leak_corpus.byte_hits(p.read_bytes()) == [], p
    for p in dicom:
        ds = leak_corpus.read(p.read_bytes())
        assert list(leak_corpus.element_hits(ds)) == [], p
        assert ds.PatientIdentityRemoved == "YES" and ds.Modality in leak_corpus.MODALITIES
