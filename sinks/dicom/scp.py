"""The research store: a pynetdicom storage SCP writing ``project/study/series/instance.dcm``.

- Accepts associations only from the configured calling AEs (others are rejected at A-ASSOCIATE).
- Looks up the project of each instance's study (``sinks.dicom.expect``: registered by the worker before
  its C-MOVE, with the project's store options; ``ExpectedStudies`` from Kafka, or the files of
  ``Registry`` when worker and SCP share the store) or the default project (manual ``movescu``); the project
  must be registered (``sinks.dicom.projects``), else 0x0124 not authorised.
- Checks every UID that becomes part of a path against the DICOM UID grammar (PS3.5 9.1) and the project
  id against its grammar (``sinks.dicom.paths``), and writes under the store root only.
- De-identifies (PS3.15 Annex E with the project's options, ``sinks.dicom.deid``) unless the project is
  registered as identified (with an IRB reference) both in the request's registration and in the
  SCP's own view of the projects topic; an instance that cannot be made safe goes to the quarantine
  (``sinks.dicom.quarantine``) with its reason instead of the project tree. Every option likewise:
  the stricter of the request's registration and the project's current registration (``stricter``),
  so a project tightened while its studies arrive applies from the next instance on.
- Modes: a de-identified project's files 0640 and directories 0750 (the store's group reads them), an
  identified project's 0600 and 0700 (the SCP's user only), never other users'.
- **Answers C-STORE success only once the instance's final bytes (de-identified when its project is)
  are durable**, in one of two ways:

  - journaled (the usual case, ``sinks.dicom.journal``): on the association's thread the series
    directory is made, then the bytes, their path under the root and the manifest entry go into the
    process's write-ahead journal (one ``pwritev`` and an ``fdatasync``, or waiting for a running
    ``fdatasync`` of another association that covers the record; 0.2-2 ms here, instead of 3-5 ms and
    more for an fsync'd new file); the response follows. Then the file is written (temporary file,
    renamed over ``<sop>.dcm``: overwrite by SOPInstanceUID; not read back, the journal's CRC-checked copy
    is the durable one), and only after the rename ``stored`` is recorded in
    the manifest and the events produced: on the association's thread right after the response for the
    direct receive loop (``after_response``: while the PACS prepares its next instance), by the
    process's writer thread for instances received through pynetdicom. A failed write is retried from
    the journal's copy; when it cannot be done, the instance is recorded ``failed`` (the worker's
    reconciliation moves it again). The journal passes a record at its next checkpoint (``syncfs``) only
    once its file is written or recorded failed; at start, records after the checkpoint are written
    again and recorded ``stored`` (a crash between the response and the rename).
  - fsync'd (``research.journal_mb = 0``, an instance too large for the journal, the quarantine, a
    steward's release): the file is written, verified and fsync'd, renamed, and the directory fsync'd
    on the association's thread, then recorded, then answered.

  So success does not mean that the file is already in the project tree; ``stored`` in the manifest
  does (with its bytes durable). ``drain()`` waits until the writer thread has written every
  instance handed to it.
- Records the outcome per original SOP Instance UID in the request's manifest when coordinating through
  files (``stored``, ``quarantined`` + reason, ``failed`` + reason; read by the worker's reconciliation;
  through Kafka the worker reads the events instead) and produces one ``received_instance`` event (values
  as stored, and whether they keep the hospital's UIDs; the request id and study in its headers) and,
  when de-identified, one ``received_original`` event with the originals on the restricted topic;
  quarantine actions go to the restricted quarantine topic. The producer batches the events itself
  (``linger.ms`` = ``research.event_batch_ms``), a study's events on one partition of each topic
  (``_partition``); when an association ends, what it produced is sent at once (``kick``: the worker
  waits for a study's last events).
  The events of stored and quarantined instances are kept until the broker acknowledges them
  (``sinks.dicom.journal.Outbox``; a journaled instance's in its journal record too): produced again
  after a refusal and at the next start; a replayed instance gets its manifest record and its events.
- Statuses: 0x0124 study not registered / project unknown or retired; 0xA700 out of resources (less
  than ``min_free_mb`` free, or the write failed: disk full, read-only, I/O error); 0xC000 cannot
  process (undecodable dataset, missing or invalid UIDs, no de-identification key). A PACS counts all of
  them as failed sub-operations.

Not covered: identifying text burned into the pixels of images whose class, modality and
BurnedInAnnotation do not flag it (no OCR); see docs/retrieval.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import logging
import os
import queue
import select
import shutil
import socket
import struct
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from processors.ingest.pseudonym import UID_IN_TEXT
from sinks.dicom.config import ResearchConfig
from sinks.dicom.deid import Deidentifier, DeidOptions, encode_file, fast, parse_safe_list, read_file, text
from sinks.dicom.expect import REQUEST_HEADER, STUDY_HEADER, Expectation, Expectations, Registry
from sinks.dicom.header import Header, read_header
from sinks.dicom.journal import Event, Journal, Outbox, Record, make_dirs
from sinks.dicom.net import NODELAY_HANDLERS, make_ae
from sinks.dicom.paths import UnsafeName, check_uid, fsync_dir, inside, is_project_id, is_uid
from sinks.dicom.projects import Project, Projects, StaticProjects, StoreOptions
from sinks.dicom.quarantine import SR_PREFIX, Entry, Quarantine, reason_for, reason_of
from sinks.dicom.wire import compat
from sinks.dicom.wire import scp as wire_scp
from streams import serde
from streams.config import IngestConfig, TopicsConfig
from streams.producer import Deliveries, DeliveryError

LOG = logging.getLogger(__name__)

STATUS_NOT_AUTHORIZED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
PROJECT_WAIT_S = 2.0  # how long an unknown project may take to show up in the SCP's view of the topic
MATERIALISE_TRIES = 3  # writes of a journaled instance's file before it is recorded failed
WRITER_QUEUE = 256  # journaled instances waiting for their file; a full queue holds the next response back
# ``kick``: librdkafka sends lingering batches at once only while a flush runs, and its broker thread
# must get to run meanwhile (1 ms was not enough on the loaded test host); a flush returns as soon as
# everything is delivered, so these bound how long the other associations' events skip their linger
KICK_S = 0.01
DRAIN_S = 30.0  # how long ``drain`` (and so ``stop``) waits for the broker to acknowledge the events
KICK_TRIES = 3
PARTITIONS_WAIT_S = 2.0  # longest wait for a topic's partition count (once per topic and process)
PARTITIONS_RETRY_S = 60.0  # after a failed look-up, events are partitioned by key this long
# the store's files and directories: a de-identified project's are the owner's and the store's group's
# (a site gives its research readers that group), never other users of the host; an identified
# project's (the hospital's images as received) are the owner's only (``_make_parent``, ``_write_verified``,
# and the journal's replay: ``_replay_modes``)
STORE_FILE_MODE = 0o640
STORE_DIR_MODE = 0o750
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


@dataclass
class ScpConfig:
    ae_title: str
    port: int
    host: str
    store_dir: Path
    allowed_calling_aes: tuple[str, ...]
    quarantine_dir: Path | None = None  # None: <store_dir>.quarantine (beside the store, outside the tree)
    default_project: str = ""
    min_free_mb: int = 100
    deid_key: bytes = b""
    site: str = "default"  # of the patient pseudonyms (the same as the warehouse's)
    fast_path: bool = True
    listen_fd: int | None = None  # a listening socket shared with sibling SCP processes (research.processes)
    journal_mb: int = 64  # the write-ahead journal per SCP process (sinks.dicom.journal); 0: fsync every file

    @classmethod
    def of(cls, r: ResearchConfig, ingest: IngestConfig) -> ScpConfig:
        """The SCP's options from its section; the de-identification key (and the site of the patient
        pseudonyms) from the ingest section, read from ``pseudonym_key_file`` when not given inline."""
        key = ingest.pseudonym_key.encode()
        if not key and ingest.pseudonym_key_file:
            key = Path(ingest.pseudonym_key_file).read_bytes().strip()
        return cls(
            ae_title=r.ae_title, port=r.port, host=r.host, store_dir=Path(r.store_dir),
            allowed_calling_aes=tuple(r.allowed_calling_aes),
            quarantine_dir=Path(r.quarantine_dir) if r.quarantine_dir else None,
            default_project=r.default_project, min_free_mb=r.min_free_mb, deid_key=key, site=ingest.site,
            fast_path=r.fast_path, journal_mb=r.journal_mb,
        )

    @property
    def quarantine_root(self) -> Path:
        return self.quarantine_dir or self.store_dir.with_name(self.store_dir.name + ".quarantine")


BUSY_ACCEPT_WAIT = 0.05  # longest a process that is receiving already leaves a new association to others


class SharedListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor on a listening socket shared by ``research.processes`` SCP processes.

    Every process polls the same socket and the first ``accept`` wins, so a PACS's parallel moves are
    spread by who is free: a process that already serves an association watches the pending connection for
    up to ``BUSY_ACCEPT_WAIT`` and leaves it to an idle sibling, which takes it first (the kernel's
    ``SO_REUSEPORT`` hashing put both associations in one process about half the time; a fixed 3 ms wait
    lost the race to a sibling not scheduled in time on a loaded host). When every process is busy, the
    association is accepted after that wait.
    """

    listen_fd = -1  # set on the class made per store, before the server is built

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self.socket = socket.socket(fileno=os.dup(self.listen_fd))
        self.socket.setblocking(False)  # a sibling may have taken the connection: accept() must not wait
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        pass  # the parent listens

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        if self.ae.active_associations and self.socket is not None:
            deadline = time.monotonic() + BUSY_ACCEPT_WAIT
            while time.monotonic() < deadline:
                pending, _, _ = select.select([self.socket], [], [], 0.001)
                if not pending:
                    break  # a sibling took it
        # BlockingIOError (an OSError) when a sibling was quicker: socketserver then simply goes on
        conn, addr = super().get_request()
        conn.setblocking(True)
        return conn, addr


@dataclass
class Stats:
    received: int = 0
    written: int = 0
    quarantined: int = 0
    refused: int = 0
    write_errors: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def add_written(self, size: int) -> None:
        with self.lock:
            self.written += 1
            self.bytes += size


@dataclass(frozen=True)
class Policy:
    """How the instances of one study are stored: its registration and its project's options."""

    expectation: Expectation
    options: StoreOptions


class Refused(Exception):
    """An instance answered with a failure status (``status``) and recorded ``failed`` with the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ReleaseError(RuntimeError):
    pass


@dataclass(frozen=True)
class _Pending:
    """A journaled instance, answered already, whose file the writer thread writes."""

    rec: Record
    parent: str
    target: str
    sop: str  # as stored (the file name)
    data: bytes
    finish: Callable[[bool], None]  # after the rename: stats, manifest ``stored``, events (True: synced)
    study_original: str  # the manifest's: original UIDs, request id
    request_id: str
    sop_original: str
    private: bool  # an identified project's: owner-only modes


@dataclass
class _Instance:
    policy: Policy
    meta: bytes  # encoded File Meta Information (preamble and DICM prefix included)
    raw: bytes
    header: Header
    sop_class: str  # of the C-STORE request
    calling_ae: str
    called_ae: str
    transfer_syntax: str = ""  # of the received data set ("": take the pydicom path)


@dataclass(frozen=True)
class _Spec:
    """An event before it is encoded."""

    topic: str
    contract: str
    key: str
    record: dict[str, Any]
    headers: list[tuple[str, str | bytes | None]] | None = None
    study: str = ""  # its partition's (``_partition``)


class ResearchStore:
    """Storage SCP. ``start()`` returns once listening; ``stop()`` stops and flushes the events.

    ``projects``: the registered projects (``ProjectRegistry`` replaying the projects topic; tests pass
    ``StaticProjects``); none given: every project is unknown and refused. ``topics``: where the events
    go (needed with a ``producer``)."""

    def __init__(self, cfg: ScpConfig, producer: Any = None, topics: TopicsConfig | None = None,
                 projects: Projects | None = None, expected: Expectations | None = None) -> None:
        self.cfg = cfg
        self.producer = producer
        self.topics = topics or TopicsConfig()
        self.projects: Projects = projects if projects is not None else StaticProjects()
        self.stats = Stats()
        self.registry = Registry(cfg.store_dir)
        # where the studies' projects come from and outcomes go: the Kafka topic (``ExpectedStudies``,
        # nothing shared with the worker) or, given none, the files of ``registry``
        self.expected: Expectations = expected if expected is not None else self.registry
        self.quarantine = Quarantine(cfg.quarantine_root)
        self.deid = Deidentifier(cfg.deid_key, cfg.site) if cfg.deid_key else None
        self._server: Any = None
        # study -> (its registrations' stamp, its project id, that project's registration, the policy)
        self._cache: dict[str, tuple[object, str, Project | None, Policy | Refused]] = {}
        self._free_checked = (0.0, True)
        # (directory, owner-only) made and fsync'd already (once per series, not per image)
        self._dirs: set[tuple[str, bool]] = set()
        self._made: set[tuple[str, bool]] = set()  # made (the journal's path: not fsync'd)
        self._root = os.path.realpath(cfg.store_dir)
        self.journal: Journal | None = None  # opened by start(); without it every file is fsync'd
        self._writer: queue.Queue[_Pending | None] | None = None  # journaled instances whose file is due
        self._writer_thread: threading.Thread | None = None
        self._tls = threading.local()  # the direct loop's instances to hand to the writer after the response
        self._partitions: dict[str, tuple[int, float]] = {}  # topic -> (partitions, when asked)
        self._kick = threading.Event()
        self._kick_stop = False
        self._kicker_thread: threading.Thread | None = None
        self._events = Deliveries(producer)  # what the broker confirmed of our events (``flush``)
        # the events of stored and quarantined instances until the broker acknowledges them (opened by
        # start(); a store that is not started, e.g. a steward's release, waits for its events instead)
        self.outbox: Outbox | None = None

    # -- which project, which options ------------------------------------------------------------
    def _project(self, project_id: str, wait: bool) -> Project | Refused:
        project = self.projects.get(project_id, PROJECT_WAIT_S if wait else 0.0) if is_project_id(
            project_id) else None
        if project is None:
            return Refused(STATUS_NOT_AUTHORIZED, f"project {project_id!r} is not registered")
        if not project.active:
            return Refused(STATUS_NOT_AUTHORIZED, f"project {project_id!r} is retired")
        return project

    def _resolve(self, exp: Expectation | None, study_uid: str) -> Policy | Refused:
        if exp is None:
            if not self.cfg.default_project:
                return Refused(STATUS_NOT_AUTHORIZED, f"study {study_uid} is not registered for any project")
            project = self._project(self.cfg.default_project, wait=False)
            if isinstance(project, Refused):
                return Refused(project.status, f"default project: {project}")
            exp = Expectation(study_uid, project.project_id, "", self.cfg.ae_title, time.time())
            return Policy(exp, project.store_options)
        project = self._project(exp.project_id, wait=True)
        if isinstance(project, Refused):
            return project
        if exp.options is None:
            return Policy(exp, project.store_options)
        asked = StoreOptions.from_dict(exp.options)
        if asked.identified and not project.identified:
            # the registration asks for identified images, the projects topic does not say so: de-identify
            LOG.warning("project %s is not registered as identified here; de-identifying", exp.project_id)
        # the options copied at request time, tightened by the registration as it is now: a steward who
        # turns an option off stops it for the studies already under way too (never loosened: a
        # re-registration with looser options applies to the next requests)
        return Policy(exp, stricter(asked, project.store_options))

    def _registration(self, project_id: str) -> Project | None:
        """The project's registration as the projects view holds it now: ``peek``, which never waits, as
        ``get`` would (up to the view's load timeout, 15 s, per call) while the projects topic cannot be
        read; per instance that would hold every C-STORE of a broker outage that long."""
        return self.projects.peek(project_id) if project_id and is_project_id(project_id) else None

    def _policy(self, study_uid: str) -> Policy | Refused:
        """The policy of a study; re-read only when its registrations changed (a stat, or a dict lookup)
        or its project's registration did (retired, re-registered with other options: a new ``Project``
        object, compared by identity on every instance). A study not known yet is looked up (waiting a
        moment, from Kafka) once, not per instance."""
        stamp = self.expected.stamp(study_uid)
        hit = self._cache.get(study_uid)
        if hit is not None and hit[0] == stamp and (not hit[1] or self._registration(hit[1]) is hit[2]):
            return hit[3]
        exp = self.expected.lookup(study_uid) if stamp is not None or self.expected.waits else None
        if exp is not None and stamp is None:
            stamp = self.expected.stamp(study_uid)
        project_id = exp.project_id if exp is not None else self.cfg.default_project
        # read before the policy is decided: a change in between (or the view's first read, which
        # _resolve may wait for) makes the next instance decide again
        registration = self._registration(project_id)
        policy = self._resolve(exp, study_uid)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[study_uid] = (stamp, project_id, registration, policy)
        return policy

    def _enough_space(self) -> bool:
        now = time.monotonic()
        if now - self._free_checked[0] > 1.0:
            self.cfg.store_dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.cfg.store_dir).free
            self._free_checked = (now, free >= self.cfg.min_free_mb * 1024 * 1024)
        return self._free_checked[1]

    # -- association thread --------------------------------------------------------------------
    def handle_store(self, event: evt.Event) -> int:
        """pynetdicom's ``EVT_C_STORE`` path (deflated transfer syntax; whatever the fast path hands back)."""
        req: Any = event.request
        ts = event.context.transfer_syntax
        deflated = event.dataset if ts == DeflatedExplicitVRLittleEndian else None
        return self.store(req.DataSet.getvalue(), str(ts), str(req.AffectedSOPClassUID),
                          str(req.AffectedSOPInstanceUID), event.assoc, deflated,
                          event.file_meta if deflated is not None else None)

    def store(self, raw: bytes, ts: str, sop_class: str, sop_instance: str, assoc: Any,
              deflated: Dataset | None = None, deflated_meta: FileMetaDataset | None = None) -> int:
        """Check, file and describe one received instance; the C-STORE response status (0 only once
        the instance is durably stored, in the project tree or in the quarantine)."""
        self.stats.add("received")
        t0 = time.perf_counter_ns() if wire_scp.TIMING else 0
        try:
            hdr = header_of(raw, _syntax(ts)) if deflated is None else _header_from(deflated)
        except Exception as exc:  # undecodable dataset
            LOG.warning("refusing undecodable dataset (%s)", type(exc).__name__)
            self.stats.add("refused")
            return STATUS_CANNOT_UNDERSTAND
        if not (hdr.study and hdr.series and hdr.sop_instance) or hdr.sop_instance != sop_instance:
            self.stats.add("refused")
            return STATUS_CANNOT_UNDERSTAND
        if wire_scp.TIMING:
            wire_scp.PHASES.add("store.header", t0)
        if not is_uid(hdr.study):  # it names the registration and the manifest: nothing to record in
            LOG.warning("refusing an instance with an invalid Study Instance UID (%d characters)",
                        len(hdr.study))
            self.stats.add("refused")
            return STATUS_CANNOT_UNDERSTAND
        policy = self._policy(hdr.study)
        if isinstance(policy, Refused):
            # the refusal names the study when no project expects it: not in the log
            LOG.warning("refusing an instance from %s: %s", assoc.requestor.ae_title,
                        log_safe(str(policy).replace(hdr.study, "its study")))
            self.stats.add("refused")
            return policy.status
        exp = policy.expectation
        try:
            if not (is_uid(hdr.series) and is_uid(hdr.sop_instance)):
                raise Refused(STATUS_CANNOT_UNDERSTAND, "invalid Series or SOP Instance UID (PS3.5 9.1)")
            if not self._enough_space():
                raise Refused(STATUS_OUT_OF_RESOURCES, f"less than {self.cfg.min_free_mb} MB free")
            if deflated_meta is not None:
                meta = _file_bytes(deflated_meta, b"")
            else:
                meta = file_meta_bytes(sop_class, sop_instance, ts, assoc.requestor.ae_title)
            self._file(_Instance(policy, meta, raw, hdr, sop_class, assoc.requestor.ae_title,
                                 assoc.acceptor.ae_title, ts if deflated is None else ""))
            return 0x0000
        except Refused as exc:
            status, why = exc.status, str(exc)
            logged = why  # a fixed text
            self.stats.add("refused")
        except OSError as exc:  # disk full, read-only, I/O error: the PACS may retry later
            status, why = STATUS_OUT_OF_RESOURCES, f"{type(exc).__name__}: {exc}"
            logged = f"{type(exc).__name__} ({exc.strerror})"  # not the path: it holds the study's UIDs
            self.stats.add("write_errors")
        except Exception as exc:
            # the class and frames, not the message: it may carry the instance's original UIDs
            LOG.error("could not store an instance of request %s: %s\n%s", exp.request_id, type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            status, why = STATUS_CANNOT_UNDERSTAND, f"{type(exc).__name__}: {exc}"
            logged = type(exc).__name__
            self.stats.add("write_errors")
        # the request id, not the PACS's SOP Instance UID: logs are neither access-checked nor audited
        LOG.warning("an instance of request %s failed (0x%04X): %s", exp.request_id, status, log_safe(logged))
        with contextlib.suppress(OSError):  # the disk that failed the write may fail this too
            self.expected.record(hdr.study, exp.request_id, hdr.sop_instance, "failed", why)
        return status

    def _file(self, job: _Instance) -> None:
        """Store one instance (de-identified unless its project is identified) or quarantine it."""
        hdr, opts, exp = job.header, job.policy.options, job.policy.expectation
        if opts.identified:
            self._keep(job, hdr, None, job.meta + job.raw)
            return
        if self.deid is None:
            raise Refused(STATUS_CANNOT_UNDERSTAND, "no de-identification key configured "
                                                    "(ingest.pseudonym_key or pseudonym_key_file)")
        if self._file_fast(job):
            return
        ds = read_file(job.meta + job.raw)  # undecoded values stay bytes; encode_file copies them as read
        reason = reason_for(ds, opts.allow_burned_in_risk, job.sop_class)
        if reason is None:
            try:
                self.deid.apply(ds, exp.project_id, opts.deid)
            except Exception as exc:  # DeidError, or the profile failed otherwise: never stored as clean
                reason = f"de-identification failed: {type(exc).__name__}: {exc}"
        if reason is not None:
            self._quarantine(job, reason)
            return
        self._keep(job, _stored_header(ds), hdr, encode_file(ds))

    def _file_fast(self, job: _Instance) -> bool:
        """``_file``'s de-identified branch straight from the received bytes (``sinks.dicom.deid.fast``:
        one parse, no ``Dataset``; the same stored bytes as the pydicom path). False, having done
        nothing, for an instance that path does not handle: ``_file`` then takes the pydicom path."""
        assert self.deid is not None
        opts, exp = job.policy.options, job.policy.expectation
        parsed = fast.parse(job.meta, job.raw, job.transfer_syntax)
        if parsed is None:
            return False
        try:
            sop_class = parsed.values(0x00080016) or job.sop_class
            if sop_class.startswith(SR_PREFIX):
                return False  # its content tree is read by pydicom
            # every value of each, as the pydicom path's reason_for reads them (deid.text)
            reason = reason_of(sop_class, parsed.values(0x00080060), parsed.values(0x00280301),
                               0x00420011 in parsed.top, lambda: False, opts.allow_burned_in_risk,
                               parsed.values(0x00080008))
        except fast.NotHandled:
            return False
        if reason is not None:
            self._quarantine(job, reason)
            return True
        done = fast.deidentify(self.deid, parsed, exp.project_id, opts.deid)
        if done is None:
            return False
        data, v = done
        stored = Header(study=v[0x0020000D], series=v[0x0020000E], sop_instance=v[0x00080018],
                        sop_class=v[0x00080016], accession=v[0x00080050], patient_id=v[0x00100020],
                        modality=v[0x00080060])
        self._keep(job, stored, job.header, data)
        return True

    def _keep(self, job: _Instance, stored: Header, original: Header | None, data: bytes) -> None:
        """Make ``data`` (the instance as stored) durable; its file, manifest record and event follow.

        With the journal: the parent directory is made (a failure is still the C-STORE's), the bytes go
        into the journal (durable when this returns: the response may say success) and the writer
        thread writes the file, then records ``stored`` and emits the event (``_materialise``).
        Without it (or too large for it): the file is written and fsync'd here, then the rest."""
        exp = job.policy.expectation
        parent, target, rel = self._place(exp.project_id, stored.study, stored.series, stored.sop_instance)
        orig = job.header
        private = job.policy.options.identified
        specs = self._stored_events(
            exp.project_id, job.calling_ae, job.called_ae, stored, original, target, len(data),
            exp.request_id, retain_uids=job.policy.options.deid.retain_uids,
            uids_in_file=original is not None and _holds_uids(data, original)) if self.producer else []
        # encoded now: the journal record keeps them (produced again by a replay after a crash)
        events = [self._encode(e) for e in specs] if self.outbox is not None else []

        def finish(sync: bool) -> None:
            self.stats.add_written(len(data))
            self.expected.record(orig.study, exp.request_id, orig.sop_instance, "stored")
            self._emit(specs, events, sync)

        journal, writer = self.journal, self._writer
        # the modes ride along: a replay writes the file again before anything else knows its project;
        # and the events, so that a replay produces them again
        note = json.dumps([orig.study, exp.request_id, orig.sop_instance, private,
                           [e.to_json() for e in events]]).encode()
        if journal is None or writer is None or not journal.fits(rel, data, note):
            self._write_verified(parent, target, stored.sop_instance, data, private=private)
            finish(True)  # the events durable before the response too
            return
        if (parent, private) not in self._made:  # not fsync'd: a replay makes it again, a checkpoint's syncfs
            self._make_parent(parent, durable=False, private=private)
        t0 = time.perf_counter_ns() if wire_scp.TIMING else 0
        rec = journal.append(rel, data, note)
        if wire_scp.TIMING:
            wire_scp.PHASES.add("store.journal", t0)
        item = _Pending(rec, parent, target, stored.sop_instance, data, finish, orig.study, exp.request_id,
                        orig.sop_instance, private)
        deferred: list[_Pending] | None = getattr(self._tls, "deferred", None)
        if deferred is not None:
            deferred.append(item)  # handed to the writer after the response (``after_response``)
        else:
            writer.put(item)

    def store_answer_first(self, raw: bytes, ts: str, sop_class: str, sop_instance: str, assoc: Any) -> int:
        """``store`` for the direct receive loop, which calls ``after_response`` once it has answered."""
        self._tls.deferred = []
        return self.store(raw, ts, sop_class, sop_instance, assoc)

    def after_response(self) -> None:
        """The files of the instances just answered, written on the association's thread: while the
        PACS prepares its next instance, which waits for our response anyway. (Handed to the writer
        thread instead, the two threads took turns at the GIL on the critical path: measured 2 ms per
        instance in ``store`` instead of 0.6.)"""
        items: list[_Pending] | None = getattr(self._tls, "deferred", None)
        self._tls.deferred = None
        for item in items or ():
            t0 = time.perf_counter_ns() if wire_scp.TIMING else 0
            self._materialise(item)
            if wire_scp.TIMING:
                wire_scp.PHASES.add("after.file", t0)

    def _quarantine(self, job: _Instance, reason: str) -> None:
        hdr, exp = job.header, job.policy.expectation
        data = job.meta + job.raw
        entry = Entry(exp.project_id, exp.request_id, hdr.study, hdr.series, hdr.sop_instance,
                      hdr.sop_class or job.sop_class, hdr.modality, reason, job.calling_ae, time.time(),
                      len(data))
        path = self.quarantine.put(entry, data)
        self.stats.add("quarantined")
        self.expected.record(hdr.study, exp.request_id, hdr.sop_instance, "quarantined", reason)
        LOG.info("quarantined an instance of request %s (project %s): %s", exp.request_id, exp.project_id,
                 log_safe(reason))
        spec = self._quarantine_event(entry, "quarantined", path, job.calling_ae, None)
        self._emit([spec], [self._encode(spec)] if self.outbox is not None else [], sync=True)

    # -- events --------------------------------------------------------------------------------------
    def _partition(self, topic: str, study: str) -> int:
        """The partition of a study's events on ``topic`` (-1: the producer's own choice, by key).

        Every event of one study goes to one partition (chosen by the study UID as stored, so an
        instance's events land in one place however often it is stored): the producer's batch of a
        study then is one record batch in one request, not one per partition its SOP UIDs hash to.
        Measured with the broker of the bench (400 events/s, linger 20 ms, 2 partitions): broker CPU per
        event 0.30-0.44 ms before, 0.23-0.27 after, and 40 % fewer produce requests."""
        n, since = self._partitions.get(topic, (-1, 0.0))
        if n < 0 or (n == 0 and time.monotonic() - since > PARTITIONS_RETRY_S):
            try:
                meta = self.producer.list_topics(topic, timeout=PARTITIONS_WAIT_S).topics[topic]
                n = len(meta.partitions) if meta.error is None else 0
            except Exception as exc:  # KafkaException: the broker is away; the producer queues meanwhile
                LOG.warning("partitions of %s unknown (%s): events partitioned by key for now", topic, exc)
                n = 0
            # 0 (unknown) is asked again only after a while: the association's thread must not wait
            # for a broker that is away at every event
            self._partitions[topic] = (n, time.monotonic())
        return zlib.crc32(study.encode()) % n if n > 0 else -1

    def _send(self, spec: _Spec) -> None:
        """Produce an event, waited for by ``flush`` (a steward's release and purge; a store not
        started): a refusal is the caller's failure, not produced again."""
        if self.producer is None:
            return
        partition = self._partition(spec.topic, spec.study) if spec.study else -1
        self._events.produce(spec.topic, spec.contract, spec.key, spec.record, headers=spec.headers,
                             partition=partition, on_delivery=_log_refused)
        self.producer.poll(0)

    @staticmethod
    def _encode(spec: _Spec) -> Event:
        headers = tuple((k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in spec.headers or ())
        return Event(spec.topic, spec.key.encode(), serde.encode(spec.contract, spec.record), headers,
                     spec.study)

    def _emit(self, specs: Sequence[_Spec], events: Sequence[Event], sync: bool = False) -> None:
        """The events of a stored or quarantined instance: kept in the outbox until the broker
        acknowledges them (``sync``: durable before this returns: an instance answered without the
        journal); without an outbox (not started) as ``_send``."""
        outbox = self.outbox
        if self.producer is None:
            return
        if outbox is None or not events:
            for spec in specs:
                self._send(spec)
            return
        for i, ev in enumerate(events):
            self._produce(ev, outbox.add(ev, sync=sync and i == len(events) - 1))
        self.producer.poll(0)

    def _produce(self, ev: Event, n: int) -> None:
        """Hand outbox event ``n`` to the producer; its delivery report acknowledges or reschedules it."""
        partition = self._partition(ev.topic, ev.study) if ev.study else -1
        kw: dict[str, Any] = {"partition": partition} if partition >= 0 else {}
        while True:
            try:
                self.producer.produce(ev.topic, value=ev.value, key=ev.key, headers=list(ev.headers),
                                      on_delivery=self._delivered(n), **kw)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _delivered(self, n: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, msg: Message) -> None:
            outbox = self.outbox
            if outbox is None:
                return  # stopped: the outbox's file keeps it for the next start
            if err is None:
                outbox.ack(n)
                return
            wait, tries = outbox.refused(n)
            # not the key: a quarantine event's is the original SOP Instance UID
            if tries == 1:
                LOG.error("an event not delivered to %s: %s; produced again in %.0f s (and until the "
                          "broker takes it)", msg.topic(), err, wait)
            else:
                LOG.debug("an event not delivered to %s again (%d): %s", msg.topic(), tries, err)
            self._kick.set()  # the events thread schedules the retry
        return report

    def kick(self) -> None:
        """Send the events produced so far now instead of after the rest of their linger (in a thread:
        librdkafka sends a lingering batch only while a ``flush`` is running; ``KICK_S``).

        Called when an association ends: its study is complete on our side and the worker waits for
        its last events before it reconciles, so the linger (``research.event_batch_ms``) was paid
        once per study on the critical path."""
        if self.producer is not None:
            self._kick.set()

    def _kicker(self) -> None:
        """The events thread: kicks (``kick``), and produces refused events again once their backoff
        has passed (``Outbox.due``)."""
        while True:
            outbox = self.outbox
            self._kick.wait(outbox.next_due() if outbox is not None else None)
            self._kick.clear()
            if self._kick_stop:
                return
            if outbox is not None:
                for n, ev in outbox.due():
                    self._produce(ev, n)
            with contextlib.suppress(Exception):
                for _ in range(KICK_TRIES):
                    if self.producer.flush(KICK_S) == 0:
                        break

    def _stored_events(self, project_id: str, calling_ae: str, called_ae: str, stored: Header,
                       original: Header | None, path: str, size: int, request_id: str = "", *,
                       retain_uids: bool = False, uids_in_file: bool = False) -> list[_Spec]:
        """``request_id`` and the study (the worker's reconciliation reads them without decoding the
        record) ride in headers: the contract and the warehouse stay as they are. ``original``: the
        received header of a de-identified instance (None: stored as received); ``retain_uids``: the
        de-identification applied the Retain UIDs option; ``uids_in_file``: the stored bytes hold one of
        the received Study, Series or SOP Instance UIDs anywhere (a safe-listed private attribute, a
        reference the profile kept)."""
        now = datetime.now(UTC)
        # what was applied, and what the stored UIDs and bytes show (a second net under the profile):
        # the warehouse keeps an instance with the hospital's UIDs from analysts by this flag, whatever
        # the project's registrations say
        uids_retained = (original is None or retain_uids or uids_in_file or stored.study == original.study
                         or stored.series == original.series or stored.sop_instance == original.sop_instance)
        out = [_Spec(self.topics.received_instances, "received_instance", stored.sop_instance, {
            "project_id": project_id, "calling_ae": calling_ae, "called_ae": called_ae,
            "study_instance_uid": stored.study, "series_instance_uid": stored.series,
            "sop_instance_uid": stored.sop_instance, "sop_class_uid": stored.sop_class,
            "accession": stored.accession or None, "patient_id": stored.patient_id or None,
            "modality": stored.modality or None, "path": path, "size_bytes": size,
            "deidentified": original is not None, "uids_retained": uids_retained, "time": now},
            [(REQUEST_HEADER, request_id.encode()), (STUDY_HEADER, stored.study.encode())] if request_id
            else None, study=stored.study)]
        if original is not None:  # the originals: only on the restricted topic
            out.append(_Spec(self.topics.received_restricted, "received_original", stored.sop_instance, {
                "project_id": project_id, "study_instance_uid": stored.study,
                "series_instance_uid": stored.series, "sop_instance_uid": stored.sop_instance,
                "accession": stored.accession or None, "patient_id": stored.patient_id or None,
                "original_study_instance_uid": original.study,
                "original_series_instance_uid": original.series,
                "original_sop_instance_uid": original.sop_instance,
                "original_accession": original.accession or None,
                "original_patient_id": original.patient_id or None, "time": now}, study=stored.study))
        return out

    def _quarantine_event(self, entry: Entry, action: str, path: str, actor: str, note: str | None) -> _Spec:
        return _Spec(self.topics.quarantine, "quarantine_event", entry.sop_instance_uid, {
            "action": action, "project_id": entry.project_id, "request_id": entry.request_id or None,
            "study_instance_uid": entry.study_instance_uid, "series_instance_uid": entry.series_instance_uid,
            "sop_instance_uid": entry.sop_instance_uid, "sop_class_uid": entry.sop_class_uid,
            "modality": entry.modality or None, "reason": entry.reason, "path": path,
            "size_bytes": entry.size_bytes, "actor": actor, "note": note, "time": datetime.now(UTC)})

    def _emit_quarantine(self, entry: Entry, action: str, path: str, actor: str, note: str | None) -> None:
        """A steward's action: waited for (``flush``) before anything is removed, never produced later."""
        self._send(self._quarantine_event(entry, action, path, actor, note))

    # -- writing ---------------------------------------------------------------------------------
    def _place(self, project_id: str, study: str, series: str, sop: str) -> tuple[str, str, str]:
        """(directory, file, path under the root) of an instance: ``<project>/<study>/<series>/<sop>.dcm``,
        every part checked against its grammar first."""
        if not is_project_id(project_id):
            raise UnsafeName(f"project id {project_id[:80]!r} is not valid")
        check_uid(study, "Study Instance UID")
        check_uid(series, "Series Instance UID")
        check_uid(sop, "SOP Instance UID")
        parent = os.path.join(self._root, project_id, study, series)
        rel = os.path.join(project_id, study, series, f"{sop}.dcm")
        return parent, os.path.join(parent, f"{sop}.dcm"), rel

    def _write_instance(self, project_id: str, study: str, series: str, sop: str, data: bytes,
                        private: bool = False) -> str:
        """Durably write one instance (fsync'd; a steward's release); its path. ``private``: an identified
        project's (owner-only modes)."""
        parent, target, _rel = self._place(project_id, study, series, sop)
        self._write_verified(parent, target, sop, data, private=private)
        self.stats.add_written(len(data))
        return target

    def _write_files(self) -> None:
        """The writer thread: the files of journaled instances, in order, until ``None``."""
        assert self._writer is not None
        while True:
            item = self._writer.get()
            try:
                if item is None:
                    return
                t0 = time.perf_counter_ns() if wire_scp.TIMING else 0
                self._materialise(item)
                if wire_scp.TIMING:
                    wire_scp.PHASES.add("writer.file", t0)
            finally:
                self._writer.task_done()

    def _materialise(self, item: _Pending) -> None:
        """Write a journaled instance's file (verified, renamed), then record ``stored`` and emit its event.

        A failed write is retried with the bytes read back from the journal (``MATERIALISE_TRIES`` in
        all); when it still fails, the instance is recorded ``failed`` with the reason in the request's
        manifest, so the worker's reconciliation moves it again. Either way the journal may then pass
        the record at its next checkpoint."""
        journal = self.journal
        assert journal is not None
        try:
            error: Exception | None = None
            for attempt in range(MATERIALISE_TRIES):
                try:
                    data = item.data if attempt == 0 else journal.read(item.rec)
                    self._write_verified(item.parent, item.target, item.sop, data, durable=False,
                                         private=item.private)
                    error = None
                    break
                except OSError as exc:
                    error = exc
                    LOG.warning("writing an instance of request %s failed (attempt %d): %s (%s)",
                                item.request_id, attempt + 1, type(exc).__name__, exc.strerror)
                    time.sleep(0.05 * (attempt + 1))
            if error is None:
                item.finish(False)  # the journal record holds the events until the checkpoint
                return
            self.stats.add("write_errors")
            why = f"written after the response, failed: {type(error).__name__}: {error}"
            LOG.error("an instance of request %s, written after the response, failed: %s (%s)",
                      item.request_id, type(error).__name__, getattr(error, "strerror", None))
            self.expected.record(item.study_original, item.request_id, item.sop_original, "failed", why)
        except Exception as exc:  # the manifest or the event failed: logged; the file is what it is
            LOG.error("after writing an instance of request %s: %s\n%s", item.request_id, type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)).rstrip())
        finally:
            journal.done(item.rec.seq)

    def _replayed(self, relpath: str, note: bytes) -> None:
        """A journal record's file was written again at start: record it ``stored`` in its manifest, and
        produce its events again unless the outbox says the broker had them (the note of a record of
        an older version holds none)."""
        try:
            fields = json.loads(note)
            study, request_id, sop = fields[:3]
            self.expected.record(study, request_id, sop, "stored")
        except (ValueError, TypeError, OSError) as exc:
            LOG.warning("replayed an instance; its manifest record failed (%s)", type(exc).__name__)
            return
        outbox = self.outbox
        if outbox is None or len(fields) < 5:
            return
        try:
            events = [Event.from_json(e) for e in fields[4]]
        except (ValueError, TypeError, IndexError) as exc:
            LOG.warning("replayed an instance; its events could not be read (%s)", type(exc).__name__)
            return
        events = [e for e in events if not outbox.seen(e)]
        if events:
            self._emit([], events)

    @staticmethod
    def _replay_modes(relpath: str, note: bytes) -> tuple[int, int]:
        """The modes of a replayed journal record's file: an identified project's (owner only) unless its
        note says de-identified (a note of an older journal says nothing: owner only)."""
        try:
            private = json.loads(note)[3] is not False
        except (ValueError, TypeError, IndexError):
            private = True
        return (PRIVATE_DIR_MODE, PRIVATE_FILE_MODE) if private else (STORE_DIR_MODE, STORE_FILE_MODE)

    def _make_parent(self, parent: str, durable: bool = True, private: bool = False) -> None:
        """Create ``parent`` (under the root only: checked with symbolic links resolved); ``durable``:
        also make its entry and its ancestors' entries up to the root durable (they may have been made
        before without: the journal's path); ``private``: an identified project's (owner only)."""
        rel = os.path.relpath(parent, self._root)
        inside(self._root, rel)
        os.makedirs(self._root, exist_ok=True)
        # each level with the project's mode whatever the umask; an identified project's existing
        # levels lose their group permissions (its tree may have been made while it was de-identified)
        make_dirs(self._root, parent, PRIVATE_DIR_MODE if private else STORE_DIR_MODE)
        if len(self._dirs) > 10000:
            self._dirs.clear()
            self._made.clear()
        if durable:
            d = parent
            while d != self._root and d.startswith(self._root):  # each directory's entry lives in its parent
                fsync_dir(os.path.dirname(d))
                d = os.path.dirname(d)
            self._dirs.add((parent, private))
        self._made.add((parent, private))

    def _write_verified(self, parent: str, target: str, sop: str, data: bytes, durable: bool = True,
                        private: bool = False) -> None:
        """Write to a temporary file, read it back through the same descriptor and compare (it must hold
        exactly the bytes we meant to store), fsync it, rename it over ``target`` (overwrite by
        SOPInstanceUID) and fsync the directory: once this returns, the file survives a crash.

        ``durable=False`` (a journaled instance): no fsyncs and no read-back. The read-back reads the
        page cache the write just filled, so it proves nothing about the disk; what does is the
        journal: its CRC-checked copy is durable before the response, and a record is passed only by a
        checkpoint whose ``syncfs`` succeeded (a writeback error of this file fails it, and the record
        is written again at the next start). A failed or short ``write`` raises here either way.

        ``private``: an identified project's instance (directories 0700, file 0600)."""
        tmp = os.path.join(parent, f".{sop}.dcm.{threading.get_ident()}.tmp")
        if (parent, private) not in (self._dirs if durable else self._made):
            self._make_parent(parent, durable, private)
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
        mode = PRIVATE_FILE_MODE if private else STORE_FILE_MODE
        try:
            fd = os.open(tmp, flags, mode)
        except FileNotFoundError:  # the directory went away since we made it
            self._make_parent(parent, durable, private)
            fd = os.open(tmp, flags, mode)
        try:
            if private:
                os.fchmod(fd, mode)  # a temporary file left by a crash keeps its mode
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            # one byte more than we wrote: a longer file shows as a longer read (bytes compare is a memcmp);
            # a regular file's read returns less than asked only at its end
            want, back = len(data) + 1, b"" if durable else data
            while durable and len(back) < want:
                ask = want - len(back)
                more = os.pread(fd, ask, len(back))
                back += more
                if len(more) < ask:
                    break
            if back == data and durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        if back != data:
            os.unlink(tmp)
            raise OSError(f"verification failed for {target}: content differs")
        os.replace(tmp, target)
        if durable:
            fsync_dir(parent)

    # -- quarantine actions (radstream dicom quarantine release|purge) ---------------------------------
    def release(self, entry: Entry, actor: str, note: str) -> str:
        """Move a quarantined instance into its project tree, de-identified with the project's options
        (as received when the project is identified), recorded as a ``released`` event with who and
        why. The steward's decision overrides the quarantine reason; a de-identification error does not.
        Returns the stored path."""
        project = self._project(entry.project_id, wait=False)
        if isinstance(project, Refused):
            raise ReleaseError(str(project))
        data = self.quarantine.read(entry)
        original = _header_from(dcmread(io.BytesIO(data), stop_before_pixels=True))
        if project.identified:
            target = self._write_instance(project.project_id, original.study, original.series,
                                          original.sop_instance, data, private=True)
            for spec in self._stored_events(project.project_id, entry.calling_ae, self.cfg.ae_title,
                                            original, None, target, len(data)):
                self._send(spec)
        else:
            if self.deid is None:
                raise ReleaseError("no de-identification key configured "
                                   "(ingest.pseudonym_key or pseudonym_key_file)")
            try:
                # the steward's release is the pixel review the profile cannot do
                out, ds = self.deid.apply_file(data, project.project_id, project.deid, pixels_reviewed=True)
            except Exception as exc:
                raise ReleaseError(f"de-identification failed: {type(exc).__name__}: {exc}") from exc
            new = _header_from(ds)
            target = self._write_instance(project.project_id, new.study, new.series, new.sop_instance, out)
            for spec in self._stored_events(project.project_id, entry.calling_ae, self.cfg.ae_title, new,
                                            original, target, len(out), retain_uids=project.deid.retain_uids,
                                            uids_in_file=_holds_uids(out, original)):
                self._send(spec)
        try:
            self._emit_quarantine(entry, "released", target, actor, note)
            self.flush()  # the record first; only then the quarantined copy goes
        except BaseException:
            # not released: the copy written into the project tree goes again, so that "not released"
            # holds for the files too (a later purge removes only the quarantined copy)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            raise
        self.quarantine.remove(entry)
        return target

    def purge(self, entry: Entry, actor: str, note: str) -> None:
        """Delete a quarantined instance, recorded as a ``purged`` event (delivered before the delete)."""
        self._emit_quarantine(entry, "purged", self.quarantine.paths(entry)[0], actor, note)
        self.flush()
        self.quarantine.remove(entry)

    def flush(self, timeout: float = 30.0) -> None:
        """Every event produced so far confirmed by the broker (raises DeliveryError, a RuntimeError,
        when one is still queued after ``timeout`` or was refused since the last flush)."""
        if self.producer is None:
            return
        left = self._events.flush(timeout) + (len(self.outbox.pending) if self.outbox is not None else 0)
        if left:
            why = self._events.last_error
            raise DeliveryError(f"{left} event(s) not delivered to Kafka within {timeout:g} s"
                                + (f" (last refusal: {why})" if why is not None else ""))

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> int:
        """Start listening; returns the bound port."""
        if not self.cfg.allowed_calling_aes:  # pynetdicom would check nothing: every caller let in
            raise ValueError("allowed_calling_aes is empty: it would accept every calling AE")
        if self.producer is not None:
            serde.registry()  # parse the contracts now, not while the first study arrives
        research_safe_pynetdicom()
        self.cfg.store_dir.mkdir(parents=True, exist_ok=True)
        self._root = os.path.realpath(self.cfg.store_dir)
        kept: list[tuple[int, Event]] = []
        if self.producer is not None:
            # before the journal: its replay produces the events of the instances it writes again
            self.outbox = Outbox(self._root)
            kept = self.outbox.open()
        if self.cfg.journal_mb > 0:
            self.journal = Journal(self._root, self.cfg.journal_mb * 1024 * 1024, self._replayed,
                                   self._replay_modes,
                                   self.outbox.compact if self.outbox is not None else None)
            self.journal.open()
            if self.journal.replayed:
                LOG.warning("replayed %d instances from the journal %s", self.journal.replayed,
                            self.journal.path)
            self._writer = queue.Queue(WRITER_QUEUE)
            self._writer_thread = threading.Thread(target=self._write_files, name="research-writer",
                                                   daemon=True)
            self._writer_thread.start()
        if kept:
            LOG.warning("producing %d event(s) again that the broker had not acknowledged before the "
                        "last stop", len(kept))
            for n, ev in kept:
                self._produce(ev, n)
            self.producer.poll(0)
        if self.cfg.default_project and isinstance(self._project(self.cfg.default_project, False), Refused):
            LOG.error("default project %r is not registered: unregistered studies are refused",
                      self.cfg.default_project)
        if self.deid is None:
            LOG.info("no de-identification key: only identified projects can be stored")
        ae = make_ae(self.cfg.ae_title, network_timeout=60.0)
        ae.require_calling_aet = list(self.cfg.allowed_calling_aes)
        ae.require_called_aet = True
        # Accept every storage SOP class without listing ~130 x 20 contexts: pynetdicom deep-copies the
        # supported contexts for every association, which cost more CPU than receiving a small study.
        _config.UNRESTRICTED_STORAGE_SERVICE = True
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self.handle_store), *NODELAY_HANDLERS,
                    (evt.EVT_RELEASED, self._association_ended), (evt.EVT_ABORTED, self._association_ended)]
        if self.producer is not None:
            self._kick_stop = False
            self._kicker_thread = threading.Thread(target=self._kicker, name="research-events", daemon=True)
            self._kicker_thread.start()
        if compat.usable("scp"):  # else plain pynetdicom: it lacks what the direct paths reach into
            handlers.append((evt.EVT_CONN_OPEN, wire_scp.fast_store_responses))
            if self.cfg.fast_path:
                handlers.append((evt.EVT_CONN_OPEN,
                                 wire_scp.install(self.store_answer_first, self.after_response)))
        if self.cfg.listen_fd is not None:  # one of several SCP processes on one shared socket
            server_class = type("SharedListener", (SharedListenerServer,), {"listen_fd": self.cfg.listen_fd})
            self._server = ae.make_server((self.cfg.host, self.cfg.port), evt_handlers=handlers,
                                          server_class=server_class)
            ae._servers.append(self._server)  # as start_server does: shutdown() removes it again
            threading.Thread(target=self._server.serve_forever, name="research-acceptor", daemon=True).start()
        else:
            self._server = ae.start_server((self.cfg.host, self.cfg.port), block=False, evt_handlers=handlers)
        return int(self._server.server_address[1])

    def _association_ended(self, _event: evt.Event) -> None:
        self.kick()

    def drain(self) -> None:
        """Every instance answered so far in place and recorded, its events handed to the broker."""
        if self._writer is not None:
            self._writer.join()
        if self.producer is not None:
            deadline = time.monotonic() + DRAIN_S
            left = self._events.flush(DRAIN_S)
            # a refused event waits for its backoff in the outbox, not in the producer's queue: the
            # events thread produces it again meanwhile
            while self.outbox is not None and self.outbox.pending and time.monotonic() < deadline:
                self.producer.flush(min(0.1, max(0.0, deadline - time.monotonic())))
                time.sleep(0.01)
            kept = len(self.outbox.pending) if self.outbox is not None else 0
            if kept:  # each refusal was logged; the outbox keeps them
                LOG.error("%d event(s) not acknowledged by Kafka at drain: kept in the outbox %s, produced "
                          "again until the broker takes them (at the latest by the next start)", kept,
                          self.outbox.path if self.outbox is not None else "")
            elif left:  # a steward's action's (``_send``): its caller's flush has said so
                LOG.error("%d event(s) not confirmed by Kafka at drain", left)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.drain()
        if self._kicker_thread is not None:
            self._kick_stop = True
            self._kick.set()
            self._kicker_thread.join()
            self._kicker_thread = None
        if self._writer is not None and self._writer_thread is not None:
            self._writer.put(None)
            self._writer_thread.join()
            self._writer = self._writer_thread = None
        if self.journal is not None:
            if wire_scp.TIMING:
                LOG.warning("journal: %d syncs", self.journal.syncs)
            self.journal.close()  # its checkpoint makes the outbox's pending events durable first
            self.journal = None
        if self.outbox is not None:
            outbox, self.outbox = self.outbox, None  # late delivery reports: the file keeps the events
            outbox.close()
        if wire_scp.TIMING:
            LOG.warning("C-STORE phases (wall ms per call): %s", wire_scp.PHASES.report())


STANDARD_UID_ROOT = "1.2.840.10008."  # the standard's own UIDs (SOP classes, transfer syntaxes): no one's


def log_safe(text: str) -> str:
    """``text`` for a log that research staff may read (not access-checked, not audited): a
    de-identification failure's message cut to its class (the profile's errors may quote values), every
    UID other than the standard's own as ``[UID]`` (the PACS's Study, Series and SOP Instance UIDs)."""
    head, sep, rest = text.partition("de-identification failed: ")
    if sep:
        text = head + sep + rest.split(":", 1)[0].strip()
    return UID_IN_TEXT.sub(lambda m: m[0] if m[0].startswith(STANDARD_UID_ROOT) else "[UID]", text)


class _ResearchSafe(logging.Filter):
    """pynetdicom's records above DEBUG without the PACS's UIDs and without exception texts (a decoding
    error's may quote a value of the data set): the message through ``log_safe``, the exception as its
    class only."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            text += f" ({record.exc_info[0].__name__})"
        record.msg, record.args = log_safe(text), ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_SAFE_FILTER = _ResearchSafe()


def research_safe_pynetdicom() -> None:
    """pynetdicom's loggers as this process's logs may have them: not at DEBUG unless an operator set
    that on the ``pynetdicom`` logger itself (then a warning: DEBUG logs every DIMSE message with its
    whole data set, patients' names and the PACS's UIDs included), and every record through
    ``_ResearchSafe``. A logger that inherits its level (the root's DEBUG of ``--log-level DEBUG``)
    gets WARNING: pynetdicom's INFO is a line per message, its WARNING and ERROR are fixed texts and
    exceptions."""
    base = logging.getLogger("pynetdicom")
    if base.level == logging.NOTSET and not base.isEnabledFor(logging.INFO):
        pass  # quieter than WARNING already
    elif base.level == logging.NOTSET:
        base.setLevel(logging.WARNING)
    elif base.isEnabledFor(logging.DEBUG):
        LOG.warning("pynetdicom logs at DEBUG: its log holds whole data sets (patients' names, the PACS's "
                    "UIDs); not for a log research staff may read")
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if ((name == "pynetdicom" or name.startswith("pynetdicom.")) and isinstance(logger, logging.Logger)
                and _SAFE_FILTER not in logger.filters and not logger.isEnabledFor(logging.DEBUG)):
            logger.addFilter(_SAFE_FILTER)


def _log_refused(err: KafkaError | None, msg: Message) -> None:
    """A refused event is on the log. A stored instance's event lost so is not the instance lost: it
    is durable already, and the worker's reconciliation moves what it did not see again; a quarantine
    action waits for its events (``flush``) before it removes anything."""
    if err is not None:
        # not the key: a quarantine event's is the original SOP Instance UID
        LOG.error("an event not delivered to %s: %s", msg.topic(), err)


def _and(a: bool, b: bool) -> bool:
    return a and b


def _safe_key(entry: str) -> tuple[int, str, int] | None:
    try:
        return next(iter(parse_safe_list((entry,))))
    except ValueError:
        return None  # not a valid entry: kept by neither side (the profile would refuse it anyway)


def _common_safe_list(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The entries of ``a`` that ``b`` keeps as well (compared as parsed: group, creator, element)."""
    keep = {k for k in map(_safe_key, b) if k is not None}
    return tuple(e for e in a if _safe_key(e) in keep)


# How two values of each option field combine into the stricter one. Every DeidOptions flag makes the
# profile keep more when it is on (PS3.15 E.1-1: Clean Descriptors keeps a description's vocabulary words
# where the Basic Profile removes it, Retain ... Modified Dates shifts dates it would remove; checked
# against the compiled table by tests/sinks/dicom/test_scp_option_tightening.py): so AND for each.
# A field missing here fails at import (``_check_combined``): a new option must say how it tightens.
_DEID_COMBINE: dict[str, Callable[[Any, Any], Any]] = {
    "retain_modified_dates": _and,
    "retain_patient_characteristics": _and,
    "retain_device_identity": _and,
    "retain_uids": _and,
    "clean_descriptors": _and,
    "private_safe_list": _common_safe_list,
}


def _stricter_deid(a: DeidOptions, b: DeidOptions) -> DeidOptions:
    return DeidOptions(**{k: f(getattr(a, k), getattr(b, k)) for k, f in _DEID_COMBINE.items()})


_STORE_COMBINE: dict[str, Callable[[Any, Any], Any]] = {
    "identified": _and,  # identified only when both say so (the registration needs an IRB reference)
    "allow_burned_in_risk": _and,
    "deid": _stricter_deid,
}


def _check_combined() -> None:
    for cls, table in ((DeidOptions, _DEID_COMBINE), (StoreOptions, _STORE_COMBINE)):
        names = {f.name for f in dataclasses.fields(cls)}
        if names != set(table):
            odd = sorted(names ^ set(table))
            raise RuntimeError(f"sinks.dicom.scp.stricter: {cls.__name__} fields {odd} are not handled "
                               "(say how each tightens) or no longer exist")


_check_combined()


def stricter(a: StoreOptions, b: StoreOptions) -> StoreOptions:
    """The stricter of two option sets, field by field: what both allow, what both retain, the private
    attributes both keep (commutative)."""
    return StoreOptions(**{k: f(getattr(a, k), getattr(b, k)) for k, f in _STORE_COMBINE.items()})


def _stop_after_series(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) > 0x0020000E


def _holds_uids(data: bytes, original: Header) -> bool:
    """Whether the Part 10 file ``data`` holds the received Study, Series or SOP Instance UID anywhere
    (its data set inflated first when deflated; bytes.find: microseconds per 100 KiB)."""
    if data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL":
        end = 144 + struct.unpack_from("<I", data, 140)[0]
        if DeflatedExplicitVRLittleEndian.encode() in data[132:end]:
            data = data[:end] + zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[end:])
    return any(uid and uid.encode() in data
               for uid in (original.study, original.series, original.sop_instance))


@functools.lru_cache(maxsize=64)
def _syntax(ts: str) -> UID:
    """A transfer syntax's ``UID``, made once per syntax (pydicom checks a UID's form when it is made)."""
    return UID(ts)


def header_of(raw: bytes, ts: UID) -> Header:
    """The filing values (study/series/SOP UIDs, accession, patient id, modality): read directly
    (``sinks.dicom.header``), or by pydicom up to SeriesInstanceUID where that cannot."""
    if ts.is_little_endian:
        hdr = read_header(raw, ts.is_implicit_VR)
        if hdr is not None:
            return hdr
    ds = read_dataset(io.BytesIO(raw), ts.is_implicit_VR, ts.is_little_endian, stop_when=_stop_after_series)
    return _header_from(ds)


def _header_from(ds: Dataset) -> Header:
    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "")

    return Header(study=text("StudyInstanceUID"), series=text("SeriesInstanceUID"),
                  sop_instance=text("SOPInstanceUID"), sop_class=text("SOPClassUID"),
                  accession=text("AccessionNumber"), patient_id=text("PatientID"), modality=text("Modality"))


def _stored_header(ds: Dataset) -> Header:
    """``_header_from`` of a de-identified dataset, read from its undecoded elements (``deid.text``)."""
    return Header(study=text(ds, 0x0020000D), series=text(ds, 0x0020000E),
                  sop_instance=text(ds, 0x00080018), sop_class=text(ds, 0x00080016),
                  accession=text(ds, 0x00080050), patient_id=text(ds, 0x00100020),
                  modality=text(ds, 0x00080060))


def _element(group_elem: int, vr: bytes, value: bytes) -> bytes:
    tag = struct.pack("<HH", group_elem >> 16, group_elem & 0xFFFF)
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _ui(uid: str) -> bytes:
    b = uid.encode("ascii")
    return b + b"\0" if len(b) % 2 else b


def _text(s: str) -> bytes:
    b = s.encode("ascii")
    return b + b" " if len(b) % 2 else b


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1), encoded directly.

    pydicom's writer builds and validates a dataset for this on every instance, which cost more CPU than
    the rest of our per-instance work; the group is eight fixed elements.
    """
    body = b"".join((
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _ui(sop_class)),
        _element(0x00020003, b"UI", _ui(sop_instance)),
        _element(0x00020010, b"UI", _ui(transfer_syntax)),
        _element(0x00020012, b"UI", _ui(PYNETDICOM_IMPLEMENTATION_UID)),
        _element(0x00020013, b"SH", _text(PYNETDICOM_IMPLEMENTATION_VERSION)),
        _element(0x00020016, b"AE", _text(source_ae.strip())),
    ))
    return b"\x00" * 128 + b"DICM" + _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def _file_bytes(meta: FileMetaDataset, raw: bytes) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)  # type: ignore[arg-type]
    buf.write(raw)
    return buf.getvalue()
