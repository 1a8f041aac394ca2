"""The registration files and the per-request manifest of what the SCP did with each instance; the same
through Kafka records (``ExpectedStudies``, ``Outcomes``)."""

from __future__ import annotations

import os
from pathlib import Path

from sinks.dicom.expect import Registry


def test_register_lookup_release(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register("1.2.3", "P1", "r1", "RESEARCH")
    exp = reg.lookup("1.2.3")
    assert exp is not None and (exp.project_id, exp.request_id) == ("P1", "r1")
    reg.release("1.2.3", "other")  # another request's release leaves it
    assert reg.lookup("1.2.3") is not None
    reg.release("1.2.3", "r1")
    assert reg.lookup("1.2.3") is None


def test_registrations_are_not_readable_by_other_users_at_umask_022(tmp_path: Path) -> None:
    """A registration's name and content are an original Study Instance UID: the directory 0700 and the
    file 0600 (the store's group, its readers, see de-identified files only), not 0755/0644 at the usual
    umask; a directory made 0750 before loses its group's bits."""
    old = os.umask(0o022)
    try:
        reg = Registry(tmp_path / "a")
        reg.register("1.2.3", "P1", "r1", "RESEARCH")
        (tmp_path / "b" / ".expected").mkdir(parents=True, mode=0o750)
        Registry(tmp_path / "b")
    finally:
        os.umask(old)
    assert reg.dir.stat().st_mode & 0o777 == 0o700
    assert reg.path("1.2.3").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "b" / ".expected").stat().st_mode & 0o777 == 0o700


def test_manifest_keeps_the_last_outcome_per_instance(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    assert reg.received("1.2.3", "r1") == {}
    reg.record("1.2.3", "r1", "1.2.3.1", "failed", "OSError: disk full")
    reg.record("1.2.3", "r1", "1.2.3.2", "quarantined", "BurnedInAnnotation=YES")
    reg.record("1.2.3", "r1", "1.2.3.1", "stored")
    reg.record("1.2.3", "r2", "1.2.3.3", "stored")  # another request of the same study
    with reg.manifest("1.2.3", "r1").open("a") as fh:
        fh.write('{"sop": "1.2.3.9", "outc')  # a line cut short by a crash is skipped
    assert reg.received("1.2.3", "r1") == {"1.2.3.1": ("stored", ""),
                                           "1.2.3.2": ("quarantined", "BurnedInAnnotation=YES")}
    reg.forget("1.2.3", "r1")
    assert reg.received("1.2.3", "r1") == {} and reg.received("1.2.3", "r2") != {}


# -- the same through Kafka records (decoded as the consumers do; the topics themselves:
#    test_dicom_shared_nothing.py) --------------------------------------------------------------------
def _expectation(study: str, project: str, request: str, t: float) -> bytes:
    from datetime import UTC, datetime

    from streams import serde

    return serde.encode("dicom_expectation", {
        "study_instance_uid": study, "project_id": project, "request_id": request,
        "destination_ae": "RESEARCH", "options": '{"identified": true}',
        "time": datetime.fromtimestamp(t, UTC)})


def test_expected_studies_latest_registration_wins_and_tombstones_withdraw() -> None:
    from sinks.dicom.expect import ExpectedStudies
    from streams.config import KafkaConfig, TopicsConfig

    seen = ExpectedStudies(KafkaConfig(bootstrap="127.0.0.1:1"), TopicsConfig(), wait_s=0.0)
    seen._thread = object()  # type: ignore[assignment]  # no broker: records are applied by hand
    assert seen.lookup("1.2.3") is None and seen.stamp("1.2.3") is None
    seen.apply(_expectation("1.2.3", "P1", "r1", 100.0), b"1.2.3/r1")
    first = seen.stamp("1.2.3")
    seen.apply(_expectation("1.2.3", "P2", "r2", 200.0), b"1.2.3/r2")
    exp = seen.lookup("1.2.3")
    assert exp is not None and (exp.project_id, exp.request_id) == ("P2", "r2")
    assert exp.options == {"identified": True}
    assert seen.stamp("1.2.3") != first  # the SCP's cached policy of the study is recomputed
    seen.apply(None, b"1.2.3/r2")  # r2 final: r1's registration is the one left
    exp = seen.lookup("1.2.3")
    assert exp is not None and exp.request_id == "r1"
    seen.apply(None, b"1.2.3/r1")
    assert seen.lookup("1.2.3") is None
    seen.apply(_expectation("../etc", "P1", "r3", 300.0), b"../etc/r3")  # not a UID: ignored
    assert seen.lookup("../etc") is None


def test_outcomes_keep_the_watched_requests_by_the_uids_their_events_carry() -> None:
    from datetime import UTC, datetime

    from sinks.dicom.expect import REQUEST_HEADER, STUDY_HEADER, Outcomes
    from streams import serde
    from streams.config import KafkaConfig, TopicsConfig

    topics = TopicsConfig()
    out = Outcomes(KafkaConfig(bootstrap="127.0.0.1:1"), topics)
    now = datetime.now(UTC)

    def stored(study: str, sop: str, request: str) -> None:
        out._on_record(topics.received_instances, serde.encode("received_instance", {
            "project_id": "P", "calling_ae": "ORTHANC", "called_ae": "RESEARCH", "study_instance_uid": study,
            "series_instance_uid": "1.9", "sop_instance_uid": sop, "sop_class_uid": "1.2", "path": "x",
            "size_bytes": 1, "deidentified": True, "time": now}), sop.encode(),
            [(REQUEST_HEADER, request.encode()), (STUDY_HEADER, study.encode())])

    def quarantined(study: str, sop: str, request: str, action: str = "quarantined") -> None:
        out._on_record(topics.quarantine, serde.encode("quarantine_event", {
            "action": action, "project_id": "P", "request_id": request, "study_instance_uid": study,
            "series_instance_uid": "1.9", "sop_instance_uid": sop, "sop_class_uid": "1.2",
            "reason": "BurnedInAnnotation=YES", "path": "q", "size_bytes": 1, "actor": "ORTHANC",
            "time": now}), None, [])

    stored("2.25.7", "2.25.1", "r1")  # before watch: not ours yet
    out.watch("r1")
    stored("2.25.7", "2.25.1", "r1")  # keyed UIDs (de-identified)
    stored("2.25.7", "2.25.2", "r2")  # another request
    quarantined("1.7", "1.7.3", "r1")  # original UIDs
    quarantined("1.7", "1.7.4", "r1", action="released")  # not an outcome of the move
    assert out.count("r1", ["1.7", "2.25.7"]) == 2 and out.count("r1", ["1.7"]) == 1
    names = {"1.7.1": ("1.7.1", "2.25.1"), "1.7.2": ("1.7.2", "2.25.2"), "1.7.3": ("1.7.3", "2.25.3")}
    assert out.received("r1", names) == {"1.7.1": ("stored", ""),
                                         "1.7.3": ("quarantined", "BurnedInAnnotation=YES")}
    stored("2.25.7", "2.25.3", "r1")  # a later retry stored it: the latest event wins
    assert out.received("r1", names)["1.7.3"] == ("stored", "")
    out.unwatch("r1")
    assert out.received("r1", names) == {} and out.count("r1", ["2.25.7"]) == 0


def test_outcomes_wake_a_waiting_worker_when_an_event_of_its_request_is_read() -> None:
    """The worker's reconciliation waits on the events (``mark``/``wait``) instead of looking again every
    20 ms: it goes on as soon as the last event of its study is read."""
    import threading
    import time
    from datetime import UTC, datetime

    from sinks.dicom.expect import REQUEST_HEADER, STUDY_HEADER, Outcomes
    from streams import serde
    from streams.config import KafkaConfig, TopicsConfig

    topics = TopicsConfig()
    out = Outcomes(KafkaConfig(bootstrap="127.0.0.1:1"), topics)
    value = serde.encode("received_instance", {
        "project_id": "P", "calling_ae": "ORTHANC", "called_ae": "RESEARCH", "study_instance_uid": "1.7",
        "series_instance_uid": "1.7.1", "sop_instance_uid": "1.7.1.1", "sop_class_uid": "1.2", "path": "x",
        "size_bytes": 1, "deidentified": False, "time": datetime.now(UTC)})

    def event(request: str) -> None:
        out._on_record(topics.received_instances, value, b"1.7.1.1",
                       [(REQUEST_HEADER, request.encode()), (STUDY_HEADER, b"1.7")])

    out.watch("r1")
    mark = out.mark()
    assert out.wait(mark, 0.05) is False  # nothing came
    event("r-other")  # not a watched request: no wake-up
    assert out.wait(mark, 0.05) is False
    timer = threading.Timer(0.1, event, args=("r1",))
    t0 = time.monotonic()
    timer.start()
    assert out.wait(mark, 10.0) is True
    assert time.monotonic() - t0 < 5.0 and out.count("r1", ["1.7"]) == 1
    assert out.wait(mark, 10.0) is True  # a mark taken before the event: returns at once
    timer.join()


def test_outcomes_count_an_instance_whose_event_came_twice_once() -> None:
    """The worker's settle count (``count``) is per instance: an SCP event delivered twice (produced again
    after a lost acknowledgement, or replayed from the journal) must not stand for a second instance, or
    the worker stops waiting for the study's last events one instance early and moves it again."""
    from datetime import UTC, datetime

    from sinks.dicom.expect import REQUEST_HEADER, STUDY_HEADER, Outcomes
    from streams import serde
    from streams.config import KafkaConfig, TopicsConfig

    topics = TopicsConfig()
    out = Outcomes(KafkaConfig(bootstrap="127.0.0.1:1"), topics)
    now = datetime.now(UTC)

    def stored(sop: str) -> None:
        out._on_record(topics.received_instances, serde.encode("received_instance", {
            "project_id": "P", "calling_ae": "ORTHANC", "called_ae": "RESEARCH", "study_instance_uid": "1.8",
            "series_instance_uid": "1.8.1", "sop_instance_uid": sop, "sop_class_uid": "1.2", "path": "x",
            "size_bytes": 1, "deidentified": False, "time": now}), sop.encode(),
            [(REQUEST_HEADER, b"r1"), (STUDY_HEADER, b"1.8")])

    def quarantined(sop: str) -> None:
        out._on_record(topics.quarantine, serde.encode("quarantine_event", {
            "action": "quarantined", "project_id": "P", "request_id": "r1", "study_instance_uid": "1.8",
            "series_instance_uid": "1.8.1", "sop_instance_uid": sop, "sop_class_uid": "1.2",
            "reason": "BurnedInAnnotation=YES", "path": "q", "size_bytes": 1, "actor": "ORTHANC",
            "time": now}), None, [])

    out.watch("r1")
    stored("1.8.1.1")
    stored("1.8.1.1")  # the same instance's event again
    quarantined("1.8.1.2")
    quarantined("1.8.1.2")
    assert out.count("r1", ["1.8"]) == 2
    stored("1.8.1.3")
    assert out.count("r1", ["1.8"]) == 3
