"""A quarantine action removes the quarantined copy only once the broker confirmed its events (real
Kafka). The quarantine topic here refuses every record (max.message.bytes=1), which fails a delivery
for good as a missing ACL does: the copy stays, the command exits non-zero, and the attempt is audited
``allowed`` false with the reason (docs/retrieval.md: a steward's attempt that failed afterwards)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian

from radstream.cli import main
from radstream.config import Settings
from sinks.dicom import synth
from sinks.dicom.quarantine import Entry, Quarantine
from tests.streams.test_audit_delivery import refusing_topic

from .helpers import audit_events, register_projects, role_env

STUDY = "1.2.826.0.1.3680043.10.1337.91"
SERIES = STUDY + ".1"


def _quarantined(settings: Settings, project: str, n: int) -> tuple[Quarantine, Entry]:
    sop = f"{SERIES}.{n}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = synth.CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.SOPClassUID, ds.SOPInstanceUID = synth.CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    ds.Modality, ds.PatientID, ds.BurnedInAnnotation = "CT", "PAT-1", "YES"
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    q = Quarantine(settings.research.quarantine_dir)
    entry = Entry(project, "rq", STUDY, SERIES, sop, str(synth.CTImageStorage), "CT",
                  "BurnedInAnnotation=YES", "ORTHANC", 0.0, len(buf.getvalue()))
    q.put(entry, buf.getvalue())
    return q, entry


def _settings(topic_settings: Settings, tmp_path: Path) -> Settings:
    return topic_settings.replace(state_dir=str(tmp_path))


def test_purge_keeps_the_copy_when_its_event_was_refused(topic_settings: Settings, tmp_path: Path) -> None:
    settings = _settings(topic_settings, tmp_path)
    q, entry = _quarantined(settings, "IRB-9", 1)
    refused = settings.replace(topics={"quarantine": refusing_topic(settings, "tiny")})
    runner = CliRunner()
    result = runner.invoke(main, ["dicom", "quarantine", "purge", entry.key, "--reason", "name in pixels"],
                           env=role_env(refused, "steward1", "steward"))
    assert result.exit_code == 1, result.output
    assert "not purged" in result.output and "MSG_SIZE_TOO_LARGE" in result.output
    assert q.find(entry.key) is not None and all(Path(p).exists() for p in q.paths(entry))
    [ev] = audit_events(settings, 1)
    assert (ev["actor"], ev["action"], ev["allowed"]) == ("steward1", "quarantine.purge", False)
    assert "not delivered" in json.loads(ev["detail"])["reason"]
    # the same purge once the topic takes the event: the copy goes, audited allowed
    done = runner.invoke(main, ["dicom", "quarantine", "purge", entry.key, "--reason", "name in pixels"],
                         env=role_env(settings, "steward1", "steward"))
    assert done.exit_code == 0, done.output
    assert q.find(entry.key) is None and not any(Path(p).exists() for p in q.paths(entry))
    assert [(e["action"], e["allowed"]) for e in audit_events(settings, 2)][1] == ("quarantine.purge", True)


def test_release_keeps_the_copy_when_its_event_was_refused(topic_settings: Settings, tmp_path: Path) -> None:
    """P1 is identified (no de-identification key needed): the instance goes to its tree as received,
    its ``received_instance`` event is taken, the ``released`` one refused: the copy stays."""
    settings = _settings(topic_settings, tmp_path)
    register_projects(settings)
    q, entry = _quarantined(settings, "P1", 2)
    refused = settings.replace(topics={"quarantine": refusing_topic(settings, "tiny")})
    result = CliRunner().invoke(main, ["dicom", "quarantine", "release", entry.key, "--reason", "checked"],
                                env=role_env(refused, "steward1", "steward"))
    assert result.exit_code == 1, result.output
    assert "not released" in result.output
    assert q.find(entry.key) is not None and all(Path(p).exists() for p in q.paths(entry))
    [ev] = audit_events(settings, 1)
    assert (ev["action"], ev["allowed"]) == ("quarantine.release", False)
    # and nothing of it is left in the project tree: "not released" holds for the files too
    store = Path(settings.research.store_dir)
    assert not [p for p in store.rglob("*.dcm") if p.is_file() and "P1" in p.parts], list(store.rglob("*"))
