"""A request that names its study by its study_ref beside the PACS's own identifiers (``radstream retrieve
--study-ref R --accession A --study-uid U --patient-id P --study-date D``): research_ids keys the clinical
values (r11 finding 4) and the worker still resolves the study, by the reference, against real Kafka and
Orthanc; nothing it emits names a clinical value."""

from __future__ import annotations

import pytest

from processors.ingest.pseudonym import keyed_identifier, keyed_uid
from processors.ingest.research import research_request
from radstream.config import Settings
from radstream.retrieval import research_ids
from radstream.text_deid import research_key

from .conftest import spec
from .helpers import final_of, request, statuses
from .test_dicom_worker import research_scp, run_worker

pytestmark = pytest.mark.integration


def test_a_mixed_request_is_keyed_and_the_worker_resolves_it_by_its_ref(dicom_settings: Settings) -> None:
    s = dicom_settings.replace(ingest={"pseudonym_key": "worker-mixed-request-key-0123456"})
    key = research_key(s)
    a = spec("A", 2)
    ref = research_request(key, "default", accession=a.accession, study_uid=a.study_uid)["study_ref"]
    ids = research_ids(key, "default", {"study_ref": ref, "accession": a.accession,
                                        "study_instance_uid": a.study_uid, "patient_id": a.patient_id,
                                        "study_date": "20240117"})
    clinical = (a.accession, a.study_uid, a.patient_id, "20240117")
    assert not set(clinical) & set(ids.values()) and ids["study_ref"] == ref
    rid = request(s, project="IRB-7", requester_roles=None, **ids)
    with research_scp(s, deid_key=key):
        run_worker(s)
    events = statuses(s, {rid})
    final = final_of(events, rid)
    assert final["state"] == "completed", final["error"]
    assert final["accession"] == keyed_identifier(key, "accession", a.accession)
    assert final["study_instance_uids"] == [keyed_uid(key, a.study_uid)]
    emitted = {str(v) for e in events if e["request_id"] == rid for value in e.values()
               for v in (value if isinstance(value, list) else [value])}
    assert not set(clinical) & emitted
