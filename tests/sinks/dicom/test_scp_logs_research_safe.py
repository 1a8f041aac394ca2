"""The research SCP's logs (read by research staff: not access-checked, not audited) hold no clinical
UID nor patient identifier at any level: stored, quarantined and refused instances over real C-STOREs,
with the process's root logger at DEBUG (``--log-level DEBUG``), pynetdicom's loggers included."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radstream.stack.orthanc import free_port
from sinks.dicom import synth
from sinks.dicom.scp import ResearchStore, ScpConfig

from .helpers import TEST_PROJECTS


def _clinical(spec: synth.StudySpec) -> list[str]:
    return [spec.study_uid, spec.series_uid(0), *(spec.sop_uid(i) for i in range(spec.images)),
            spec.patient_id, spec.accession]


def test_no_clinical_uid_in_the_scps_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pynetdicom").setLevel(logging.NOTSET)  # inherits the root's DEBUG, as in a process
    stored, burned, unknown = (synth.StudySpec(f"LOG{k}", f"LOGPAT{k}", "Log^Pat", "20240101", 2, rows=8,
                                               cols=8) for k in (1, 2, 3))
    store = ResearchStore(ScpConfig(ae_title="RESEARCH", port=free_port(), host="127.0.0.1",
                                    store_dir=tmp_path / "store", allowed_calling_aes=("ORTHANC",),
                                    deid_key=b"log-test-key-" + b"k" * 19),
                          projects=TEST_PROJECTS)
    for s in (stored, burned):
        store.registry.register(s.study_uid, "IRB-7", f"req-{id(s)}", "RESEARCH")
    port = store.start()
    try:
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(CTImageStorage, synth.ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
        assert assoc.is_established
        statuses = []
        for s in (stored, burned, unknown):
            for i in range(s.images):
                ds = synth.instance(s, i)
                if s is burned:
                    ds.BurnedInAnnotation = "YES"  # quarantined, with its reason
                statuses.append(assoc.send_c_store(ds).Status)
        assoc.release()
        store.drain()
    finally:
        store.stop()
    assert statuses == [0, 0, 0, 0, 0x0124, 0x0124]  # stored, quarantined (answered), refused
    assert store.stats.quarantined == 2 and store.stats.refused == 2
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "quarantined an instance" in logged and "refusing an instance" in logged  # the paths logged
    leaks = [v for s in (stored, burned, unknown) for v in _clinical(s) if v in logged]
    assert not leaks, f"clinical values in the log: {leaks}"
    # pynetdicom at DEBUG logs every DIMSE message with its data set: not by default
    assert not [r for r in caplog.records if r.name.startswith("pynetdicom") and r.levelno < logging.WARNING]


def test_log_safe_cuts_what_may_quote_a_value() -> None:
    from sinks.dicom.scp import log_safe

    uid = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    assert log_safe(f"de-identification failed: DeidError: {uid} in (0008,1155) 'Doe^John'") == (
        "de-identification failed: DeidError")
    assert log_safe(f"refused {uid}; SOP class 1.2.840.10008.5.1.4.1.1.7") == (
        "refused [UID]; SOP class 1.2.840.10008.5.1.4.1.1.7")
