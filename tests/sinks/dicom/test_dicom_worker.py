"""The retrieval worker against real Kafka and a real Orthanc, with our research SCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from confluent_kafka import Consumer

from processors.ingest.pseudonym import keyed_identifier
from radstream.config import Settings, settings_env
from radstream.text_deid import research_key
from sinks.dicom.scp import ResearchStore, ScpConfig
from sinks.dicom.worker import Worker, WorkerOptions
from streams import serde
from tests.streams.helpers import ROOT

from .conftest import spec
from .helpers import TEST_PROJECTS, final_of, request, statuses, stored_sops

pytestmark = pytest.mark.integration


@contextmanager
def research_scp(settings: Settings, **cfg_changes: object) -> Iterator[ResearchStore]:
    cfg = ScpConfig.of(settings.research, settings.ingest)
    for k, v in cfg_changes.items():
        setattr(cfg, k, v)
    store = ResearchStore(cfg, projects=TEST_PROJECTS)
    store.start()
    try:
        yield store
    finally:
        store.stop()


def new_worker(settings: Settings, options: WorkerOptions | None = None) -> Worker:
    return Worker(settings.kafka, settings.topics, settings.pacs, settings.research, settings.state_dir,
                  options or WorkerOptions(), group_id=settings.kafka.consumer_group,
                  key=research_key(settings))


def run_until_idle(w: Worker, idle: float = 1.0) -> Worker:
    t = threading.Thread(target=w.run, kwargs={"until_idle": idle}, daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "worker did not become idle"
    return w


def run_worker(settings: Settings, options: WorkerOptions | None = None, idle: float = 1.0) -> Worker:
    return run_until_idle(new_worker(settings, options), idle)


def test_retrieve_one_accession_completed_and_sop_uids_match(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A1")
    with research_scp(dicom_settings) as store:
        run_worker(dicom_settings)
    events = statuses(dicom_settings, {rid})
    states = [e["state"] for e in events if e["request_id"] == rid]
    assert states[0] == "queued" and states[-1] == "completed"
    assert "resolving" in states and "moving" in states
    final = final_of(events, rid)
    assert final["completed"] == 3 and final["failed"] == 0 and final["expected_instances"] == 3
    assert final["study_instance_uids"] == [spec("A", 1).study_uid]
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P1")) == sorted(spec("A", 1).sop_uids())
    assert store.stats.written == 3


def test_moving_events_carry_pending_counts_that_grow(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "B1")  # 40 images
    with research_scp(dicom_settings):
        run_worker(dicom_settings, WorkerOptions(pending_event_s=0.0))  # every pending response
    moving = [e for e in statuses(dicom_settings, {rid}) if e["request_id"] == rid and e["state"] == "moving"]
    counts = [e["completed"] for e in moving]
    assert counts[0] == 0 and counts == sorted(counts) and len(set(counts)) > 2
    assert all(e["completed"] + e["remaining"] == 40 for e in moving[1:])


def test_unknown_accession_fails_without_retry(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "ZZ404")
    run_worker(dicom_settings)
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] == "failed" and final["attempt"] == 1
    # the status names it in research terms (the error text reaches the analysts' tables too)
    research = keyed_identifier(research_key(dicom_settings), "accession", "ZZ404")
    assert "no study found" in final["error"] and research in final["error"] and "ZZ404" not in final["error"]


def test_no_study_for_a_patient_and_date_does_not_name_the_patient(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, None, patient_id="ZZPAT404", study_date="20010101")
    run_worker(dicom_settings)
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] == "failed" and "no study found" in final["error"]
    assert "ZZPAT404" not in final["error"] and "patient id" in final["error"]  # its kind, not its value


def test_destination_not_on_allow_list_fails_before_any_dicom(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A1", destination="STRANGER")
    w = run_worker(dicom_settings)
    events = [e for e in statuses(dicom_settings, {rid}) if e["request_id"] == rid]
    assert [e["state"] for e in events] == ["failed"] and "allow-list" in events[0]["error"]
    assert not any(e["state"] == "resolving" for e in w.log)


def test_destination_not_configured_in_pacs_fails_after_retries(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A1", destination="ELSEWHERE")  # on our allow-list, unknown to Orthanc
    run_worker(dicom_settings)
    events = [e for e in statuses(dicom_settings, {rid}) if e["request_id"] == rid]
    final = events[-1]
    assert final["state"] == "failed" and final["dimse_status"] in (0xA801, 0xC000)
    assert final["attempt"] == dicom_settings.pacs.max_attempts
    assert sum(1 for e in events if e["state"] == "queued" and "retry" in (e["error"] or "")) == 2


def test_pacs_down_fails_after_retries(dicom_settings: Settings) -> None:
    from radstream.stack.orthanc import free_port

    settings = dicom_settings.replace(pacs={"port": free_port(), "acse_timeout_s": 2.0})
    rid = request(settings, "A1")
    run_worker(settings)
    final = final_of(statuses(settings, {rid}), rid)
    assert final["state"] == "failed" and final["attempt"] == settings.pacs.max_attempts
    assert "C-FIND" in final["error"] and "failed" in final["error"]


def test_scp_refusing_images_ends_failed(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A2")
    with research_scp(dicom_settings, min_free_mb=10**9) as store:
        run_worker(dicom_settings)
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] == "failed" and final["completed"] == 0
    assert final["attempt"] == dicom_settings.pacs.max_attempts and store.stats.refused >= 3
    assert stored_sops(dicom_settings.research_store_dir) == []


def test_several_studies_per_accession_and_patient_date_fallback(dicom_settings: Settings) -> None:
    from .conftest import two_studies_one_accession

    a3 = spec("A", 3)
    both = request(dicom_settings, "D1", project="P2")
    fallback = request(dicom_settings, None, project="P3", patient_id=a3.patient_id, study_date=a3.study_date)
    with research_scp(dicom_settings):
        run_worker(dicom_settings)
    events = statuses(dicom_settings, {both, fallback})
    f1, f2 = final_of(events, both), final_of(events, fallback)
    assert f1["state"] == "completed" and f1["completed"] == 4 and len(f1["study_instance_uids"]) == 2
    want = sorted(u for s in two_studies_one_accession() for u in s.sop_uids())
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P2")) == want
    assert f2["state"] == "completed" and f2["study_instance_uids"] == [a3.study_uid]
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P3")) == sorted(a3.sop_uids())


def test_window_closed_waits_then_runs(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A1")
    with research_scp(dicom_settings):
        # opens well after the worker has joined its group and seen the request (a loaded CI machine)
        opens = (datetime.now() + timedelta(seconds=6)).replace(microsecond=0)
        closes = opens + timedelta(hours=1)
        windows = f"* {opens:%H:%M:%S}-{closes:%H:%M:%S}"
        run_worker(dicom_settings, WorkerOptions(windows=windows))
    events = [e for e in statuses(dicom_settings, {rid}) if e["request_id"] == rid]
    states = [e["state"] for e in events]
    assert states[:2] == ["queued", "waiting_for_window"] and states[-1] == "completed"
    first_move = next(e["time"] for e in events if e["state"] == "resolving")
    assert first_move.timestamp() >= opens.timestamp() - 0.05  # nothing touched the PACS before the window


def test_throttle_images_per_minute_is_honoured(dicom_settings: Settings) -> None:
    limit = 600.0  # images per minute: 10/s; three studies of 3 images -> starts >= 0.3 s apart
    rids = [request(dicom_settings, f"C{k}") for k in (1, 2, 3)]
    with research_scp(dicom_settings):
        run_worker(dicom_settings, WorkerOptions(images_per_minute=limit))
    events = statuses(dicom_settings, set(rids))
    assert all(final_of(events, r)["state"] == "completed" for r in rids)
    starts = sorted(min(e["time"] for e in events if e["request_id"] == r and e["state"] == "moving")
                    for r in rids)
    span = (starts[-1] - starts[0]).total_seconds()
    images_before_last = 2 * 3
    assert images_before_last / span <= limit / 60.0 * 1.02  # measured start rate within the limit


def test_high_priority_jumps_ahead_of_a_batch(dicom_settings: Settings) -> None:
    batch = [request(dicom_settings, acc) for acc in ("A1", "A2", "A3", "A4", "C1", "C2", "D1")]
    urgent = request(dicom_settings, "C3", priority="high")
    with research_scp(dicom_settings):
        run_worker(dicom_settings)
    events = statuses(dicom_settings, {*batch, urgent})
    # completion order by event time (the status topic has several partitions: no global order)
    finals = [e["request_id"] for e in sorted(events, key=lambda e: e["time"]) if e["state"] == "completed"]
    assert len(finals) == len(batch) + 1
    assert finals.index(urgent) <= 1, finals.index(urgent)  # at most the one already running goes first


def test_malformed_request_goes_to_dead_letter_and_the_next_one_runs(dicom_settings: Settings) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": dicom_settings.kafka.bootstrap})
    p.produce(dicom_settings.topics.retrieval_requests, value=b"not avro", key=b"bad")
    p.flush(10)
    rid = request(dicom_settings, "A4")
    with research_scp(dicom_settings):
        run_worker(dicom_settings)
    assert final_of(statuses(dicom_settings, {rid}), rid)["state"] == "completed"
    c = Consumer({"bootstrap.servers": dicom_settings.kafka.bootstrap, "group.id": "dlq-probe",
                  "auto.offset.reset": "earliest"})
    c.subscribe([dicom_settings.topics.dead_letter])
    got = []
    for _ in range(30):
        got += [m for m in c.consume(10, timeout=0.5) if not m.error()]
        if got:
            break
    c.close()
    dl = serde.decode("dead_letter", got[0].value())
    assert dl["stage"] == "dicom-worker" and dl["value"] == b"not avro" and "single-object" in dl["error"]


def test_retrieve_command_produces_a_request_the_worker_completes(dicom_settings: Settings) -> None:
    from click.testing import CliRunner

    from radstream.cli import main

    t = dicom_settings.topics
    env = {"RADSTREAM_STATE_DIR": dicom_settings.state_dir,
           "RADSTREAM_KAFKA_BOOTSTRAP": dicom_settings.kafka.bootstrap,
           "RADSTREAM_TOPICS_RETRIEVAL_REQUESTS": t.retrieval_requests,
           "RADSTREAM_TOPICS_PROJECTS": t.projects,
           "RADSTREAM_RESEARCH_ALLOWED_DESTINATIONS": "RESEARCH"}
    runner = CliRunner()
    refused = runner.invoke(main, ["retrieve", "--accession", "A3", "--destination", "NOT-ALLOWED",
                                   "--project", "P9"], env=env)
    assert refused.exit_code != 0 and "allow-list" in refused.output
    typo = runner.invoke(main, ["retrieve", "--accession", "A3", "--destination", "RESEARCH",
                                "--project", "P9x"], env=env)  # a typo is refused, never stored identified
    assert typo.exit_code != 0 and "'P9x' is not registered" in typo.output
    out = runner.invoke(main, ["retrieve", "--accession", "A3", "--destination", "RESEARCH",
                               "--project", "P9", "--priority", "high"], env=env)
    assert out.exit_code == 0, out.output
    rid = out.output.strip().split()[-1]
    with research_scp(dicom_settings):
        run_worker(dicom_settings)
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] == "completed" and final["project_id"] == "P9"
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P9")) == sorted(spec("A", 3).sop_uids())


def test_several_scp_processes_share_the_port(dicom_settings: Settings, tmp_path: Path) -> None:
    """``dicom scp --processes 2``: two processes on one inherited listening socket; a second
    association goes to the idle process; parallel moves land intact and each instance once; SIGTERM
    stops them all cleanly."""
    settings = dicom_settings.replace(pacs={"max_associations": 2})
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "scp.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "radstream", "dicom", "scp", "--processes", "2"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and log_path.read_text().count("listening on") < 2:
                time.sleep(0.2)
            assert log_path.read_text().count("listening on") == 2, log_path.read_text()
            assert listening(settings) == 1  # one socket, shared
            # the busy process leaves the second association to its sibling for up to BUSY_ACCEPT_WAIT
            # (50 ms): a heuristic, which a host loaded by the parallel suite can miss once, so up to three
            # pairs; without it both land in one process about half the time (the class's docstring)
            spread: list[set[str]] = []
            for _ in range(3):
                first, second = _associate(settings), _associate(settings)
                try:
                    spread.append(_server_pids(settings.research.port))
                finally:
                    first.release()
                    second.release()
                gone = time.monotonic() + 10  # both processes idle again before the next pair
                while _server_pids(settings.research.port) and time.monotonic() < gone:
                    time.sleep(0.1)
                if len(spread[-1]) == 2:
                    break
            assert len(spread[-1]) == 2, spread
            rids = [request(settings, acc) for acc in ("A1", "A2", "A3", "A4")]
            run_worker(settings)
            events = statuses(settings, set(rids))
            assert all(final_of(events, r)["state"] == "completed" for r in rids)
            want = sorted(uid for acc in ("A1", "A2", "A3", "A4")
                          for uid in spec(acc[0], int(acc[1:])).sop_uids())
            assert sorted(stored_sops(settings.research_store_dir)) == want
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log_path.read_text()
    assert listening(settings) == 0


def _associate(settings: Settings) -> Any:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=settings.research.allowed_calling_aes[0])
    ae.add_requested_context(Verification)
    assoc = ae.associate(settings.research.host, settings.research.port, ae_title=settings.research.ae_title)
    assert assoc.is_established
    return assoc


def _server_pids(port: int) -> set[str]:
    """The processes that own the accepted (server side) connections on ``port``."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return {part.split(",")[0] for part in out.split("pid=")[1:]}


def listening(settings: Settings) -> int:
    """Sockets listening on the research port."""
    port = f":{settings.research.port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            count += sum(1 for line in list(fh)[1:]
                         if line.split()[1].endswith(port) and line.split()[3] == "0A")
    return count


def test_deidentified_instances_report_their_originals_for_the_restricted_map(
        dicom_settings: Settings) -> None:
    from processors.ingest.pseudonym import pseudonym
    from streams.producer import make_producer
    from tests.streams.helpers import consume

    a1 = spec("A", 1)
    key = b"k" * 32
    rid = request(dicom_settings, "A1", project="IRB-D")
    cfg = ScpConfig.of(dicom_settings.research, dicom_settings.ingest)
    cfg.deid_key = key
    store = ResearchStore(cfg, make_producer(dicom_settings.kafka), dicom_settings.topics, TEST_PROJECTS)
    store.start()
    try:
        run_worker(dicom_settings)
    finally:
        store.stop()
    assert final_of(statuses(dicom_settings, {rid}), rid)["state"] == "completed"
    msgs = consume(dicom_settings, dicom_settings.topics.received_instances, a1.images)
    recs = [serde.decode("received_instance", m.value()) for m in msgs]
    originals = {a1.study_uid, a1.patient_id, "A1", *a1.sop_uids()}
    for r in recs:  # the shared topic: values as stored only
        assert r["deidentified"] and r["study_instance_uid"] != a1.study_uid
        assert r["sop_instance_uid"] not in a1.sop_uids() and r["accession"].startswith("ACC-")
        assert r["patient_id"] == pseudonym(key, "default", a1.patient_id)  # the warehouse's pseudonym
        assert not originals & {str(v) for v in r.values()}
    restricted = [serde.decode("received_original", m.value())
                  for m in consume(dicom_settings, dicom_settings.topics.received_restricted, a1.images)]
    assert {r["original_sop_instance_uid"] for r in restricted} == set(a1.sop_uids())
    assert {(r["original_study_instance_uid"], r["original_accession"], r["original_patient_id"])
            for r in restricted} == {(a1.study_uid, "A1", a1.patient_id)}
    assert {r["sop_instance_uid"] for r in restricted} == {r["sop_instance_uid"] for r in recs}


def test_a_study_ref_is_opened_and_status_events_speak_research_terms(dicom_settings: Settings) -> None:
    """An analyst's request names the study by the study_ref of its report row: the worker opens it with
    the installation's key, moves the study into a de-identified project, and its status events name the
    study by the values the analysts' tables and the stored images carry, never the clinical ones.
    Research values alone, and a reference of another key, are refused with the reason."""
    from processors.ingest.pseudonym import keyed_identifier, keyed_uid
    from processors.ingest.research import research_report

    s = dicom_settings.replace(ingest={"pseudonym_key": "worker-study-ref-key-0123456789"})
    key = research_key(s)
    a = spec("A", 2)
    row = research_report({"site": "default", "accession": a.accession, "study_instance_uid": a.study_uid,
                           "patient_id": a.patient_id, "version": 1, "received_time": None}, key)
    rid = request(s, row["accession"], project="IRB-7", study_ref=row["study_ref"])
    keyed_only = request(s, row["accession"], project="IRB-7", study_instance_uid=row["study_instance_uid"])
    foreign = request(s, None, project="IRB-7", study_ref=research_report(
        {"site": "default", "accession": a.accession, "version": 1}, b"another installation's key 0000")
        ["study_ref"])
    with research_scp(s, deid_key=key):
        run_worker(s)
    events = statuses(s, {rid, keyed_only, foreign})
    final = final_of(events, rid)
    assert final["state"] == "completed", final["error"]
    assert final["accession"] == keyed_identifier(key, "accession", a.accession) == row["accession"]
    assert final["study_instance_uids"] == [keyed_uid(key, a.study_uid)] == [row["study_instance_uid"]]
    clinical = (a.accession, a.study_uid, a.patient_id, *a.sop_uids())
    mine = [e for e in events if e["request_id"] in (rid, keyed_only, foreign)]
    assert not [v for e in mine for v in clinical if v in repr(e)]
    stored = {pydicom.dcmread(p).StudyInstanceUID for p in (s.research_store_dir / "IRB-7").rglob("*.dcm")}
    assert stored == {row["study_instance_uid"]}  # the images join the report on the keyed UID
    refused = final_of(events, keyed_only)
    assert refused["state"] == "failed" and "study_ref" in refused["error"] and "PACS does not know" in (
        refused["error"])
    wrong = final_of(events, foreign)
    assert wrong["state"] == "failed" and "does not open" in wrong["error"]


def test_the_next_request_starts_while_the_last_study_is_reconciled(dicom_settings: Settings) -> None:
    """With one association, the mover goes on with the next request (its C-FINDs) once a request's
    last C-MOVE is done, while that request waits for the SCP's last records; the final statuses are
    as before and the waiting request's record is committed only after its own final status."""
    first, second = request(dicom_settings, "A1"), request(dicom_settings, "A2")
    w = new_worker(dicom_settings)
    settle = w._settle

    def slow_settle(req: Any, *args: Any, **kwargs: Any) -> Any:
        if req.id == first:  # the SCP's last records of the first request come late
            time.sleep(1.5)
        return settle(req, *args, **kwargs)

    w._settle = slow_settle  # type: ignore[method-assign]
    with research_scp(dicom_settings):
        run_until_idle(w)
    order = [(e["request_id"], e["state"]) for e in w.log]
    assert order.index((second, "resolving")) < order.index((first, "completed")), order
    events = statuses(dicom_settings, {first, second})
    assert final_of(events, first)["completed"] == 3 and final_of(events, second)["completed"] == 3
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P1")) == sorted(
        spec("A", 1).sop_uids() + spec("A", 2).sop_uids())
    assert w.loop.outstanding() == 0  # every record done: committed after its final status


def test_a_request_retried_by_its_finisher_stays_active_while_it_runs_again(dicom_settings: Settings) -> None:
    """A request whose last reconciliation fails is re-queued by its finisher thread; with no back-off a
    mover takes it up again before that thread has ended. The run that ended must not mark the new run
    inactive: a cancel or a redelivery of the request would then not see it running."""
    s = dicom_settings.replace(pacs={"backoff_s": 0.0})
    rid = request(s, "A1")
    w = new_worker(s)
    settle, done_with, move_one = w._settle, w._done_with, w._move_one
    failed: list[str] = []
    active_in_second_run: list[bool] = []

    def settle_failing_once(req: Any, *args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(req.id)
            raise RuntimeError("the SCP's records could not be read")
        return settle(req, *args, **kwargs)

    def late_done_with(req: Any, *args: Any) -> None:
        if threading.current_thread().name.startswith("dicom-finish"):
            time.sleep(0.5)  # the mover takes up the retry meanwhile
        done_with(req, *args)

    def watched_move_one(req: Any, *args: Any, **kwargs: Any) -> Any:
        if req.attempt == 2:
            time.sleep(1.0)  # the first run's finisher ends in this time
            with w._cv:
                active_in_second_run.append(req.id in w._active)
        return move_one(req, *args, **kwargs)

    w._settle = settle_failing_once  # type: ignore[method-assign]
    w._done_with = late_done_with  # type: ignore[method-assign]
    w._move_one = watched_move_one  # type: ignore[method-assign]
    with research_scp(s):
        run_until_idle(w)
    assert failed == [rid] and active_in_second_run == [True]
    assert final_of(statuses(s, {rid}), rid)["completed"] == 3
    assert w.loop.outstanding() == 0


def test_without_a_finisher_thread_the_mover_reconciles_itself(dicom_settings: Settings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread to be had for a finisher (the process is at its limit): the request still completes,
    its study's lock is released and nothing is left to join at shutdown."""
    start = threading.Thread.start

    def refuse_finishers(self: threading.Thread) -> None:
        if self.name.startswith("dicom-finish"):
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse_finishers)
    rid = request(dicom_settings, "A1")
    w = new_worker(dicom_settings)
    with research_scp(dicom_settings):
        run_until_idle(w)
    assert final_of(statuses(dicom_settings, {rid}), rid)["completed"] == 3
    assert not w._finishers and all(not lock.locked() for lock in w._study_locks.values())
    assert w.loop.outstanding() == 0
