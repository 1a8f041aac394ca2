"""Which project an incoming study belongs to, and what the storage SCP did with each instance.

A C-MOVE names only a destination AE, so the storage SCP cannot tell the project from the
association. Before each C-MOVE the worker registers the expected Study Instance UID with its
project, request id and the project's store options (``sinks.dicom.projects.StoreOptions``:
identified or the de-identification options, burned-in risk allowed); the SCP applies these or the
project's current registration, whichever is stricter per option; the registration is withdrawn when
the request is final. Studies nobody registered go to the SCP's default project when one is
configured (manual ``movescu`` use; it must be a registered project), otherwise they are refused
(0x0124 not authorised). A study is moved for one project at a time (a worker serialises requests of
the same study).

Two ways, ``research.coordination``:

- ``"kafka"`` (default; worker and SCPs share nothing, any number of each on any hosts): ``publish`` /
  ``withdraw`` on the compacted ``topics.dicom_expected``, replayed by every SCP process
  (``ExpectedStudies``); outcomes are read back from the SCP's own events (``Outcomes``), and the
  worker's done-ledger is the status topic (``StatusLedger``).
- ``"files"`` (worker and SCP on one host sharing the store): ``Registry``, one file per study under
  ``<research_store>/.expected`` written atomically, and a per-request manifest of outcomes beside it.

A study UID or request id that is not safe in a file name is refused (``sinks.dicom.paths``) before it
becomes one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from processors.ingest.pseudonym import UID_IN_TEXT
from sinks.dicom.paths import UnsafeName, check_uid, is_token
from streams import serde
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record, run_in_thread
from streams.producer import DeliveryError, produce

LOG = logging.getLogger(__name__)
DIRNAME = ".expected"


@dataclass(frozen=True)
class Expectation:
    study_uid: str
    project_id: str
    request_id: str
    destination_ae: str
    since: float
    options: dict[str, Any] | None = None  # StoreOptions.to_dict() of the project; None: not given


class Expectations(Protocol):
    """What the storage SCP asks of the expectations: ``Registry`` (files, one host) or
    ``ExpectedStudies`` (the Kafka topic, any host)."""

    waits: bool  # lookup of an unknown study waits a moment for it (worth doing once per study)

    def stamp(self, study_uid: str) -> object: ...

    def lookup(self, study_uid: str) -> Expectation | None: ...

    def record(self, study_uid: str, request_id: str, sop_uid: str, outcome: str,
               reason: str = "") -> None: ...


class Registry:
    """Expectations and per-request manifests as files under the research store: worker and SCP on one
    host with the store shared (tests, single-host tools; ``research.coordination = "files"``)."""

    waits = False

    def __init__(self, store_dir: Path) -> None:
        self.dir = Path(store_dir) / DIRNAME
        # the registrations name original Study Instance UIDs: owner only, whatever the umask (the
        # store's group is its readers, the research team: they see de-identified files, not these)
        Path(store_dir).mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o700)
            os.chmod(self.dir, 0o700)
        except FileExistsError:  # one made before (0755/0750): take the group's and others' bits away
            with contextlib.suppress(OSError):  # not ours: its owner's choice
                mode = os.stat(self.dir).st_mode & 0o7777
                if mode & 0o077:
                    os.chmod(self.dir, mode & ~0o077)
        self._paths: dict[str, str] = {}  # study UID -> its registration file (pathlib per image is slow)

    def stamp(self, study_uid: str) -> int | None:
        """The registration file's mtime (None: no file); one stat."""
        reg = self._paths.get(study_uid)
        if reg is None:
            if len(self._paths) > 10000:
                self._paths.clear()
            reg = self._paths[study_uid] = str(self.path(study_uid))
        try:
            return os.stat(reg).st_mtime_ns
        except OSError:
            return None

    def path(self, study_uid: str) -> Path:
        return self.dir / f"{check_uid(study_uid, 'Study Instance UID')}.json"

    def register(self, study_uid: str, project_id: str, request_id: str, destination_ae: str,
                 options: dict[str, Any] | None = None) -> None:
        """Expect ``study_uid`` for ``project_id``; ``options``: the project's
        ``StoreOptions.to_dict()`` (without them the SCP looks the project up itself)."""
        data = {"study_uid": study_uid, "project_id": project_id, "request_id": request_id,
                "destination_ae": destination_ae, "since": time.time(), "options": options}
        tmp = self.dir / f".{check_uid(study_uid, 'Study Instance UID')}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an old temporary file keeps its mode
            os.write(fd, json.dumps(data).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path(study_uid))

    def lookup(self, study_uid: str) -> Expectation | None:
        try:
            data = json.loads(self.path(study_uid).read_text())
            return Expectation(**data)
        except (OSError, ValueError, TypeError):
            return None

    def release(self, study_uid: str, request_id: str) -> None:
        exp = self.lookup(study_uid)
        if exp is not None and exp.request_id == request_id:
            self.path(study_uid).unlink(missing_ok=True)

    # -- what the SCP did with each instance of a request (read by the worker to reconcile) ----------
    def manifest(self, study_uid: str, request_id: str) -> Path:
        rid = request_id or "none"
        if not is_token(rid):  # not from our CLI (a uuid): a stable name that is safe
            rid = "h" + hashlib.sha256(rid.encode()).hexdigest()[:32]
        return self.dir / f"{check_uid(study_uid, 'Study Instance UID')}.{rid}.received"

    def record(self, study_uid: str, request_id: str, sop_uid: str, outcome: str, reason: str = "") -> None:
        """Append one line (original SOP Instance UID, ``stored``/``quarantined``/``failed``, reason).

        Called by the SCP after the outcome is final (a stored file is durably in place). One short
        ``O_APPEND`` write per line, so lines of concurrent writers never interleave. The file lives in
        the clinical zone beside the registrations: it names original UIDs.
        """
        line = json.dumps({"sop": sop_uid, "outcome": outcome, "reason": reason}) + "\n"
        fd = os.open(self.manifest(study_uid, request_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def received(self, study_uid: str, request_id: str) -> dict[str, tuple[str, str]]:
        """Original SOP Instance UID -> (outcome, reason) of a request; the last line of a UID wins."""
        out: dict[str, tuple[str, str]] = {}
        try:
            text = self.manifest(study_uid, request_id).read_text()
        except OSError:
            return out
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            out[str(rec["sop"])] = (str(rec["outcome"]), str(rec.get("reason", "")))
        return out

    def forget(self, study_uid: str, request_id: str) -> None:
        self.manifest(study_uid, request_id).unlink(missing_ok=True)


# -- shared nothing: the same coordination through Kafka -------------------------------------------------
# The worker and the SCPs may run on different hosts. The worker publishes each expectation on the
# compacted ``topics.dicom_expected`` (``publish``; a tombstone once the request is final: ``withdraw``);
# every SCP process replays it (``ExpectedStudies``). What the SCP did with each instance is read back
# from the events it produces anyway (``Outcomes``): ``received_instance`` (stored; the request id rides
# in a record header) and ``quarantine_event`` (quarantined, with the request id and the reason). A
# ``failed`` instance has no event: for the reconciliation it is missing either way.

EXPECT_WAIT_S = 2.0  # how long an instance of a study not known yet waits for the topic to catch up
REQUEST_HEADER = "request_id"  # the header of a received_instance event naming the worker's request
STUDY_HEADER = "study"  # and its Study Instance UID as stored (the key is the SOP Instance UID as stored)


def _key(study_uid: str, request_id: str) -> bytes:
    return f"{study_uid}/{request_id}".encode()


def publish(producer: Producer, topics: TopicsConfig, study_uid: str, project_id: str, request_id: str,
            destination_ae: str, options: dict[str, Any] | None = None, wait: bool = True,
            timeout: float = 30.0) -> Callable[[], None]:
    """Expect ``study_uid`` for ``project_id``; returns once the broker has it (before the C-MOVE).

    ``wait=False``: returns once it is queued; the returned ``confirm()`` then waits for the broker
    (DeliveryError when it did not take it), so the worker lists the study's instances meanwhile."""
    check_uid(study_uid, "Study Instance UID")
    box: dict[str, Any] = {}

    def done(err: KafkaError | None, _msg: Message) -> None:
        box["err"] = err

    produce(producer, topics.dicom_expected, "dicom_expectation", _key(study_uid, request_id), {
        "study_instance_uid": study_uid, "project_id": project_id, "request_id": request_id,
        "destination_ae": destination_ae, "options": json.dumps(options) if options is not None else None,
        "time": datetime.now(UTC)}, on_delivery=done)
    producer.poll(0)

    def confirm() -> None:
        # poll, not flush: a flush also waits for everything else the producer holds (the tombstones
        # of the request just finished: 2-3 ms per study in bench/dicom_move.py)
        deadline = time.monotonic() + timeout
        while "err" not in box and (left := deadline - time.monotonic()) > 0:
            producer.poll(min(left, 0.1))
        if "err" not in box or box["err"] is not None:
            # the request id, not the PACS's study UID: the message reaches logs and status events
            raise DeliveryError(f"expectation of request {request_id} not delivered: {box.get('err')}")

    if wait:
        confirm()
    return confirm


def withdraw(producer: Producer, topics: TopicsConfig, study_uid: str, request_id: str) -> None:
    """The tombstone of a request's expectation (the request is final), queued: it leaves with the next
    expectation's ``confirm`` or the worker's final flush. Nothing waits for it: until it is read, an
    SCP only keeps filing that study for this request's project, as it did during the request; a
    delivery failure is logged (the study stays expected until the next registration of it)."""

    def done(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            LOG.error("tombstone of request %s's expectation not delivered: %s", request_id, err)

    while True:
        try:
            producer.produce(topics.dicom_expected, value=None, key=_key(study_uid, request_id),
                             on_delivery=done)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)


class ExpectedStudies(Handler):
    waits = True

    """The SCP's view of the expectations: the compacted topic replayed (a replaying consumer loop in a
    daemon thread, started on first use or by ``start``), so it needs no disk shared with the worker.

    ``lookup`` of a study not known yet waits up to ``wait_s`` for it: the worker publishes before its
    C-MOVE, but this process may be a moment behind. Several requests may expect one study at once
    (two workers); the latest registration wins, as the file of the single-host ``Registry`` did."""
    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, wait_s: float = EXPECT_WAIT_S,
                 load_timeout_s: float = 15.0) -> None:
        self.wait_s = wait_s
        self.load_timeout_s = load_timeout_s
        self._by_study: dict[str, dict[str, Expectation]] = {}
        self._gen: dict[str, int] = {}  # changes whenever a study's registrations change
        self._n = 0
        self._cv = threading.Condition()
        self._loop = ConsumerLoop(kafka, LoopConfig(
            group_id=f"{kafka.consumer_group}.dicom-expected", topics=[topics.dicom_expected],
            stage="dicom-expected", replay=True, poll_s=0.1, immediate=True), self)
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._start_lock = threading.Lock()
        self.loaded = self._loop.caught_up

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread, self._stop = run_in_thread(self._loop, "dicom-expected")

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(10)

    def stamp(self, study_uid: str) -> int | None:
        """A value that changes whenever the study's registrations change (None: none known)."""
        return self._gen.get(study_uid)

    def lookup(self, study_uid: str) -> Expectation | None:
        if self._thread is None:
            self.start()
            self.loaded.wait(self.load_timeout_s)
        with self._cv:
            self._cv.wait_for(lambda: bool(self._by_study.get(study_uid)), timeout=self.wait_s)
            exps = self._by_study.get(study_uid)
            return max(exps.values(), key=lambda e: e.since) if exps else None

    def record(self, study_uid: str, request_id: str, sop_uid: str, outcome: str, reason: str = "") -> None:
        """Nothing to write: the worker reads outcomes from the SCP's events (``Outcomes``)."""

    # -- the loop's Handler ------------------------------------------------------------------------
    def add(self, records: Sequence[Record], acks: Acks) -> None:
        for rec in records:
            self.apply(rec.value, rec.key)

    def apply(self, value: bytes | None, key: bytes | None) -> None:
        study, _, request = (key or b"").decode(errors="replace").partition("/")
        with self._cv:
            self._n += 1
            if value is None:  # tombstone: the request is final
                exps = self._by_study.get(study)
                if exps is not None and exps.pop(request, None) is not None:
                    self._gen[study] = self._n
                    if not exps:
                        del self._by_study[study]
                return
            try:
                rec = serde.decode("dicom_expectation", value)
                exp = Expectation(check_uid(rec["study_instance_uid"], "Study Instance UID"),
                                  rec["project_id"], rec["request_id"], rec["destination_ae"],
                                  rec["time"].timestamp(),
                                  json.loads(rec["options"]) if rec.get("options") else None)
            except (serde.SerdeError, UnsafeName, KeyError, TypeError, ValueError) as exc:
                # not the key nor the message: they name the study by its clinical UID
                LOG.error("ignoring an invalid expectation (%s)", type(exc).__name__)
                return
            self._by_study.setdefault(exp.study_uid, {})[exp.request_id] = exp
            self._gen[exp.study_uid] = self._n
            self._cv.notify_all()


class Follower:
    """Reads every partition of some topics in a daemon thread (no consumer group, commits nothing),
    from their beginning or from their end at ``start``; ``sync`` waits until everything the topics
    held when it was called has been handed to ``on_record(topic, value, headers)``."""

    def __init__(self, kafka: KafkaConfig, topics: Sequence[str], name: str, from_end: bool,
                 on_record: Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]]], None]
                 ) -> None:
        self.kafka, self.topics, self.name, self.from_end = kafka, list(topics), name, from_end
        self.on_record = on_record
        self._pos: dict[tuple[str, int], int] = {}
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self.failed: BaseException | None = None

    def _conf(self) -> dict[str, Any]:
        return {**self.kafka.client_conf(), "group.id": f"{self.kafka.consumer_group}.{self.name}",
                "enable.auto.commit": False, "enable.partition.eof": True,
                "logger": logging.getLogger("radstream.librdkafka")}

    def _highs(self, consumer: Consumer, timeout: float = 10.0) -> dict[tuple[str, int], tuple[int, int]]:
        meta = consumer.list_topics(timeout=timeout)
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in self.topics:
            for p in meta.topics[topic].partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        return out

    def start(self) -> None:
        """Assigns the partitions (at their end when ``from_end``) before it returns."""
        if self._thread is not None:
            return
        consumer = self._consumer = Consumer(self._conf())
        marks = self._highs(consumer)
        parts = [TopicPartition(t, p, high if self.from_end else OFFSET_BEGINNING)
                 for (t, p), (_low, high) in marks.items()]
        with self._cv:
            for (t, p), (low, high) in marks.items():
                self._pos[(t, p)] = high if self.from_end else low
        consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stop.is_set():
                # the first record at once (consume() would wait its whole timeout for a batch), then
                # what else is there
                first = consumer.poll(0.1)
                for msg in [first, *consumer.consume(500, 0)] if first is not None else []:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            self._advance(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))
                        else:
                            LOG.warning("%s: %s", self.name, err)
                        continue
                    topic, part, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
                    try:
                        pairs = cast(list[tuple[str, Any]], list(msg.headers() or ()))
                        headers = [(k, v) for k, v in pairs if isinstance(v, bytes)]
                        self.on_record(topic, msg.value(), msg.key(), headers)
                    except Exception as exc:  # one bad record must not stop the reading
                        # the class, not the message nor the traceback's: a decoding error may quote the
                        # record (the PACS's UIDs of a quarantine event); the offset finds it
                        LOG.error("%s: record %s[%d]@%d not read (%s)", self.name, topic, part, offset,
                                  type(exc).__name__)
                    self._advance(topic, part, offset + 1)
        except BaseException as exc:
            self.failed = exc
            # a broker's error says what happened; any UID in a message goes (``UID_IN_TEXT``)
            LOG.error("%s stopped: %s: %s", self.name, type(exc).__name__, UID_IN_TEXT.sub("[UID]", str(exc)))
        finally:
            consumer.close()

    def _advance(self, topic: str, partition: int, pos: int) -> None:
        with self._cv:
            if pos > self._pos.get((topic, partition), -1):
                self._pos[(topic, partition)] = pos
                self._cv.notify_all()

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until every record the topics hold now was read; False when ``timeout`` passed first."""
        probe = Consumer(self._conf())
        try:
            highs = {k: high for k, (_low, high) in self._highs(probe, timeout).items()}
        finally:
            probe.close()
        with self._cv:
            return self._cv.wait_for(lambda: all(self._pos.get(k, 0) >= h for k, h in highs.items()),
                                     timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


class Outcomes:
    """The worker's view of what the SCPs did with each instance of its requests, from their events:
    ``received_instance`` (stored; request id in the ``request_id`` header; UIDs as stored, i.e.
    keyed when de-identified) and ``quarantine_event`` (``quarantined``, original UIDs, reason).

    Read from the topics' end at ``start`` (a request redone after a restart is moved again, so its
    events come again); only the requests being watched (``watch``..``unwatch``) are kept in memory."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig) -> None:
        self.topics = topics
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every event of a watched request
        self._seq = 0
        # request id -> {SOP UID as in the event: (outcome, reason, seq)}; (request, study) -> events
        self._got: dict[str, dict[str, tuple[str, str, int]]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self.follower = Follower(kafka, [topics.received_instances, topics.quarantine], "dicom-outcomes",
                                 from_end=True, on_record=self._on_record)

    def start(self) -> None:
        self.follower.start()

    def stop(self) -> None:
        self.follower.stop()

    def watch(self, request_id: str) -> None:
        with self._lock:
            self._got.setdefault(request_id, {})

    def unwatch(self, request_id: str) -> None:
        with self._lock:
            self._got.pop(request_id, None)
            for k in [k for k in self._counts if k[0] == request_id]:
                del self._counts[k]

    def _on_record(self, topic: str, value: bytes | None, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> None:
        if value is None:
            return
        if topic == self.topics.quarantine:
            q = serde.decode("quarantine_event", value)
            if q["action"] != "quarantined":
                return
            rid, study, sop, outcome, reason = (str(q.get("request_id") or ""), q["study_instance_uid"],
                                                q["sop_instance_uid"], "quarantined", str(q["reason"] or ""))
        else:
            named = {k: v.decode() for k, v in headers if k in (REQUEST_HEADER, STUDY_HEADER)}
            rid = named.get(REQUEST_HEADER, "")
            with self._lock:
                if rid not in self._got:
                    return  # not one of ours: not even decoded
            if key and STUDY_HEADER in named:  # the key is the SOP Instance UID as stored
                study, sop = named[STUDY_HEADER], key.decode()
            else:
                r = serde.decode("received_instance", value)
                study, sop = r["study_instance_uid"], r["sop_instance_uid"]
            outcome, reason = "stored", ""
        with self._lock:
            got = self._got.get(rid)
            if got is None:
                return
            self._seq += 1
            if sop not in got:  # per instance: a repeated event (produced again, replayed) counts once
                self._counts[(rid, study)] = self._counts.get((rid, study), 0) + 1
            got[sop] = (outcome, reason, self._seq)
            self._changed.notify_all()

    def mark(self) -> int:
        """A position to ``wait`` from: take it before reading the counts it should wake on."""
        with self._lock:
            return self._seq

    def wait(self, mark: int, timeout: float) -> bool:
        """Until an event of a watched request came after ``mark`` (True) or ``timeout`` passed: the
        worker reconciles as soon as the last event is read, not at its next look."""
        with self._lock:
            return self._changed.wait_for(lambda: self._seq != mark, timeout)

    def count(self, request_id: str, studies: Sequence[str]) -> int:
        """Instances of the request with an event, of these studies (the study as stored and as the
        PACS knows it); an instance whose event came twice counts once."""
        with self._lock:
            return sum(self._counts.get((request_id, s), 0) for s in set(studies))

    def received(self, request_id: str, names: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, str]]:
        """{original SOP UID: (outcome, reason)} for the request; ``names``: original SOP UID -> the
        UIDs its events may carry (original, and as stored). The latest event of an instance wins."""
        with self._lock:
            got = dict(self._got.get(request_id, {}))
        out: dict[str, tuple[str, str]] = {}
        for sop, aliases in names.items():
            hits = [got[a] for a in aliases if a in got]
            if hits:
                outcome, reason, _ = max(hits, key=lambda h: h[2])
                out[sop] = (outcome, reason)
        return out


class StatusLedger:
    """Request ids that reached a final state, from the ``retrieval_status`` topic itself (replayed
    from its beginning, then followed), so that every DICOM worker of a consumer group, on any host,
    skips a request another one finished. ``done`` is only as current as the last ``sync``."""

    FINAL = ("completed", "partial", "failed", "cancelled")

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig) -> None:
        self.done: dict[str, str] = {}
        self._lock = threading.Lock()
        self.follower = Follower(kafka, [topics.retrieval_status], "dicom-ledger", from_end=False,
                                 on_record=self._on_record)

    def start(self) -> None:
        self.follower.start()

    def stop(self) -> None:
        self.follower.stop()

    def _on_record(self, _topic: str, value: bytes | None, _key: bytes | None,
                   _headers: list[tuple[str, bytes]]) -> None:
        if value is None:
            return
        rec = serde.decode("retrieval_status", value)
        if rec["state"] in self.FINAL:
            with self._lock:
                self.done[str(rec["request_id"])] = str(rec["state"])

    def sync(self, timeout: float = 10.0) -> None:
        """Read the topic up to its current end (what every worker finished until now)."""
        self.start()
        if not self.follower.sync(timeout):
            LOG.warning("the retrieval status topic was not read to its end within %.0f s", timeout)

    def add(self, request_id: str, state: str) -> None:
        """A final status this worker delivered (the topic has it; noted at once)."""
        with self._lock:
            self.done[request_id] = state
