"""The retrieval worker: retrieval requests (Kafka) -> C-FIND -> C-MOVE -> reconciliation -> status events.

Threads: one consumer thread (the streams layer's ``ConsumerLoop``, with the worker as its ``Handler``:
it polls, decodes, queues and commits) and ``max_associations`` mover threads; once a request's last
C-MOVE is done, a short-lived finisher thread waits for the SCP's last records, reconciles and emits the
final status, while the mover goes on with the next request (``_finish_later``). Per request the states
are (docs/retrieval.md):

    queued -> [waiting_for_window] -> resolving -> moving (pending counts) -> completed | partial | failed
                                   (retry: back to queued with attempt + 1 and the error, after a backoff)

Completeness (moves into our research store, ``research.ae_title``): before a study's first move its
instances are listed (C-FIND at IMAGE level, ``find.c_find_instances``); after the move the list is
reconciled with what the storage SCP recorded per instance (its events, ``expect.Outcomes``; or, with
``research.coordination = "files"``, its manifest, ``expect.Registry.received``). A study is
complete only when every listed instance was stored, or quarantined with a reason; otherwise only the
missing instances are moved again (IMAGE-level C-MOVE; the study again if none of it arrived) on the
next attempt, and after the last attempt the request ends ``partial`` (or ``failed``) naming them. Other
destinations are judged by the PACS's sub-operation counters alone.

Restart safety: each request's record is held (``Acks.hold``) until its final status event was
delivered, so the loop commits a partition only up to its lowest request that is not final yet; a crash
redoes every request from there.
A redone move is idempotent (the store overwrites by SOPInstanceUID) and requests already final
(the status topic, ``expect.StatusLedger``, which every worker of the group reads; with files a
``done-<group>.jsonl`` in the worker's state dir) are not moved again.

Identifiers: a request from the research side names its study by ``study_ref`` (the encrypted reference of
the analysts' tables, ``processors.ingest.research``), which the worker opens with the installation's key
to C-FIND by the clinical identifiers; keyed identifiers alone (``ACC-...``, ``2.25....``, ``psn-...``)
are refused with that advice, as the PACS does not know them. Status events name what the analysts'
tables hold: the keyed accession and, for a de-identified project, the keyed UIDs of the stored images.

Pacing comes from the ``PacsConfig`` (``WorkerOptions.of``): ``max_studies_per_hour``,
``max_images_per_minute`` (0 = no limit), ``windows`` (see ``schedule``; empty = always), ``timezone``
(IANA name, default the host's), ``pending_event_s`` (min seconds between ``moving`` events).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaError, Message, Producer

from processors.ingest.pseudonym import UID_IN_TEXT, keyed_identifier, keyed_uid
from processors.ingest.research import StudyRef, StudyRefError, looks_keyed, open_study_ref
from sinks.dicom import metrics, schedule
from sinks.dicom.config import PacsConfig, ResearchConfig
from sinks.dicom.expect import Outcomes, Registry, StatusLedger, publish, withdraw
from sinks.dicom.find import DicomError, Pacs, PacsSession, StudyMatch, c_find_instances, resolve
from sinks.dicom.move import MoveResult, c_move_instances, c_move_study
from sinks.dicom.projects import Project, ProjectRegistry, StaticProjects, StoreOptions, options_of, refusal
from sinks.dicom.wire import compat
from sinks.dicom.wire.scp import PHASES, TIMING
from streams import serde
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record, Ticket
from streams.producer import make_producer, produce

LOG = logging.getLogger(__name__)
STAGE = "dicom-worker"
FINAL = ("completed", "partial", "failed", "cancelled")
PRIORITY = {"high": 0, "normal": 1, "low": 2}
MAX_MISSING_UIDS = 1000  # missing SOP Instance UIDs named in one status event (``missing`` counts them all)
# what an unexpected exception's message becomes in a status event: it may name anything
WITHHELD = "unexpected error (its message is withheld; the worker's log has the traceback by request id)"


@dataclass(frozen=True)
class WorkerOptions:
    studies_per_hour: float = 0.0
    images_per_minute: float = 0.0
    windows: str = ""
    timezone: str = ""
    pending_event_s: float = 1.0
    max_queued: int = 10000
    settle_s: float = 10.0  # longest wait after a C-MOVE for the SCP's last records (reconciliation)

    @classmethod
    def of(cls, p: PacsConfig) -> WorkerOptions:
        return cls(studies_per_hour=p.max_studies_per_hour, images_per_minute=p.max_images_per_minute,
                   windows=p.windows, timezone=p.timezone, pending_event_s=p.pending_event_s)

    def tz(self) -> tzinfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


@dataclass(frozen=True)
class Reconciled:
    """A study's listed instances against what the research store recorded for the request."""

    listed: int
    stored: int
    quarantined: int  # with a reason
    missing: tuple[str, ...]  # SOP Instance UIDs, in listing order

    @property
    def done(self) -> int:
        return self.stored + self.quarantined


@dataclass
class Request:
    rec: dict[str, Any]
    partition: int
    offset: int
    seq: int
    attempt: int = 0
    ready_at: float = 0.0  # monotonic
    waiting_reported: bool = False
    studies: list[StudyMatch] = field(default_factory=list)
    done_studies: dict[str, MoveResult] = field(default_factory=dict)
    listed: dict[str, dict[str, str]] = field(default_factory=dict)  # study -> {SOP UID: series UID}
    recon: dict[str, Reconciled] = field(default_factory=dict)  # study -> its last reconciliation
    last_error: str | None = None
    last_status: int | None = None
    ticket: Ticket | None = None  # done (the record committable) once the final status was delivered
    ref: StudyRef | None = None  # the opened study_ref (clinical identifiers: never in a status event)
    keyed: bool = False  # status events carry keyed UIDs (a de-identified project)
    identified: bool = False  # an identified project's: its status errors keep their clinical detail
    withheld: dict[str, str] = field(default_factory=dict)  # unexpected error texts -> what events say
    run: int = 0  # how often a mover took it up: a run's end never ends a later run's (``_done_with``)

    @property
    def id(self) -> str:
        return str(self.rec["request_id"])

    @property
    def rank(self) -> int:
        return PRIORITY.get(str(self.rec.get("priority") or "normal").lower(), 1)


class Ledger:
    """Request ids that reached a final state (append-only JSON lines), to skip redelivered ones: one
    host's file (``research.coordination = "files"``; with Kafka, ``expect.StatusLedger``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.done[row["request_id"]] = row["state"]
                except (ValueError, KeyError):
                    continue
        self._lock = threading.Lock()

    def add(self, request_id: str, state: str) -> None:
        with self._lock:
            self.done[request_id] = state
            with self.path.open("a") as fh:
                fh.write(json.dumps({"request_id": request_id, "state": state, "time": time.time()}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def sync(self) -> None:
        """Nothing to catch up with: this process wrote every line."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class Worker(Handler):
    """The retrieval worker; also the ``Handler`` of its consumer loop (``self.loop``)."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, pacs: PacsConfig, research: ResearchConfig,
                 state_dir: Path | str, options: WorkerOptions | None = None,
                 group_id: str | None = None, key: bytes | None = None) -> None:
        self.topics = topics
        self.key = key  # the pseudonym key: opens study references, keys the identifiers of status events
        self.pacs_config = pacs
        self.research = research
        self.opts = options or WorkerOptions.of(pacs)
        self.pacs = Pacs.of(pacs)
        if self.pacs.fast_move and not compat.usable("scu"):  # the self-check at start; else plain pynetdicom
            self.pacs = replace(self.pacs, fast_move=False)
        self.windows = schedule.parse_windows(self.opts.windows)
        self.pacer = schedule.Pacer(self.opts.studies_per_hour, self.opts.images_per_minute)
        self.group_id = group_id or f"{kafka.consumer_group}.dicom-worker"
        self.state_dir = Path(state_dir) / "dicom-worker"
        if research.coordination not in ("kafka", "files"):
            raise ValueError(f"research.coordination is {research.coordination!r}: kafka or files")
        self.registry = Registry(Path(research.store_dir)) if research.coordination == "files" else None
        self.ledger: Ledger | StatusLedger
        self.outcomes: Outcomes | None = None
        self.expect_producer: Producer | None = None
        if self.registry is None:  # shared nothing: expectations, outcomes and the ledger are topics
            self.ledger = StatusLedger(kafka, topics)
            self.outcomes = Outcomes(kafka, topics)
            self.expect_producer = make_producer(kafka, **{"linger.ms": 0})
        else:
            self.ledger = Ledger(self.state_dir / f"done-{self.group_id}.jsonl")
        self.projects = ProjectRegistry(kafka, topics)  # replays the projects topic from first use
        self.producer = make_producer(kafka, **{"linger.ms": pacs.status_linger_ms})
        serde.registry()  # parse the contracts at start-up, not while the first request waits
        self.stop_event = threading.Event()
        self._cv = threading.Condition()
        self._pending: list[Request] = []  # queued, not being worked on
        self._active: dict[str, Request] = {}
        self._cancelled: set[str] = set()
        self._seq = 0
        self._backlogged = False  # fetching paused at max_queued, until the backlog is below half of it
        self._at_end = False  # the loop's at_end() as of its last round (read on the loop's thread)
        self._study_locks: dict[str, threading.Lock] = {}
        self._finishers: set[threading.Thread] = set()  # reconciling requests' last studies (_finish_later)
        self.log: list[dict[str, Any]] = []  # status events produced (for tests and the bench)
        self._sessions = threading.local()  # each mover thread's PacsSession
        # immediate: a new request starts at once, not when a batch of them has filled or 0.2 s passed;
        # the dead letters go through the status producer
        self.loop = ConsumerLoop(kafka, LoopConfig(
            group_id=self.group_id, topics=[topics.retrieval_requests], stage=STAGE,
            dead_letter_topic=topics.dead_letter, max_batch=500, poll_s=0.2, immediate=True, track_end=True,
            conf={"session.timeout.ms": 6000}), self, producer=self.producer)
        self.caught_up = self.loop.caught_up  # the consumer reached the end of every partition once

    # -- status events ---------------------------------------------------------------------------
    def emit(self, req: Request, state: str, result: MoveResult | None = None, error: str | None = None,
             on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
        rec = req.rec
        uids = [self._research_uid(req, s.study_instance_uid) for s in req.studies]
        expected = self._expected(req) if req.studies else None
        event: dict[str, Any] = {
            "request_id": req.id, "project_id": rec["project_id"], "state": state, "attempt": req.attempt,
            "accession": self._research_accession(req), "study_instance_uid": uids[0] if uids else
            self._research_uid(req, rec.get("study_instance_uid"), from_request=True),
            "study_instance_uids": uids, "expected_instances": expected,
            "pacs_ae": self.pacs.ae_title, "destination_ae": rec.get("destination_ae"),
            "completed": None, "failed": None, "warning": None, "remaining": None,
            "dimse_status": None, "error": error if req.identified else self._safe_text(req, error),
            "time": datetime.now(UTC),
        }
        if result is not None:
            event.update(completed=result.completed, failed=result.failed, warning=result.warning,
                         remaining=result.remaining, dimse_status=result.status)
        if req.recon:
            recon = list(req.recon.values())
            missing = [self._research_uid(req, sop) for r in recon for sop in r.missing]
            event.update(stored=sum(r.stored for r in recon), quarantined=sum(r.quarantined for r in recon),
                         missing=len(missing), missing_sop_instance_uids=missing[:MAX_MISSING_UIDS])
        produce(self.producer, self.topics.retrieval_status, "retrieval_status", req.id, event,
                on_delivery=on_delivery)
        self.producer.poll(0)
        self.log.append(event)
        metrics.status(state, result)
        # logs are neither access-checked nor audited: research values only, whatever the project
        LOG.info("%s %s attempt=%d %s", req.id, state, req.attempt, self._safe_text(req, error) or "")

    def _safe_text(self, req: Request, text: str | None) -> str | None:
        """A status error as a de-identified project's analysts may read it (and the logs hold it): the
        PACS by its AE title only, every DICOM UID keyed as the event's UID columns are, the request's
        clinical accession keyed and its patient id named by kind, an unexpected exception by its class.
        Every error text reaches the event through ``emit``: this is the one place it is made safe."""
        if not text:
            return text
        for full, safe in req.withheld.items():
            text = text.replace(full, safe)
        pacs = self.pacs
        if pacs.host:
            text = text.replace(f"@{pacs.host}:{pacs.port}", "").replace(pacs.host, "[PACS host]")
        ref = req.ref
        for acc in {req.rec.get("accession"), ref.accession if ref is not None else None}:
            if acc and not looks_keyed(str(acc)):
                text = text.replace(str(acc), keyed_identifier(self.key, "accession", str(acc))
                                    if self.key is not None else "[accession]")
        for pid in {req.rec.get("patient_id"), ref.patient_id if ref is not None else None}:
            if pid and not looks_keyed(str(pid)):
                text = text.replace(str(pid), "[patient id]")
        key = self.key
        # every UID in an error text is the PACS's (``process`` names studies by their clinical UIDs)
        return UID_IN_TEXT.sub(lambda m: keyed_uid(key, m.group()) if key is not None else "[UID]", text)

    def _crashed(self, req: Request, exc: Exception) -> str:
        """The error text of an unexpected exception; its message may carry clinical values (a
        DeliveryError names the study), so only its class and traceback frames are logged, and a
        non-identified project's events get the class and a fixed phrase (``_safe_text``)."""
        name = type(exc).__name__
        LOG.error("request %s crashed: %s (message withheld)\n%s", req.id, name,
                  "".join(traceback.format_tb(exc.__traceback__)).rstrip())
        full = f"{name}: {exc}"
        req.withheld[full] = f"{name}: {WITHHELD}"
        return full

    def _research_uid(self, req: Request, uid: str | None, from_request: bool = False) -> str | None:
        """A UID as the research store and the analysts' tables know it. UIDs from the PACS are clinical;
        one the request gave is a research value when the request came with a study reference (the CLI
        and standing cohorts pair them), else clinical: never judged by its form."""
        if not uid or not req.keyed or self.key is None or (from_request and req.ref is not None):
            return uid
        return keyed_uid(self.key, uid)

    def _research_accession(self, req: Request) -> str | None:
        accession = req.ref.accession if req.ref is not None else req.rec.get("accession")
        if not accession or self.key is None or looks_keyed(accession):
            return accession or None
        return keyed_identifier(self.key, "accession", accession)

    def _clinical(self, req: Request) -> dict[str, str | None]:
        """The identifiers to C-FIND the PACS by: the opened study reference's, else the request's own."""
        rec, ref = req.rec, req.ref
        if ref is not None:
            return {"accession": ref.accession or None, "study_uid": ref.study_instance_uid,
                    "patient_id": None if ref.accession or ref.study_instance_uid else ref.patient_id,
                    "study_date": None if ref.accession or ref.study_instance_uid else ref.study_date}
        return {"accession": rec.get("accession"), "study_uid": rec.get("study_instance_uid"),
                "patient_id": rec.get("patient_id"), "study_date": rec.get("study_date")}

    def _open_ref(self, req: Request) -> str | None:
        """Open the request's study reference and note whether its status events carry keyed UIDs;
        the reason a request cannot name a study, or None."""
        rec = req.rec
        project = self.projects.get(str(rec.get("project_id") or ""))
        req.identified = project is not None and project.identified
        req.keyed = self.key is not None and not req.identified
        ref = rec.get("study_ref")
        if ref:
            if self.key is None:
                return "study_ref needs the installation's pseudonym key (ingest.pseudonym_key or _file)"
            try:
                req.ref = open_study_ref(self.key, str(ref))
            except StudyRefError as exc:
                return f"study_ref: {exc}"
            return None
        keyed = [f for f in ("accession", "study_instance_uid", "patient_id") if looks_keyed(rec.get(f))]
        if keyed:
            what = "is a research pseudonym" if len(keyed) == 1 else "are research pseudonyms"
            return (f"{', '.join(keyed)} {what} the PACS does not know: request the study by its "
                    "study_ref (column study_ref of reports_latest; radstream retrieve --study-ref)")
        return None

    # -- consuming (the loop's Handler; called on the loop's thread) -------------------------------
    def add(self, records: Sequence[Record], acks: Acks) -> None:
        """Decode, skip what is final already, cancel, validate and queue each request. A request's
        record is held until its final status is delivered; what needs no final status here (a
        redelivered final request, a cancel) is done with the loop's next flush."""
        self.ledger.sync()  # what other workers finished (a rebalance may hand their requests here)
        for record in records:
            try:
                rec = serde.decode("retrieval_requested", record.value)
            except serde.SerdeError as exc:
                acks.dead_letter(record, exc)
                continue
            self._seq += 1
            req = Request(rec, record.partition, record.offset, self._seq)
            if req.id in self.ledger.done:
                LOG.info("%s already %s; skipping redelivery", req.id, self.ledger.done[req.id])
                continue
            if str(rec.get("action") or "request") == "cancel":
                self._cancel(req)
                continue
            with self._cv:
                running = self._active.get(req.id)
            if running is not None:
                # handed back to this worker by a rebalance while it runs here: not moved twice; its
                # new record is committed with the running request's final status (the old ticket
                # belongs to the earlier assignment and commits nothing)
                running.ticket = ticket = acks.hold(record)
                if req.id in self.ledger.done:  # it became final meanwhile
                    ticket.done()
                continue
            req.ticket = acks.hold(record)
            error = self._validate(rec) or self._open_ref(req)
            if error:
                self._finish(req, "failed", None, error)
                continue
            # emitted before a mover can see it: a mover's "resolving" must not take an earlier time
            self.emit(req, "queued")
            with self._cv:
                self._pending.append(req)
                self._cv.notify()

    def busy(self) -> bool:
        """Back-pressure: pause fetching at ``max_queued`` queued requests, resume below half of that;
        fetch nothing more once stopping (the loop runs on until the last final statuses are in)."""
        with self._cv:
            backlog = len(self._pending)
        if self._backlogged:
            self._backlogged = backlog >= self.opts.max_queued // 2
        else:
            self._backlogged = backlog >= self.opts.max_queued
        return self._backlogged or self.stop_event.is_set()

    def tick(self) -> None:
        self.producer.poll(0)  # delivery callbacks of status events (final ones make records done)
        self._at_end = self.loop.at_end()

    def on_revoke(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Another worker redoes the requests of these partitions that did not start here yet (what
        runs here runs to its end; its record is the new owner's anyway)."""
        lost = {p for t, p in partitions if t == self.topics.retrieval_requests}
        with self._cv:
            self._pending = [r for r in self._pending if r.partition not in lost]
        self._at_end = False

    def _validate(self, rec: dict[str, Any]) -> str | None:
        dest = str(rec.get("destination_ae") or "")
        if dest not in self.research.allowed_destinations:
            return f"destination {dest!r} is not on the allow-list"
        if not str(rec.get("project_id") or "").strip():
            return "project_id is required"
        if why := self._refusal_now(rec, wait_s=2.0):
            return why
        if not (rec.get("study_ref") or rec.get("accession") or rec.get("study_instance_uid")
                or (rec.get("patient_id") and rec.get("study_date"))):
            return "request needs a study_ref, an accession, a study UID, or a patient id with a study date"
        return None

    def _refusal_now(self, rec: dict[str, Any], wait_s: float = 0.0) -> str | None:
        """Why the request may not run under its project's registration as it is now (None: may): checked
        when it is queued and again before each study's C-MOVE, as a project may be retired or
        re-registered as identified while its requests wait."""
        project_id, dest = str(rec["project_id"]), str(rec.get("destination_ae") or "")
        # once queued, the registration as held now: ``get`` would wait for the topic on every call
        # while the registry's consumer reconnects (a broker outage)
        project = self.projects.get(project_id, wait_s) if wait_s else self.projects.peek(project_id)
        if why := refusal(StaticProjects([project] if project else []), project_id, dest):
            return why
        return requester_refusal(project, rec)

    def _cancel(self, cancel: Request) -> None:
        with self._cv:
            hit = [r for r in self._pending if r.id == cancel.id]
            for r in hit:
                self._pending.remove(r)
            if not hit and cancel.id in self._active:
                self._cancelled.add(cancel.id)  # stops before its next study
        for r in hit:
            self._finish(r, "cancelled", None, "cancelled before it started")

    # -- moving --------------------------------------------------------------------------------
    def _next(self) -> Request | None:
        with self._cv:
            while not self.stop_event.is_set():
                now = time.monotonic()
                ready = [r for r in self._pending if r.ready_at <= now]
                if ready:
                    req = min(ready, key=lambda r: (r.rank, r.seq))
                    self._pending.remove(req)
                    self._active[req.id] = req
                    req.run += 1
                    return req
                waits = [r.ready_at - now for r in self._pending]
                self._cv.wait(timeout=min([0.5, *waits]))
        return None

    def held(self) -> dict[str, int]:
        """Requests this worker holds now: queued (for a mover, a window or a retry) and active."""
        with self._cv:
            return {"queued": len(self._pending), "active": len(self._active)}

    def is_idle(self) -> bool:
        """Caught up with every assigned partition and nothing queued, running or uncommitted."""
        if not self._at_end:
            return False
        with self._cv:
            if self._pending or self._active:
                return False
        return self.loop.outstanding() == 0

    def _work_ready(self) -> bool:
        with self._cv:
            now = time.monotonic()
            return not self.stop_event.is_set() and any(r.ready_at <= now for r in self._pending)

    def move_loop(self) -> None:
        # At start-up let the consumer read the backlog first (a few seconds at most), so that a
        # high-priority request behind a batch is seen before the first move starts.
        self.caught_up.wait(timeout=5.0)
        # One association per mover thread, kept open only while requests follow each other (C-FIND
        # and C-MOVE of the next request reuse it); closed as soon as none is ready.
        session = PacsSession(self.pacs)
        self._sessions.session = session
        try:
            while not self.stop_event.is_set():
                req = self._next()
                if req is None:
                    return
                run = req.run
                deferred = False
                try:
                    deferred = self.process(req)
                except Exception as exc:  # a bug or Kafka down: retry the request, never lose it
                    self._retry_or_fail(req, self._crashed(req, exc), None)
                finally:
                    if not deferred:  # else its finisher thread ends it (``_finish_later``)
                        self._done_with(req, run)
                    if not self._work_ready():
                        self._close_session(session)
        finally:
            self._close_session(session)

    def _done_with(self, req: Request, run: int) -> None:
        """The end of a run of ``req``: it is no longer active, unless it was retried and a mover has
        taken it up again meanwhile (then that later run is what is active)."""
        with self._cv:
            if req.run == run:
                self._active.pop(req.id, None)
            self._cv.notify_all()

    def _finish_later(self, req: Request, settle: Callable[[], MoveResult], uid: str,
                      errors: list[str], retriable: bool) -> None:
        """The rest of a request whose last C-MOVE is done, on a thread of its own: waiting for the SCP's
        last records, reconciling, the final status (or a retry). Meanwhile the mover and its association
        go on with the next request (its C-FINDs): that wait was ~7 ms per study at x1 with nothing
        else for the PACS to do. The request stays active until this ends."""

        run = req.run

        def finish() -> None:
            try:
                result = settle()
                self._conclude(req, uid, result, errors, retriable)
            except Exception as exc:  # a bug or Kafka down: retry the request, never lose it
                self._retry_or_fail(req, self._crashed(req, exc), None)
            finally:
                self._done_with(req, run)
                with self._cv:
                    self._finishers.discard(threading.current_thread())

        t = threading.Thread(target=finish, name=f"dicom-finish-{req.id[:8]}", daemon=True)
        with self._cv:
            self._finishers.add(t)
        try:
            t.start()
        except RuntimeError:  # no thread to be had: finish here (``settle`` releases the study's lock)
            LOG.warning("request %s: no finisher thread; reconciling on the mover", req.id)
            with self._cv:
                self._finishers.discard(t)  # never started: nothing to join at shutdown
            finish()

    @staticmethod
    def _close_session(session: PacsSession) -> None:
        try:
            session.close()
        except Exception:  # the PACS went away meanwhile: nothing to release
            LOG.debug("releasing the PACS association failed", exc_info=True)
            session.assoc = None

    def _session(self) -> PacsSession | None:
        return getattr(self._sessions, "session", None)

    def _window_wait(self, req: Request) -> bool:
        """True when the PACS may be used now; otherwise re-queue until the window opens."""
        now = datetime.now(self.opts.tz()).astimezone(self.opts.tz())
        nb = req.rec.get("not_before")
        if isinstance(nb, datetime) and nb > datetime.now(UTC):
            self._requeue(req, (nb - datetime.now(UTC)).total_seconds(), "waiting_for_window",
                          f"not before {nb.isoformat()}")
            return False
        if schedule.is_open(self.windows, now):
            return True
        opens = schedule.next_open(self.windows, now)
        if opens is None:
            self._finish(req, "failed", None, "no retrieval window ever opens for this PACS")
            return False
        self._requeue(req, (opens - now).total_seconds(), "waiting_for_window",
                      f"PACS window opens {opens.isoformat()}")
        return False

    def _requeue(self, req: Request, delay: float, state: str, why: str) -> None:
        req.ready_at = time.monotonic() + max(delay, 0.0)
        if not req.waiting_reported:
            self.emit(req, state, error=why)
            req.waiting_reported = True
        with self._cv:
            self._pending.append(req)
            self._cv.notify()

    def _expired(self, req: Request) -> bool:
        na = req.rec.get("not_after")
        if isinstance(na, datetime) and na < datetime.now(UTC):
            self._finish(req, "failed", None, f"not after {na.isoformat()} passed before it could run")
            return True
        return False

    def process(self, req: Request) -> bool:
        """Resolve, move and reconcile one request; True when its last study's reconciliation and final
        status were handed to a finisher thread (``_finish_later``), False when it is done here."""
        if self._expired(req) or not self._window_wait(req):
            return False
        req.waiting_reported = False
        if req.attempt == 0:
            req.attempt = 1
        rec = req.rec
        if not req.studies:
            self.emit(req, "resolving")
            ids = self._clinical(req)
            t0 = time.perf_counter_ns() if TIMING else 0
            try:
                req.studies = resolve(self.pacs, accession=ids["accession"], study_uid=ids["study_uid"],
                                      patient_id=ids["patient_id"], study_date=ids["study_date"],
                                      session=self._session())
                if TIMING:
                    PHASES.add("worker.resolve", t0)
            except DicomError as exc:
                if exc.retriable:
                    self._retry_or_fail(req, f"C-FIND: {exc}", exc.status)
                else:
                    self._finish(req, "failed", None, f"C-FIND: {exc}", status=exc.status)
                return False
            if not req.studies:
                # the accession keyed for every project (a patient id named by its kind, never its value);
                # the UID clinical: ``emit`` keys it for a de-identified project, as its UID columns
                key = (self._research_accession(req) or ids["study_uid"]
                       or ("the study reference" if req.ref else "the patient id and study date"))
                self._finish(req, "failed", None, f"no study found in {self.pacs.ae_title} for {key}")
                return False
        dest = str(rec["destination_ae"])
        errors: list[str] = []
        retriable = False
        done = req.done_studies
        todo = [s for s in req.studies
                if s.study_instance_uid not in done or done[s.study_instance_uid].outcome != "completed"]
        for i, study in enumerate(todo):
            uid = study.study_instance_uid
            if req.id in self._cancelled:
                self._finish(req, "cancelled", self._total(req), "cancelled while running")
                return False
            if not schedule.is_open(self.windows, datetime.now(self.opts.tz()).astimezone(self.opts.tz())):
                self._window_wait(req)  # re-queued; the studies done so far are kept
                return False
            wait = self.pacer.reserve(study.instances or 1)
            if wait > 0:
                session = self._session()
                if session is not None:  # no idle association to the PACS while the throttle waits
                    self._close_session(session)
                if self.stop_event.wait(wait):
                    return False
            if why := self._refusal_now(rec):  # retired or now identified since it was queued
                total = self._total(req)
                self._finish(req, "partial" if total.completed else "failed", total, why)
                return False
            # the last study's reconciliation may wait for the SCP's last records: not on the mover
            moved = self._move_one(req, study, dest, defer=i == len(todo) - 1)
            if not isinstance(moved, MoveResult):
                self._finish_later(req, moved, uid, errors, retriable)
                return True
            errors, retriable = self._noted(req, uid, moved, errors, retriable)
        self._conclude(req, None, None, errors, retriable)
        return False

    @staticmethod
    def _noted(req: Request, uid: str, result: MoveResult, errors: list[str],
               retriable: bool) -> tuple[list[str], bool]:
        """A study's result kept in the request; the errors so far and whether a retry may help."""
        req.done_studies[uid] = result
        if result.outcome != "completed":
            errors = [*errors, result.error or f"status 0x{(result.status or 0):04X}"]
            retriable = retriable or result.retriable
            req.last_status = result.status
        return errors, retriable

    def _conclude(self, req: Request, uid: str | None, result: MoveResult | None, errors: list[str],
                  retriable: bool) -> None:
        """The request's final status, or its retry, once every study was moved (``uid``'s ``result``
        last, when it was reconciled apart)."""
        if uid is not None and result is not None:
            errors, retriable = self._noted(req, uid, result, errors, retriable)
        total = self._total(req)
        if not errors:
            self._finish(req, "completed", total, None)
        elif retriable:
            self._retry_or_fail(req, "; ".join(errors), req.last_status)
        else:
            self._finish(req, "partial" if total.completed else "failed", total, "; ".join(errors),
                         status=req.last_status)

    def _move_one(self, req: Request, study: StudyMatch, dest: str,
                  defer: bool = False) -> MoveResult | Callable[[], MoveResult]:
        """Move one study and reconcile it. ``defer``: when the reconciliation has to wait for the SCP's
        records, return it instead (a callable, to run on another thread), with the study's lock still
        held: it releases the lock when it is done."""
        uid = study.study_instance_uid
        lock = self._study_locks.setdefault(uid, threading.Lock())
        lock.acquire()
        held = True  # False once the deferred reconciliation owns the lock
        try:
            t0 = time.perf_counter_ns() if TIMING else 0
            # the registration travels to the broker while the PACS lists the instances; the C-MOVE
            # waits for its acknowledgement (``confirm``)
            confirm = self._expect(req, uid, dest)
            listed = req.listed.get(uid)
            if listed is None and self._reconciles(dest):
                try:
                    listed = req.listed[uid] = self.list_instances(req, study)
                except DicomError as exc:
                    return MoveResult("failed", status=exc.status, error=f"C-FIND (IMAGE level): {exc}",
                                      retriable=exc.retriable)
            if TIMING:
                t0 = PHASES.add("worker.list", t0)
            confirm()
            if TIMING:
                t0 = PHASES.add("worker.expect", t0)
            # once more after the expectation is out: a registration that turned identified before it
            # was made is refused here; one that turns identified after it leaves the expectation
            # de-identified, and the SCP stores identified only when both say so (scp._resolve)
            if why := self._refusal_now(req.rec):
                return MoveResult("failed", error=why, retriable=False)
            prior = req.recon.get(uid)
            # the missing instances only; the whole study when none of it arrived (a smaller identifier)
            todo = list(prior.missing) if listed and prior is not None and prior.done else []
            base = [prior.done if todo and prior is not None else 0]  # counts the events add to
            last_emit = [0.0]

            def pending(r: MoveResult) -> None:
                now = time.monotonic()
                if now - last_emit[0] >= self.opts.pending_event_s:
                    last_emit[0] = now
                    shifted = replace(r, completed=r.completed + base[0])  # + what earlier moves brought
                    self.emit(req, "moving", self._total(req, extra=shifted))

            self.emit(req, "moving", self._total(req))
            last_emit[0] = time.monotonic()  # counts follow pending_event_s after the start, not at once
            lines = self._recorded(req, uid)
            if not todo:
                result = self._with_assoc(lambda assoc: c_move_study(self.pacs, dest, uid, pending, assoc))
            else:
                result = self._move_missing(uid, listed or {}, todo, dest, pending, base)
            if TIMING:
                t0 = PHASES.add("worker.move", t0)
            if listed:
                listing = listed

                def reconcile(t0: int = t0) -> MoveResult:
                    try:
                        done = self._reconcile(req, uid, listing, todo or list(listing), result, lines)
                        if TIMING:
                            PHASES.add("worker.settle", t0)
                        return done
                    finally:
                        if not held:
                            lock.release()

                if defer:
                    held = False
                    return reconcile
                return reconcile()
            if result.outcome == "completed" and study.instances and result.completed < study.instances:
                # the PACS said success but moved fewer instances than C-FIND announced
                result.outcome = "partial"
                result.error = f"moved {result.completed} of {study.instances} instances"
            return result
        finally:
            if held:
                lock.release()

    def list_instances(self, req: Request, study: StudyMatch) -> dict[str, str]:
        """The study's instances as the PACS lists them before its first move: {SOP UID: series UID}
        (C-FIND at IMAGE level). Listed once per request; a retry moves what is missing from this list."""
        return c_find_instances(self.pacs, study.study_instance_uid, study.instances, session=self._session())

    def _reconciles(self, dest: str) -> bool:
        """Only our own research store records what it did with each instance."""
        return dest == self.research.ae_title

    def _with_assoc(self, move: Callable[[Any], MoveResult]) -> MoveResult:
        """``move(assoc)`` over this thread's session (``assoc`` None: no session, the move opens one)."""
        session = self._session()
        if session is None:
            return move(None)
        try:
            assoc = session.get()
        except DicomError as exc:
            return MoveResult("failed", error=f"C-MOVE {exc}", retriable=exc.retriable)
        return move(assoc)

    def _move_missing(self, uid: str, listed: dict[str, str], todo: list[str], dest: str,
                      pending: Callable[[MoveResult], None], base: list[int]) -> MoveResult:
        """IMAGE-level C-MOVEs of the missing instances, one per series (PS3.4 C.4.2.2.1); counts summed."""
        by_series: dict[str, list[str]] = {}
        for sop in todo:
            by_series.setdefault(listed.get(sop, ""), []).append(sop)
        total = MoveResult("completed", status=0x0000, completed=0, failed=0, warning=0, remaining=0)
        for series, sops in by_series.items():
            def move(assoc: Any, series: str = series, sops: list[str] = sops) -> MoveResult:
                return c_move_instances(self.pacs, dest, uid, series, sops, pending, assoc)

            r = self._with_assoc(move)
            base[0] += r.completed  # the next series' pending counts follow this one's
            total.completed += r.completed
            total.failed += r.failed
            total.warning += r.warning
            total.pendings += r.pendings
            if r.outcome != "completed":
                total.outcome, total.status, total.error = "partial", r.status, r.error
                total.retriable = total.retriable and r.retriable
        return total

    # -- what the research store did, per request: files (one host) or the SCPs' events (Kafka) ------
    def _expect(self, req: Request, study_uid: str, dest: str) -> Callable[[], None]:
        """Tell the SCPs which project the study's instances belong to, before the C-MOVE; the C-MOVE
        waits for the returned ``confirm()`` (the broker has the registration)."""
        project_id = str(req.rec["project_id"])
        options = options_of(self.projects, project_id)
        if self.registry is not None:
            self.registry.register(study_uid, project_id, req.id, dest, options=options)
            return lambda: None
        assert self.outcomes is not None
        self.outcomes.watch(req.id)
        assert self.expect_producer is not None
        return publish(self.expect_producer, self.topics, study_uid, project_id, req.id, dest, options,
                       wait=False)

    def _stored_uid(self, req: Request) -> Callable[[str], str]:
        """How the research store names a UID of this request's project: keyed when de-identified
        (``deid.remap_uid``), unless the project retains UIDs or is identified."""
        opts = StoreOptions.from_dict(options_of(self.projects, str(req.rec["project_id"])))
        key = self.key
        if opts.identified or opts.deid.retain_uids or key is None:
            return lambda uid: uid
        return lambda uid: keyed_uid(key, uid)

    def _recorded(self, req: Request, study_uid: str) -> int:
        """Records of the study's instances for the request so far (manifest lines, or events)."""
        if self.registry is not None:
            try:
                return self.registry.manifest(study_uid, req.id).read_bytes().count(b"\n")
            except OSError:
                return 0
        assert self.outcomes is not None
        return self.outcomes.count(req.id, [study_uid, self._stored_uid(req)(study_uid)])

    def _received(self, req: Request, study_uid: str, sops: Sequence[str]) -> dict[str, tuple[str, str]]:
        """{original SOP UID: (outcome, reason)} of the request's instances of the study."""
        if self.registry is not None:
            return self.registry.received(study_uid, req.id)
        assert self.outcomes is not None
        named = self._stored_uid(req)
        return self.outcomes.received(req.id, {sop: (sop, named(sop)) for sop in sops})

    def _settle(self, req: Request, study_uid: str, listed: Sequence[str], targets: list[str],
                before: int, accepted: int) -> dict[str, tuple[str, str]]:
        """The SCP's records of the request once they have settled after a C-MOVE's final response.

        The SCP records an instance when its outcome is final, which can be after the C-STORE response the
        PACS counted (and its event is batched), so the last records may follow the C-MOVE's final
        response. Settled: every target is stored or quarantined, or the records grew by at least the
        sub-operations the PACS counted as completed or warning (``accepted``: each of them gets a
        record), or ``settle_s`` passed.
        """
        deadline = time.monotonic() + self.opts.settle_s
        # the targets had no good outcome before this move: all of them done takes as many new records
        enough = min(accepted, len(targets))
        while True:
            mark = self.outcomes.mark() if self.outcomes is not None else 0
            new = self._recorded(req, study_uid) - before  # cheaper than reading the records
            if new >= enough:
                got = self._received(req, study_uid, listed)
                if new >= accepted or all(_is_done(got.get(sop)) for sop in targets):
                    return got
            if time.monotonic() >= deadline:
                LOG.warning("%s: the SCP's records of study %s did not settle within %.1f s", req.id,
                            keyed_uid(self.key, study_uid) if self.key is not None else "(unnamed)",
                            self.opts.settle_s)
                return self._received(req, study_uid, listed)
            if self.registry is not None or self.outcomes is None:
                time.sleep(0.005)  # the manifest's lines: looked at again
            else:
                self.outcomes.wait(mark, min(0.1, max(0.0, deadline - time.monotonic())))

    def _reconcile(self, req: Request, uid: str, listed: dict[str, str], targets: list[str],
                   result: MoveResult, lines_before: int) -> MoveResult:
        """The study's result after a move: complete only when every listed instance is stored or
        quarantined with a reason. ``completed`` then counts those, ``failed`` the missing ones."""
        got = self._settle(req, uid, list(listed), targets, lines_before, result.completed + result.warning)
        stored = quarantined = 0
        missing: list[str] = []
        for sop in listed:
            outcome, reason = got.get(sop, ("", ""))
            if outcome == "stored":
                stored += 1
            elif outcome == "quarantined" and reason:
                quarantined += 1
            else:
                missing.append(sop)
        rec = req.recon[uid] = Reconciled(len(listed), stored, quarantined, tuple(missing))
        done = MoveResult("completed", status=result.status, completed=rec.done, failed=len(missing),
                          warning=result.warning, remaining=0, pendings=result.pendings,
                          retriable=result.retriable)
        if missing:
            done.outcome = "partial" if rec.done else "failed"
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            done.error = (f"{len(missing)} of {len(listed)} listed instances not in the research store "
                          f"({shown})" + (f"; {result.error}" if result.error else ""))
        return done

    def _total(self, req: Request, extra: MoveResult | None = None) -> MoveResult:
        total = MoveResult("moving", completed=0, failed=0, warning=0, remaining=0)
        results = list(req.done_studies.values()) + ([extra] if extra is not None else [])
        for r in results:
            total.completed += r.completed
            total.failed += r.failed
            total.warning += r.warning
            total.status = r.status
        expected = self._expected(req)
        done = total.completed + total.failed + total.warning
        total.remaining = max(expected - done, 0) if expected else None
        return total

    @staticmethod
    def _expected(req: Request) -> int:
        """Instances the request should bring: as listed at IMAGE level, else as C-FIND announced."""
        return sum(len(req.listed.get(s.study_instance_uid) or ()) or (s.instances or 0) for s in req.studies)

    def _retry_or_fail(self, req: Request, error: str, status: int | None) -> None:
        total = self._total(req)
        if req.attempt >= self.pacs_config.max_attempts:
            state = "partial" if total.completed else "failed"
            self._finish(req, state, total, f"after {req.attempt} attempts: {error}", status=status)
            return
        delay = self.pacs_config.backoff_s * (2 ** (req.attempt - 1))
        req.attempt += 1
        req.last_error = error
        # a failed study is moved again: only its missing instances when it was reconciled, else whole
        # (Orthanc reports zero counters after an abort)
        req.done_studies = {k: v for k, v in req.done_studies.items() if v.outcome == "completed"}
        req.ready_at = time.monotonic() + delay
        self.emit(req, "queued", total, error=f"retry in {delay:.1f}s: {error}")
        with self._cv:
            self._pending.append(req)
            self._cv.notify()

    def _finish(self, req: Request, state: str, result: MoveResult | None, error: str | None,
                status: int | None = None) -> None:
        if result is not None and status is not None:
            result.status = status
        elif result is None and status is not None:
            result = MoveResult(state, status=status)
        t0 = time.perf_counter_ns() if TIMING else 0
        for study in req.studies:
            if self.registry is not None:
                self.registry.release(study.study_instance_uid, req.id)
                self.registry.forget(study.study_instance_uid, req.id)
            elif self.expect_producer is not None:  # a tombstone even for a study not expected yet: cheap
                withdraw(self.expect_producer, self.topics, study.study_instance_uid, req.id)
        if TIMING:
            PHASES.add("worker.withdraw", t0)
        if self.outcomes is not None:
            self.outcomes.unwatch(req.id)
        self.emit(req, state, result, error=error, on_delivery=self._final_delivered(req, state))

    def _final_delivered(self, req: Request, state: str) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of a request's final status event.

        The request counts as final (ledger, its record's ticket done: committable) only once the broker
        acknowledged that event. The mover does not wait for it: the callback runs on whichever thread
        next polls the producer (the consumer loop's ``tick`` polls every round). A failed delivery
        produces the event again.
        """

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self.ledger.add(req.id, state)
                if req.ticket is not None:
                    req.ticket.done()
                return
            LOG.error("final status %s of %s not delivered (%s); producing it again", state, req.id, err)
            value = msg.value()
            while True:
                try:
                    self.producer.produce(msg.topic() or self.topics.retrieval_status, value=value,
                                          key=req.id, on_delivery=delivered)
                    return
                except BufferError:
                    self.producer.poll(0.1)

        return delivered

    # -- running -------------------------------------------------------------------------------
    def run(self, until_idle: float | None = None, on_tick: Callable[[], None] | None = None) -> None:
        """Run until ``stop_event`` (or, with ``until_idle``, until idle for that many seconds).

        Stopping: the movers end (a move in progress runs to its end), the last final status events
        are delivered, and only then the consumer loop stops, so that it commits their records."""
        loop_stop = threading.Event()
        failed: list[BaseException] = []

        def consume() -> None:
            try:
                self.loop.run(loop_stop)
            except BaseException as exc:  # re-raised by run(); without a consumer the worker stops
                failed.append(exc)
                LOG.exception("the consumer loop failed")
                self.stop_event.set()

        self.ledger.start()  # before the first request: it knows what other workers finished
        if self.outcomes is not None:
            self.outcomes.start()  # before the first move: the SCPs' events of it come after this
        consumer = threading.Thread(target=consume, name="dicom-consumer", daemon=True)
        movers = [threading.Thread(target=self.move_loop, name=f"dicom-mover-{i}", daemon=True)
                  for i in range(max(1, self.pacs_config.max_associations))]
        for t in [consumer, *movers]:
            t.start()
        idle_since: float | None = None
        try:
            while not self.stop_event.wait(0.2):
                if on_tick is not None:
                    on_tick()
                if until_idle is not None:
                    if self.is_idle():
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since >= until_idle:
                            break
                    else:
                        idle_since = None
        finally:
            self.stop_event.set()
            with self._cv:
                self._cv.notify_all()
            for t in movers:
                t.join(timeout=30)
            with self._cv:
                finishers = list(self._finishers)
            for t in finishers:  # their final statuses before the producers' last flush
                t.join(timeout=self.opts.settle_s + 30)
            if self.expect_producer is not None:
                self.expect_producer.flush(30)  # the last tombstones (``withdraw`` does not wait)
            self.producer.flush(30)  # final status events still in flight: their callbacks make tickets done
            loop_stop.set()
            consumer.join(timeout=30)
            self.producer.flush(30)
            self.projects.stop()
            self.ledger.stop()
            if self.outcomes is not None:
                self.outcomes.stop()
            if TIMING:
                LOG.warning("worker phases (wall ms per call): %s", PHASES.report())
        if failed:
            raise failed[0]


STEWARD_ROLES = ("steward", "admin")  # admin holds every role (streams.auth.Principal.has)


def requester_refusal(project: Project | None, rec: dict[str, Any]) -> str | None:
    """Why the request's requester may not send studies to ``project`` as registered now (None: may).

    Only a steward may send studies to an identified project. The request says its requester's roles
    (``requester_roles``: the web app's from the session, a standing cohort's from its subscriber, the
    CLI's from its token's user); a request for an identified project that does not, whatever its
    ``source``, is refused (fail closed: an older request, or one written to the topic by hand, may be
    anyone's; the project may have become identified after it was made). The roles are as trustworthy as
    the Kafka account that wrote the request, and are those held when it was made: the worker has no token
    store to ask (it may run on another host), so a role taken away later does not reach a queued request;
    a steward cancels it (docs/access.md, "A role taken away")."""
    if project is None or not project.identified:
        return None
    roles = rec.get("requester_roles")
    who, pid = rec.get("requester"), project.project_id
    if roles is None:
        what = "standing cohort's request" if str(rec.get("source") or "") == "watch" else "request"
        return (f"project {pid!r} receives identified images and this {what} does not say its requester's "
                f"roles (requester {who!r}): only a steward may send studies to it (a steward asks again, "
                "with a steward's token, or subscribes the watch again)")
    if any(r in STEWARD_ROLES for r in roles):
        return None
    return (f"project {pid!r} receives identified images: only a steward may send studies to it "
            f"(requester {who!r}, roles {', '.join(sorted(roles)) or 'none'})")


def _is_done(got: tuple[str, str] | None) -> bool:
    return got is not None and (got[0] == "stored" or (got[0] == "quarantined" and bool(got[1])))
