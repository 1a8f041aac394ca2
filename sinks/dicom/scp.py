"""The research store: a pynetdicom storage SCP writing ``project/study/series/instance.dcm``.

- Accepts associations only from the configured calling AEs (others are rejected at A-ASSOCIATE).
- Looks up the project of each instance's study (``sinks.dicom.expect``).
- The association thread only checks and queues (the filing values are read straight from the bytes,
  ``sinks.dicom.header``); writer threads de-identify (per project, optional), write to a temporary file,
  read it back to verify, rename it into place (overwrite by SOPInstanceUID: a redone move never makes
  duplicates, and a file that fails the check never replaces a good one), and produce one
  ``received_instance`` event per instance (handed to the producer in small batches,
  ``event_batch``/``event_batch_ms``, so that the broker gets one request per batch).
- Refusals: 0x0124 study not registered for any project (and no default project), 0xA700 not enough
  free disk space, 0xC000 a dataset without the UIDs needed to file it.

Trade-off: the C-STORE response is sent once the instance is queued in memory, not after the write
(the write overlaps with receiving the next instance). A write that fails afterwards is logged and
counted and produces no ``received_instance`` event; stopping the SCP drains the queue first.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import shutil
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from sinks.dicom.config import ResearchConfig
from sinks.dicom.deid import Deidentifier
from sinks.dicom.expect import Expectation, Registry
from sinks.dicom.header import Header, read_header
from sinks.dicom.net import NODELAY_HANDLERS, make_ae
from sinks.dicom.wire import compat
from sinks.dicom.wire import scp as wire_scp
from streams import serde
from streams.config import IngestConfig

LOG = logging.getLogger(__name__)

STATUS_NOT_AUTHORIZED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass
class ScpConfig:
    ae_title: str
    port: int
    host: str
    store_dir: Path
    allowed_calling_aes: tuple[str, ...]
    default_project: str = ""
    min_free_mb: int = 100
    writers: int = 2
    queue_size: int = 64
    deid_projects: tuple[str, ...] = ()
    deid_key: bytes = b""
    site: str = "default"  # of the patient pseudonyms (the same as the warehouse's)
    fast_path: bool = True
    listen_fd: int | None = None  # a listening socket shared with sibling SCP processes (research.processes)
    event_batch: int = 64  # received_instance events produced together (at most this many) ...
    event_batch_ms: float = 200.0  # ... or this long after the first of them (0: one at a time)

    @classmethod
    def of(cls, r: ResearchConfig, ingest: IngestConfig) -> ScpConfig:
        """The SCP's options from its section; the de-identification key (and the site of the patient
        pseudonyms) from the ingest section, read from ``pseudonym_key_file`` when not given inline."""
        key = ingest.pseudonym_key.encode()
        if not key and ingest.pseudonym_key_file:
            key = Path(ingest.pseudonym_key_file).read_bytes().strip()
        return cls(
            ae_title=r.ae_title, port=r.port, host=r.host, store_dir=Path(r.store_dir),
            allowed_calling_aes=tuple(r.allowed_calling_aes), default_project=r.default_project,
            min_free_mb=r.min_free_mb, writers=r.writers, deid_projects=tuple(r.deid_projects),
            deid_key=key, site=ingest.site, fast_path=r.fast_path, event_batch_ms=r.event_batch_ms,
        )


BUSY_ACCEPT_DELAY = 0.003  # seconds a process that is receiving already leaves a new association to others


class SharedListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor on a listening socket shared by ``research.processes`` SCP processes.

    Every process polls the same socket and the first ``accept`` wins, so a PACS's parallel moves are
    spread by who is free: a process that already serves an association waits ``BUSY_ACCEPT_DELAY``
    before it accepts, and an idle sibling takes the connection first (the kernel's ``SO_REUSEPORT``
    hashing put both associations in one process about half the time). When every process is busy, the
    association is accepted after that short delay.
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
        if self.ae.active_associations:
            time.sleep(BUSY_ACCEPT_DELAY)
        # BlockingIOError (an OSError) when a sibling was quicker: socketserver then simply goes on
        conn, addr = super().get_request()
        conn.setblocking(True)
        return conn, addr


@dataclass
class Stats:
    received: int = 0
    written: int = 0
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


@dataclass
class _Job:
    project: Expectation
    meta: bytes  # encoded File Meta Information (preamble and DICM prefix included)
    raw: bytes
    header: Header
    sop_class: str  # of the C-STORE request
    calling_ae: str
    called_ae: str


class ResearchStore:
    """Storage SCP + writer threads. ``start()`` returns once listening; ``stop()`` drains and stops."""

    def __init__(self, cfg: ScpConfig, producer: Any = None, topic: str = "") -> None:
        self.cfg = cfg
        self.producer = producer
        self.topic = topic
        self.stats = Stats()
        self.registry = Registry(cfg.store_dir)
        self.deid = Deidentifier(cfg.deid_key, cfg.site) if cfg.deid_projects else None
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=cfg.queue_size)
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._cache: dict[str, tuple[int | None, Expectation | None]] = {}
        self._free_checked = (0.0, True)
        self._dirs: set[str] = set()  # directories made already (one mkdir per series, not per image)
        self._reg_paths: dict[str, str] = {}  # study UID -> its registration file (pathlib per image is slow)
        self._root = str(cfg.store_dir)
        self._unsent = 0  # received_instance events encoded and not yet handed to the producer
        self._unsent_cv = threading.Condition()

    # -- association thread -------------------------------------------------------------------
    def _project(self, study_uid: str) -> Expectation | None:
        """The registered project of a study; re-read only when its registration file changed (one stat)."""
        reg = self._reg_paths.get(study_uid)
        if reg is None:
            if len(self._reg_paths) > 10000:
                self._reg_paths.clear()
            reg = self._reg_paths[study_uid] = str(self.registry.path(study_uid))
        try:
            stamp: int | None = os.stat(reg).st_mtime_ns
        except OSError:
            stamp = None
        hit = self._cache.get(study_uid)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        exp = self.registry.lookup(study_uid) if stamp is not None else None
        if exp is None and self.cfg.default_project:
            exp = Expectation(study_uid, self.cfg.default_project, "", self.cfg.ae_title, time.time())
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[study_uid] = (stamp, exp)
        return exp

    def _enough_space(self) -> bool:
        now = time.monotonic()
        if now - self._free_checked[0] > 1.0:
            self.cfg.store_dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.cfg.store_dir).free
            self._free_checked = (now, free >= self.cfg.min_free_mb * 1024 * 1024)
        return self._free_checked[1]

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
        """Check and queue one received instance; the C-STORE response status."""
        self.stats.add("received")
        try:
            hdr = header_of(raw, UID(ts)) if deflated is None else _header_from(deflated)
        except Exception as exc:  # undecodable dataset
            LOG.warning("refusing undecodable dataset: %s", exc)
            self.stats.add("refused")
            return STATUS_CANNOT_UNDERSTAND
        if not (hdr.study and hdr.series and hdr.sop_instance) or hdr.sop_instance != sop_instance:
            self.stats.add("refused")
            return STATUS_CANNOT_UNDERSTAND
        project = self._project(hdr.study)
        if project is None:
            LOG.warning("refusing instance of unregistered study %s", hdr.study)
            self.stats.add("refused")
            return STATUS_NOT_AUTHORIZED
        if not self._enough_space():
            LOG.warning("refusing instance: less than %d MB free in %s", self.cfg.min_free_mb,
                        self.cfg.store_dir)
            self.stats.add("refused")
            return STATUS_OUT_OF_RESOURCES
        if deflated_meta is not None:
            meta = _file_bytes(deflated_meta, b"")
        else:
            meta = file_meta_bytes(sop_class, sop_instance, ts, assoc.requestor.ae_title)
        self._queue.put(_Job(project, meta, raw, hdr, sop_class, assoc.requestor.ae_title,
                             assoc.acceptor.ae_title))
        return 0x0000

    # -- writer threads -------------------------------------------------------------------------
    def _writer(self) -> None:
        """Write queued instances; their ``received_instance`` events go to the producer in batches.

        The events of up to ``event_batch`` instances (or ``event_batch_ms`` after the first one) are
        produced together, so the producer sends them in one request: one request per image cost the
        broker more CPU than the store itself. ``drain``/``stop`` wait until every buffered event is
        produced.
        """
        batch: list[tuple[str, bytes]] = []
        first = 0.0
        wait_s = self.cfg.event_batch_ms / 1000.0
        while True:
            timeout = None if not batch else max(0.0, first + wait_s - time.monotonic())
            try:
                job = self._queue.get(timeout=timeout)
            except queue.Empty:
                batch = self._produce(batch)
                continue
            try:
                if job is None:
                    batch = self._produce(batch)
                    return
                event = self._write(job)
                if event is not None:
                    if not batch:
                        first = time.monotonic()
                    batch.append(event)
                    if len(batch) >= self.cfg.event_batch or not wait_s:
                        batch = self._produce(batch)
            except Exception as exc:
                self.stats.add("write_errors")
                LOG.exception("could not store an instance")
                if job is not None:
                    with contextlib.suppress(OSError):  # the disk that failed the write may fail this too
                        why = f"{type(exc).__name__}: {exc}"
                        self.registry.record(job.header.study, job.project.request_id,
                                             job.header.sop_instance, "failed", why)
            finally:
                self._queue.task_done()

    def _produce(self, batch: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        if batch and self.producer is not None:
            for key, value in batch:
                while True:
                    try:
                        self.producer.produce(self.topic, value=value, key=key)
                        break
                    except BufferError:
                        self.producer.poll(0.1)
            self.producer.poll(0)
        if batch:
            with self._unsent_cv:
                self._unsent -= len(batch)
                self._unsent_cv.notify_all()
        return []

    def _write(self, job: _Job) -> tuple[str, bytes] | None:
        """Write, verify and describe one instance: its (key, encoded ``received_instance``) or None."""
        hdr = job.header
        study, series, sop = hdr.study, hdr.series, hdr.sop_instance
        accession, patient_id = hdr.accession or None, hdr.patient_id or None
        sop_class = hdr.sop_class or job.sop_class
        deid = self.deid is not None and job.project.project_id in self.cfg.deid_projects
        originals: dict[str, Any] = {}
        if deid and self.deid is not None:
            originals = {"original_sop_instance_uid": sop, "original_series_instance_uid": series,
                         "original_study_instance_uid": study, "original_accession": accession,
                         "original_patient_id": patient_id}
            buf = io.BytesIO()
            ds = dcmread(io.BytesIO(job.meta + job.raw))
            self.deid.apply(ds, job.project.project_id)
            dcmwrite(buf, ds, enforce_file_format=True)
            data = buf.getvalue()
            study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            accession = str(ds.get("AccessionNumber", "")) or None
            patient_id = str(ds.get("PatientID", "")) or None
            sop_class = str(ds.get("SOPClassUID", "")) or sop_class
        else:
            data = job.meta + job.raw
        parent = os.path.join(self._root, _safe(job.project.project_id), study, series)
        target = os.path.join(parent, f"{sop}.dcm")
        self._write_verified(parent, target, sop, data)
        self.stats.add_written(len(data))
        self.registry.record(hdr.study, job.project.request_id, hdr.sop_instance, "stored")
        if self.producer is None:
            return None
        record = {
            "project_id": job.project.project_id, "calling_ae": job.calling_ae, "called_ae": job.called_ae,
            "study_instance_uid": study, "series_instance_uid": series, "sop_instance_uid": sop,
            "sop_class_uid": sop_class, "accession": accession, "patient_id": patient_id,
            "modality": hdr.modality or None, "path": target, "size_bytes": len(data),
            "deidentified": deid, "time": datetime.now(UTC), **originals,
        }
        with self._unsent_cv:
            self._unsent += 1
        return sop, serde.encode("received_instance", record)

    def _write_verified(self, parent: str, target: str, sop: str, data: bytes) -> None:
        """Write to a temporary file, read it back through the same descriptor and compare (it must hold
        exactly the bytes we meant to store), then rename it over ``target`` (overwrite by
        SOPInstanceUID). Five system calls per instance: each one releases and retakes the GIL, which
        the association threads need."""
        tmp = os.path.join(parent, f".{sop}.dcm.{threading.get_ident()}.tmp")
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            if len(self._dirs) > 10000:
                self._dirs.clear()
            self._dirs.add(parent)
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # the directory went away since we made it
            os.makedirs(parent, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            # one byte more than we wrote: a longer file shows as a longer read (bytes compare is a memcmp);
            # a regular file's read returns less than asked only at its end
            want, back = len(data) + 1, b""
            while len(back) < want:
                ask = want - len(back)
                more = os.pread(fd, ask, len(back))
                back += more
                if len(more) < ask:
                    break
        finally:
            os.close(fd)
        if back != data:
            os.unlink(tmp)
            raise OSError(f"verification failed for {target}: content differs")
        os.replace(tmp, target)

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> int:
        """Start listening; returns the bound port."""
        if self.producer is not None:
            serde.registry()  # parse the contracts now, not while the first study arrives
        self._root = str(self.cfg.store_dir)
        ae = make_ae(self.cfg.ae_title, network_timeout=60.0)
        ae.require_calling_aet = list(self.cfg.allowed_calling_aes)
        ae.require_called_aet = True
        # Accept every storage SOP class without listing ~130 x 20 contexts: pynetdicom deep-copies the
        # supported contexts for every association, which cost more CPU than receiving a small study.
        _config.UNRESTRICTED_STORAGE_SERVICE = True
        ae.add_supported_context(Verification)
        for _ in range(self.cfg.writers):
            t = threading.Thread(target=self._writer, name="research-writer", daemon=True)
            t.start()
            self._threads.append(t)
        handlers = [(evt.EVT_C_STORE, self.handle_store), *NODELAY_HANDLERS]
        if compat.usable("scp"):  # else plain pynetdicom: it lacks what the direct paths reach into
            handlers.append((evt.EVT_CONN_OPEN, wire_scp.fast_store_responses))
            if self.cfg.fast_path:
                handlers.append((evt.EVT_CONN_OPEN, wire_scp.install(self.store)))
        if self.cfg.listen_fd is not None:  # one of several SCP processes on one shared socket
            server_class = type("SharedListener", (SharedListenerServer,), {"listen_fd": self.cfg.listen_fd})
            self._server = ae.make_server((self.cfg.host, self.cfg.port), evt_handlers=handlers,
                                          server_class=server_class)
            ae._servers.append(self._server)  # as start_server does: shutdown() removes it again
            threading.Thread(target=self._server.serve_forever, name="research-acceptor", daemon=True).start()
        else:
            self._server = ae.start_server((self.cfg.host, self.cfg.port), block=False, evt_handlers=handlers)
        return int(self._server.server_address[1])

    def drain(self) -> None:
        """Wait until every queued instance is written and its event handed to the producer."""
        self._queue.join()
        with self._unsent_cv:
            self._unsent_cv.wait_for(lambda: self._unsent <= 0, timeout=30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.drain()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []
        if self.producer is not None:
            self.producer.flush(30)


def _stop_after_series(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) > 0x0020000E


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


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.strip(".") or "_"
