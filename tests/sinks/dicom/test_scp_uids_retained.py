"""received_instance v4's ``uids_retained`` says what the SCP applied (real broker, real C-STOREs over
pynetdicom): an identified project's instance and one de-identified with "Retain UIDs" keep the hospital's
Study, Series and SOP Instance UIDs (true); one de-identified otherwise has them remapped (false). Both
de-identification paths: the byte-level one (Explicit VR Little Endian) and pydicom's (Deflated)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radstream.config import Settings
from radstream.stack.orthanc import free_port
from sinks.dicom import synth
from sinks.dicom.deid import DeidOptions
from sinks.dicom.projects import StaticProjects
from sinks.dicom.scp import ResearchStore, ScpConfig
from streams import serde
from streams.producer import make_producer
from tests.streams.helpers import consume

from .helpers import project

pytestmark = pytest.mark.integration

PROJECTS = StaticProjects([project("P1"), project("IRB-7", identified=False),
                           project("IRB-KEEP", identified=False, deid=DeidOptions(retain_uids=True))])
# project -> (deidentified, uids_retained) the event must say
WANT = {"P1": (False, True), "IRB-7": (True, False), "IRB-KEEP": (True, True)}


def store_events(settings: Settings, tmp_path: Path, projects: StaticProjects,
                 instances: dict[str, list[Any]], specs: dict[str, synth.StudySpec], ts: str) -> list[Any]:
    """C-STORE ``instances`` (project -> data sets) over one association in transfer syntax ``ts`` into a
    real SCP on a real broker; the received_instance events it sent, decoded."""
    store = ResearchStore(ScpConfig(ae_title="RESEARCH", port=free_port(), host="127.0.0.1",
                                    store_dir=tmp_path / "store", allowed_calling_aes=("ORTHANC",),
                                    deid_key=b"uids-retained-key-" + b"k" * 14),
                          make_producer(settings.kafka), settings.topics, projects)
    for p, spec in specs.items():
        store.registry.register(spec.study_uid, p, "r-" + spec.accession, "RESEARCH")
    port = store.start()
    try:
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(CTImageStorage, ts)
        assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
        assert assoc.is_established
        for dss in instances.values():
            for ds in dss:
                assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        n = sum(len(dss) for dss in instances.values())
        return [serde.decode("received_instance", m.value())
                for m in consume(settings, settings.topics.received_instances, n, timeout=30.0)]
    finally:
        store.stop()


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
                         ids=["byte-level", "pydicom"])
def test_the_event_says_whether_the_stored_instance_kept_its_uids(
        topic_settings: Settings, tmp_path: Path, ts: str) -> None:
    specs = {p: synth.StudySpec(f"UR{k}", f"URPAT{k}", "U^R", "20240101", 2, rows=8, cols=8)
             for k, p in enumerate(WANT)}
    instances = {p: [synth.instance(spec, i) for i in range(spec.images)] for p, spec in specs.items()}
    events = store_events(topic_settings, tmp_path, PROJECTS, instances, specs, ts)
    n = sum(s.images for s in specs.values())
    assert len(events) == n
    originals = {p: {*s.sop_uids(), s.study_uid, s.series_uid(0)} for p, s in specs.items()}
    for ev in events:
        p = ev["project_id"]
        assert (ev["deidentified"], ev["uids_retained"]) == WANT[p], ev
        # and true to what was stored: the original UIDs exactly when it says so
        kept = {ev["sop_instance_uid"], ev["series_instance_uid"], ev["study_instance_uid"]} & originals[p]
        assert bool(kept) is WANT[p][1], (p, kept)
    assert {ev["project_id"] for ev in events} == set(WANT)



@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
                         ids=["byte-level", "pydicom"])
def test_uids_retained_also_says_when_a_received_uid_is_anywhere_in_the_stored_file(
        topic_settings: Settings, tmp_path: Path, ts: str) -> None:
    """A second net under the profile: an instance whose own SOP Instance UID also sits in an attribute
    the table does not list is stored with it remapped there too (false); one whose SOP UID a
    safe-listed private attribute keeps is stored with that UID in its bytes: true."""
    settings = topic_settings
    safe = DeidOptions(private_safe_list=("(0009,xx01) RADSTREAM TEST",))
    projects = StaticProjects([project("IRB-7", identified=False), project("IRB-SAFE", identified=False,
                                                                           deid=safe)])
    want = {"IRB-7": False, "IRB-SAFE": True}
    specs = {p: synth.StudySpec(f"US{k}", f"USPAT{k}", "U^S", "20240101", 1, rows=8, cols=8)
             for k, p in enumerate(want)}
    instances: dict[str, list[Any]] = {}
    for p, spec in specs.items():
        ds = synth.instance(spec, 0)
        ds.SOPInstanceUIDOfConcatenationSource = ds.SOPInstanceUID  # not in E.1-1
        if p == "IRB-SAFE":
            ds.private_block(0x0009, "RADSTREAM TEST", create=True).add_new(0x01, "LO", ds.SOPInstanceUID)
        instances[p] = [ds]
    events = store_events(settings, tmp_path, projects, instances, specs, ts)
    assert {ev["project_id"]: ev["uids_retained"] for ev in events} == want
    for ev in events:
        data = Path(ev["path"]).read_bytes()
        if ts == DeflatedExplicitVRLittleEndian:  # the data set after the file meta, deflated
            end = 144 + struct.unpack_from("<I", data, 140)[0]
            data = data[:end] + zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[end:])
        assert (specs[ev["project_id"]].sop_uid(0).encode() in data) is want[ev["project_id"]]
