"""The research store's write-ahead journal: an instance's final bytes are durable before its C-STORE
response, and its file is written afterwards.

Measured on this VM's ext4 disk: fsync of a newly written file, rename, fsync of the directory costs
3-5 ms per instance (a journal commit of the file system each time; more under load), while overwriting
a region of a file whose blocks are already allocated and written, followed by ``fdatasync``, costs
0.3 ms (no metadata changes, so no file-system journal commit). So:

1. ``append(relpath, data, note)``: the instance's bytes, its path under the store root and a short
   note of the caller's (the store: what to record in the request's manifest) go into a preallocated,
   zero-filled journal file (``<store>/.journal/journal-<k>.wal``, one per SCP process, held with
   ``flock``) as one record (magic, sequence number, lengths, CRC-32), written with one ``pwritev`` in
   sequence order under a lock, then made durable with ``fdatasync``. **Group commit**: one
   ``fdatasync`` covers every record written before it started, so a thread whose record a running
   sync covers waits for that one; a thread whose record it does not cover starts its own at once,
   beside it. When ``append`` returns, the record is durable; only then the caller answers the
   C-STORE.
2. The caller then writes the record's file (its writer thread) and calls ``done(seq)`` once the file
   is in place or its failure recorded. ``read(record)`` gives the record's bytes back from the
   journal (CRC-checked) for a retry.
3. When the journal is full (or on ``close``), the checkpoint waits until every record is ``done``,
   runs ``syncfs`` on the store's file system (one flush for every file written so far), records the
   last sequence number durably in ``<journal>.ckpt`` and starts the journal over.
4. At start (``open``), records after the checkpoint are replayed: their files written again (the same
   bytes; the store overwrites by SOPInstanceUID) and ``on_replay(relpath, note)`` called for each,
   then a checkpoint. This covers a crash between the response and the file's rename.

Records are written in sequence order, so a later record can only be durable when the earlier ones are
(``fdatasync`` flushes the whole file); replay stops at the first record that is torn or stale.
Instances larger than a quarter of the journal bypass it (``fits``): the caller fsyncs them directly.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sinks.dicom.paths import durable_write, fsync_dir, inside

MAGIC = b"RSJ1"
HEADER = struct.Struct("<4sQIII")  # magic, seq, path length, data length, CRC-32 of seq+path+data
DEFAULT_BYTES = 64 * 1024 * 1024
DIRNAME = ".journal"
NOTE_SEP = b"\0"  # the path field is relpath, then NUL and the note when there is one (a path has no NUL)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def syncfs(fd: int) -> None:
    """Flush the file system holding ``fd`` (Linux ``syncfs(2)``; ``sync`` where it is missing)."""
    fn = getattr(_libc, "syncfs", None)
    if fn is None:
        os.sync()
        return
    if fn(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


def _crc(seq: int, path: bytes, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(path, zlib.crc32(struct.pack("<Q", seq)))) & 0xFFFFFFFF


# a de-identified project's modes in the store (sinks.dicom.scp): owner and group only, whatever the
# umask; the store passes an identified project's (owner only) through ``Journal(modes=...)``
DIR_MODE = 0o750
FILE_MODE = 0o640


def make_dirs(root: str, directory: str, mode: int) -> None:
    """Each level of ``directory`` under ``root`` (both resolved) made with ``mode`` whatever the umask
    (``os.makedirs``' mode reaches the last level only, and through the umask). An existing level loses
    the group and other permissions ``mode`` does not give (a project registered identified after its
    tree was made), never gains any.

    Serialised per ``root`` (an flock on the root directory, across the store's threads and processes):
    the mkdir and the chmod that widens the new level to ``mode`` are two steps, and a de-identified
    writer's chmod (0750) landing after an identified writer tightened the level it had just made left
    an identified project's directory open to the group."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        d = root
        for part in os.path.relpath(directory, root).split(os.sep):
            if part in ("", "."):
                continue
            d = os.path.join(d, part)
            try:
                os.mkdir(d, mode)
                os.chmod(d, mode)  # mkdir's mode is masked by the umask
            except FileExistsError:
                have = stat.S_IMODE(os.stat(d).st_mode)
                if have & 0o077 & ~mode:
                    os.chmod(d, have & ~(0o077 & ~mode))
    finally:
        os.close(fd)  # releases the lock


def write_file(root: str, path: str, data: bytes, dir_mode: int = DIR_MODE,
               file_mode: int = FILE_MODE) -> None:
    """A replayed record's file, written again (the checkpoint after the replay makes it durable).

    Its directories may be gone with the crash (the journal's path does not fsync them), so each level
    under ``root`` is made again with ``dir_mode`` and the file with ``file_mode``, as the store makes
    them: a replay must not leave a project's images readable by the host's other users, nor an
    identified project's by the store's group."""
    make_dirs(os.path.realpath(root), os.path.dirname(path), dir_mode)  # ``path`` comes from ``inside``
    tmp = f"{path}.replay.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode)
    try:
        os.fchmod(fd, file_mode)  # an old temporary file keeps its mode; O_CREAT's is masked by the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Record:
    seq: int
    offset: int
    path_len: int  # of the path field (relpath and note)
    data_len: int


class Journal:
    def __init__(self, root: str, size: int = DEFAULT_BYTES,
                 on_replay: Callable[[str, bytes], None] | None = None,
                 modes: Callable[[str, bytes], tuple[int, int]] | None = None,
                 before_checkpoint: Callable[[], None] | None = None) -> None:
        """``root``: the store root; ``on_replay(relpath, note)``: after a replayed record's file is
        written again; ``modes(relpath, note)``: (directory mode, file mode) of a replayed record's
        file (None: ``DIR_MODE``, ``FILE_MODE``); ``before_checkpoint()``: what must be durable before a
        checkpoint passes the records (the store: its events not yet acknowledged, ``Outbox.compact``)."""
        self.root = root
        self.size = size
        self._on_replay = on_replay
        self._modes = modes
        self._before_checkpoint = before_checkpoint
        self._cond = threading.Condition()
        self._seq = 0  # the last sequence number written
        self._synced = 0  # every record up to this one is durable
        self._running: list[int] = []  # the last record each running fdatasync covers
        self._outstanding: set[int] = set()  # appended, file not yet done
        self._cursor = 0
        self._fd = -1
        self.path = ""
        self.replayed = 0
        self.syncs = 0  # fdatasync calls (group commit: fewer than appends under concurrency)

    # -- open / recover ------------------------------------------------------------------------------
    def open(self) -> None:
        d = os.path.join(self.root, DIRNAME)
        os.makedirs(d, mode=0o700, exist_ok=True)
        guard = os.open(os.path.join(d, "slots.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)  # sibling SCP processes pick their journals one at a time
            self._fd, self.path = self._take_slot(d)
            self._recover()
        finally:
            os.close(guard)

    def _take_slot(self, d: str) -> tuple[int, str]:
        """The first journal no other live process holds (held with flock until close)."""
        for k in range(256):
            path = os.path.join(d, f"journal-{k}.wal")
            fd = os.open(path, os.O_RDWR) if os.path.exists(path) else -1
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                if os.fstat(fd).st_size == self.size:
                    return fd, path
                os.close(fd)  # made with another size: recover it with that size first
                Journal(self.root, os.path.getsize(path), self._on_replay, self._modes,
                        self._before_checkpoint).recover_file(path)
            self._create(path)
            fd = os.open(path, os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, path
        raise OSError("no free journal slot in " + d)

    def recover_file(self, path: str) -> None:
        """Replay and close a journal of this size (one left with another ``journal_mb``)."""
        self._fd, self.path = os.open(path, os.O_RDWR), path
        try:
            self._recover()
        finally:
            os.close(self._fd)
            self._fd = -1

    def _create(self, path: str) -> None:
        """Zero-fill (really written blocks: an overwrite then changes no metadata), fsync, rename."""
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = b"\0" * (1 << 20)
            left = self.size
            while left > 0:
                left -= os.write(fd, chunk[:min(left, len(chunk))])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(path))

    def _checkpoint_path(self) -> str:
        return self.path + ".ckpt"

    def _read_checkpoint(self) -> int:
        try:
            with open(self._checkpoint_path(), "rb") as fh:
                return int(fh.read().strip() or b"0")
        except (OSError, ValueError):
            return 0

    def _recover(self) -> None:
        last = self._read_checkpoint()
        seq, offset = last, 0
        while offset + HEADER.size <= self.size:
            magic, rseq, plen, dlen, crc = HEADER.unpack(os.pread(self._fd, HEADER.size, offset))
            end = offset + HEADER.size + plen + dlen
            if magic != MAGIC or rseq <= last or end > self.size:
                break  # the end of what was written since the checkpoint (zeros, a stale record)
            body = os.pread(self._fd, plen + dlen, offset + HEADER.size)
            field, data = body[:plen], body[plen:]
            if _crc(rseq, field, data) != crc:
                break  # torn: never acknowledged (records are written in order)
            rel, _, note = field.partition(NOTE_SEP)
            dir_mode, file_mode = self._modes(rel.decode(), note) if self._modes else (DIR_MODE, FILE_MODE)
            write_file(self.root, inside(self.root, rel.decode()), data, dir_mode, file_mode)
            if self._on_replay is not None:
                self._on_replay(rel.decode(), note)
            self.replayed += 1
            seq, offset = rseq, end
        self._seq = self._synced = seq
        self._checkpoint(seq)

    def _checkpoint(self, seq: int) -> None:
        if self._before_checkpoint is not None:
            self._before_checkpoint()
        syncfs(self._fd)
        tmp = f"{self._checkpoint_path()}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(str(seq).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._checkpoint_path())
        fsync_dir(os.path.dirname(self.path))
        self._cursor = 0

    # -- writing ---------------------------------------------------------------------------------------
    def fits(self, relpath: str, data: bytes, note: bytes = b"") -> bool:
        return HEADER.size + len(relpath.encode()) + len(note) + 1 + len(data) <= self.size // 4

    def append(self, relpath: str, data: bytes, note: bytes = b"") -> Record:
        """Make (relpath, data, note) durable; its file is the caller's to write, then ``done(seq)``."""
        field = relpath.encode() + (NOTE_SEP + note if note else b"")
        need = HEADER.size + len(field) + len(data)
        with self._cond:
            if self._cursor + need > self.size:
                # every record's file must be in place (``done``) before the checkpoint's syncfs
                while self._outstanding:
                    self._cond.wait()
                self._checkpoint(self._seq)
            self._seq += 1
            seq, offset = self._seq, self._cursor
            self._cursor += need
            # in sequence order: a durable record implies durable predecessors
            header = HEADER.pack(MAGIC, seq, len(field), len(data), _crc(seq, field, data))
            try:
                if os.pwritev(self._fd, [header, field, data], offset) != need:
                    raise OSError(errno.EIO, "short write to the journal")  # else torn, yet answered
            except BaseException:
                self._cursor = offset  # nothing of it counts; the next record overwrites it
                self._seq -= 1
                raise
            self._outstanding.add(seq)
        try:
            self._sync(seq)
        except BaseException:
            self.done(seq)
            raise
        return Record(seq, offset, len(field), len(data))

    def _sync(self, seq: int) -> None:
        """Return once record ``seq`` is durable. A running ``fdatasync`` that started after the record
        was written covers it: wait for that one. Otherwise start one at once, beside any that are
        running (serialising them would make two associations as slow as one: each waits for the
        other's sync, then runs its own; the block layer merges concurrent flushes itself)."""
        with self._cond:
            while self._synced < seq:
                if any(t >= seq for t in self._running):
                    self._cond.wait()
                    continue
                target = self._seq  # every record up to here is written (under this lock)
                self._running.append(target)
                self._cond.release()
                try:
                    os.fdatasync(self._fd)
                finally:
                    self._cond.acquire()
                    self._running.remove(target)
                    self._cond.notify_all()
                self.syncs += 1
                self._synced = max(self._synced, target)

    def read(self, rec: Record) -> bytes:
        """A record's data as in the journal (for a retry of its file); OSError when it no longer is."""
        body = os.pread(self._fd, HEADER.size + rec.path_len + rec.data_len, rec.offset)
        magic, seq, plen, dlen, crc = HEADER.unpack(body[:HEADER.size])
        field, data = body[HEADER.size:HEADER.size + plen], body[HEADER.size + plen:]
        if magic != MAGIC or seq != rec.seq or (plen, dlen) != (rec.path_len, rec.data_len) or _crc(
                seq, field, data) != crc:
            raise OSError(f"journal record {rec.seq} does not read back intact")
        return data

    def done(self, seq: int) -> None:
        """Record ``seq``'s file is in place (or its failure recorded): a checkpoint may pass it."""
        with self._cond:
            self._outstanding.discard(seq)
            if not self._outstanding:
                self._cond.notify_all()

    def close(self) -> None:
        """Checkpoint (the caller has finished every record's file) and close."""
        if self._fd < 0:
            return
        with self._cond:
            with contextlib.suppress(OSError):
                self._checkpoint(self._seq)
            os.close(self._fd)
            self._fd = -1


# -- the events' outbox ------------------------------------------------------------------------------
# The store's events (``received_instance``, ``received_original``, ``quarantined``: the warehouse's
# ``received_instances``, ``deid_map`` and ``quarantine`` rows) are kept from their production until the
# broker acknowledges them: a refused one is produced again (``Outbox.due``), one not acknowledged when
# the process stops or dies is produced again by the next start (``Outbox.open``). The encoded record is
# kept, so a repetition is the same bytes (the same ``time``): the sink's ReplacingMergeTree keys collapse
# it (received_instances: project, study, series, SOP; deid_map: project, kind, pseudonym, original;
# quarantine: project, SOP, action, time).

OUTBOX_PREFIX = "outbox-"
_SLOT = re.compile(re.escape(OUTBOX_PREFIX) + r"(\d+)\.(?:lock|log)")
OUTBOX_COMPACT_BYTES = 8 * 1024 * 1024  # the file is rewritten with only the pending events beyond this
RETRY_FIRST_S = 1.0  # a refused event is produced again after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class Event:
    """One encoded event as the producer takes it; ``study``: its partition's (as stored)."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    study: str = ""

    def to_json(self) -> list[object]:
        b64 = base64.b64encode
        return [self.topic, b64(self.key).decode(), b64(self.value).decode(),
                [[k, b64(v).decode()] for k, v in self.headers], self.study]

    @classmethod
    def from_json(cls, data: list[Any]) -> Event:
        d = base64.b64decode
        return cls(str(data[0]), d(data[1]), d(data[2]), tuple((str(k), d(v)) for k, v in data[3]),
                   str(data[4]))

    def digest(self) -> bytes:
        return hashlib.sha256(b"\0".join((self.topic.encode(), self.key, self.value))).digest()


class Outbox:
    """The events of one SCP process not yet acknowledged by the broker, in
    ``<store>/.journal/outbox-<k>.log`` (held with an flock on ``outbox-<k>.lock``; clinical zone: a
    ``received_original`` or quarantine event names original UIDs).

    One JSON line per event (``{"n": id, "e": Event}``) and per acknowledgement (``{"a": id}``), written
    without a sync: a process that dies leaves them in the page cache. What needs a sync gets one: an
    event of an instance answered without the journal (``add(sync=True)``, before the C-STORE response),
    and the pending events before a journal checkpoint passes their records (``compact``). A journaled
    instance's events ride in its journal record too (the record's note), so the journal's replay
    produces them again after a crash of the host; ``seen`` tells it which the broker had acknowledged.

    ``open`` takes a free slot, reads its file and the files of slots no live process holds (a run with
    fewer processes than the last), and returns what was not acknowledged, to be produced again."""

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, DIRNAME)
        self.path = ""
        self._lock = threading.Lock()
        self._fd = -1
        self._lock_fd = -1
        self._size = 0
        self._live = 0  # the file's size after its last rewrite: the pending events then
        self._next = 0
        self.pending: dict[int, Event] = {}
        self._due: dict[int, float] = {}  # refused: when to produce again
        self._tries: dict[int, int] = {}
        self._acked: set[bytes] = set()  # digests acknowledged before the last stop (``seen``)
        self.refusals = 0  # refusals by the broker since ``open`` (each time an event was refused)

    def open(self) -> list[tuple[int, Event]]:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        adopted: list[tuple[int, str]] = []  # (lock fd, log path) of slots nobody holds
        made = [int(m[1]) for m in map(_SLOT.fullmatch, os.listdir(self.dir)) if m is not None]
        last = max(made, default=-1)
        k = 0
        while k <= last or self._lock_fd < 0:
            lock_path = os.path.join(self.dir, f"{OUTBOX_PREFIX}{k}.lock")
            log_path = os.path.join(self.dir, f"{OUTBOX_PREFIX}{k}.log")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live sibling's
                k += 1
                continue
            if self._lock_fd < 0:
                self._lock_fd, self.path = fd, log_path
            else:
                adopted.append((fd, log_path))
            k += 1
        left: list[Event] = []
        for path in [self.path, *(p for _fd, p in adopted)]:
            left.extend(self._read(path))
        with self._lock:
            for ev in left:
                self._next += 1
                self.pending[self._next] = ev
            self._rewrite()
        for fd, path in adopted:  # their pending events are in ours now (durable)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)
        return sorted(self.pending.items())

    def _read(self, path: str) -> list[Event]:
        try:
            with open(path, "rb") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return []
        events: dict[int, Event] = {}
        for line in lines:
            try:
                rec = json.loads(line)
                if "a" in rec:
                    ev = events.pop(int(rec["a"]), None)
                    if ev is not None:
                        self._acked.add(ev.digest())
                else:
                    events[int(rec["n"])] = Event.from_json(rec["e"])
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # a line cut short by a crash
        return list(events.values())

    def _rewrite(self) -> None:
        """The file again with only the pending events, durable (under ``_lock``)."""
        body = b"".join(json.dumps({"n": n, "e": ev.to_json()}).encode() + b"\n"
                        for n, ev in self.pending.items())
        durable_write(self.path, body)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = self._live = len(body)

    def _write(self, rec: dict[str, object]) -> None:
        line = json.dumps(rec).encode() + b"\n"
        os.write(self._fd, line)
        self._size += len(line)

    def seen(self, ev: Event) -> bool:
        """Acknowledged by the broker before the last stop (as far as the outbox's file still says)."""
        return ev.digest() in self._acked

    def add(self, ev: Event, sync: bool = False) -> int:
        """Keep ``ev`` until ``ack``; its id. ``sync``: durable when this returns."""
        with self._lock:
            self._next += 1
            n = self._next
            self.pending[n] = ev
            if self._fd >= 0:
                self._write({"n": n, "e": ev.to_json()})
                if sync:
                    os.fdatasync(self._fd)
            return n

    def ack(self, n: int) -> None:
        with self._lock:
            if self.pending.pop(n, None) is None:
                return
            self._due.pop(n, None)
            self._tries.pop(n, None)
            if self._fd >= 0:
                self._write({"a": n})
                # at most every 2x the pending bytes appended: draining a backlog after an outage
                # rewrites the file a few times, not once per acknowledgement
                if self._size > max(OUTBOX_COMPACT_BYTES, 3 * self._live):
                    self._rewrite()

    def refused(self, n: int) -> tuple[float, int]:
        """The broker refused event ``n``: it is due again after a backoff; (that backoff, refusals of
        ``n`` so far)."""
        with self._lock:
            if n not in self.pending:
                return 0.0, 0
            tries = self._tries[n] = self._tries.get(n, 0) + 1
            self.refusals += 1
            wait = min(RETRY_FIRST_S * 2 ** (tries - 1), RETRY_MAX_S)
            self._due[n] = time.monotonic() + wait
            return wait, tries

    def due(self) -> list[tuple[int, Event]]:
        """The refused events whose backoff has passed (taken off the schedule: produced again now)."""
        now = time.monotonic()
        with self._lock:
            out = [(n, self.pending[n]) for n, t in self._due.items() if t <= now and n in self.pending]
            for n, _ev in out:
                del self._due[n]
            return out

    def next_due(self) -> float | None:
        """Seconds until the next refused event is due (None: none is)."""
        with self._lock:
            return max(0.0, min(self._due.values()) - time.monotonic()) if self._due else None

    def compact(self) -> None:
        """Make the pending events durable and drop the acknowledged ones (before a journal checkpoint
        passes the records whose notes hold them)."""
        with self._lock:
            if self._fd >= 0:
                self._rewrite()

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            self._rewrite()
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)
            self._lock_fd = -1
