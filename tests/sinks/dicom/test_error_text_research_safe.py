"""The free-text ``error`` of a retrieval status event reaches the analysts of a de-identified project
(``retrieval_events``, ``retrievals_latest``, the web timeline): it names the PACS by its AE title only,
keys every DICOM UID as the event's UID columns are, never shows an accession or patient id in clear,
and gives an unexpected exception's class, not its message. An identified project's keeps the detail.
The DICOM processes' logs hold request ids and research values only, whatever the project."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from pydicom.uid import UID

from processors.ingest.pseudonym import keyed_identifier, keyed_uid
from radstream.config import Settings
from radstream.text_deid import research_key
from sinks.dicom.find import StudyMatch
from sinks.dicom.worker import Request, Worker, WorkerOptions

from .conftest import spec
from .helpers import final_of, request, statuses

CLINICAL_STUDY = "1.2.826.0.1.3680043.10.1337.105140332807581807099226196831775597"
CLINICAL_SOP = "1.2.826.0.1.3680043.10.1337.105140332807581807099226196831775597.7.1"


def new_worker(settings: Settings) -> Worker:
    return Worker(settings.kafka, settings.topics, settings.pacs, settings.research, settings.state_dir,
                  WorkerOptions(), group_id=settings.kafka.consumer_group, key=research_key(settings))


def run_until_idle(w: Worker) -> None:
    t = threading.Thread(target=w.run, kwargs={"until_idle": 1.0}, daemon=True)
    t.start()
    t.join(timeout=180)
    assert not t.is_alive()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)


def test_the_status_event_builder_makes_a_de_identified_projects_error_research_safe(
        dicom_settings: Settings) -> None:
    """Every error path ends in ``Worker.emit``: a text naming the PACS host, the PACS's study and SOP
    UIDs, the accession and the patient id, as the raise sites word them."""
    w = new_worker(dicom_settings)
    key = research_key(dicom_settings)
    assert key is not None
    pacs = dicom_settings.pacs
    text = (f"C-FIND: association to {pacs.ae_title}@{pacs.host}:{pacs.port} failed (PACS down?); "
            f"DeliveryError: expectation of {CLINICAL_STUDY}/r1 not delivered: timed out; "
            f"1 of 3 listed instances not in the research store ({CLINICAL_SOP}); "
            "no study found for RAD0042 of MRN7781")
    events = {}
    for project in ("IRB-7", "P2"):  # de-identified, identified
        rec = {"request_id": f"r-{project}", "project_id": project, "accession": "RAD0042",
               "patient_id": "MRN7781", "destination_ae": "RESEARCH", "requester_roles": ["steward"]}
        req = Request(rec, 0, 0, 0)
        assert w._open_ref(req) is None
        req.studies = [StudyMatch(CLINICAL_STUDY, instances=3)]
        w.emit(req, "failed", None, error=text)
        events[project] = w.log[-1]
    w.producer.flush(10)

    deid = events["IRB-7"]
    for clinical in (CLINICAL_STUDY, CLINICAL_SOP, f"{pacs.host}:{pacs.port}", pacs.host,
                     "RAD0042", "MRN7781"):
        assert clinical not in deid["error"], clinical
    assert deid["study_instance_uids"] == [keyed_uid(key, CLINICAL_STUDY)]
    assert keyed_uid(key, CLINICAL_STUDY) in deid["error"]  # the same value as the UID column
    assert keyed_uid(key, CLINICAL_SOP) in deid["error"]
    assert keyed_identifier(key, "accession", "RAD0042") in deid["error"]
    assert f"association to {pacs.ae_title} failed" in deid["error"]
    assert events["P2"]["error"] == text  # the stewards' table keeps the detail


def test_a_crash_with_the_pacs_study_uid_in_its_message_reaches_neither_the_status_nor_the_log(
        dicom_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Real Kafka, Orthanc and worker: the expectation cannot be delivered (the topic takes no record),
    so ``confirm`` raises a DeliveryError inside the move (an unexpected exception of the worker)."""
    settings = dicom_settings.replace(research={"coordination": "kafka", "store_dir": str(tmp_path / "none")},
                                      pacs={"max_attempts": 2})
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.dicom_expected,
                         incremental_configs=[ConfigEntry("max.message.bytes", "1",
                                                          incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=10)
    deid = request(settings, "A1", project="IRB-7")
    ident = request(settings, "A2", project="P2")
    caplog.set_level(logging.INFO)
    run_until_idle(new_worker(settings))
    events = statuses(settings, {deid, ident})

    clinical = spec("A", 1).study_uid
    final = final_of(events, deid)
    assert final["state"] == "failed"
    assert final["study_instance_uids"] == [keyed_uid(research_key(settings), clinical)]
    for e in (e for e in events if e["request_id"] == deid and e["error"]):
        assert clinical not in e["error"] and "not delivered" not in e["error"], e["error"]
    assert final["error"].startswith("after 2 attempts: DeliveryError: unexpected error")
    assert "not delivered" in final_of(events, ident)["error"]  # an identified project keeps the message
    text = logged(caplog)
    assert "crashed: DeliveryError" in text  # the class and the request id are logged
    for uid in (clinical, spec("A", 2).study_uid):
        assert uid not in text


def test_a_pacs_that_is_down_is_named_by_its_ae_title_only(dicom_settings: Settings) -> None:
    from radstream.stack.orthanc import free_port

    port = free_port()  # nothing listens there
    settings = dicom_settings.replace(pacs={"port": port, "acse_timeout_s": 2.0, "max_attempts": 2})
    deid = request(settings, "A1", project="IRB-7")
    ident = request(settings, "A1", project="P2")
    run_until_idle(new_worker(settings))
    events = statuses(settings, {deid, ident})
    where = f"{settings.pacs.host}:{port}"
    for e in (e for e in events if e["request_id"] == deid and e["error"]):
        assert where not in e["error"] and settings.pacs.host not in e["error"], e["error"]
    assert f"association to {settings.pacs.ae_title} failed" in final_of(events, deid)["error"]
    assert where in final_of(events, ident)["error"]


def test_the_scp_logs_no_original_uid_of_a_refused_or_failed_instance(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A study no project expects is refused, and an instance whose directory cannot be made fails:
    neither log line names the PACS's study or SOP Instance UID (the request id does)."""
    from sinks.dicom.scp import STATUS_OUT_OF_RESOURCES, header_of

    from .test_scp import ASSOC, _journaled_store, _received

    store = _journaled_store(tmp_path)
    raw, ts, sop_class, sop = _received()
    study = header_of(raw, UID(ts)).study
    caplog.set_level(logging.DEBUG, logger="sinks.dicom")
    try:
        assert store.store(raw, ts, sop_class, sop, ASSOC) != 0x0000  # not registered: refused
        store.registry.register(study, "P2", "r1", "RESEARCH")
        (tmp_path / "P2").write_bytes(b"not a directory")
        assert store.store(raw, ts, sop_class, sop, ASSOC) == STATUS_OUT_OF_RESOURCES
    finally:
        store.stop()
    text = logged(caplog)
    assert "refusing" in text and "request r1 failed" in text
    assert study not in text and sop not in text
