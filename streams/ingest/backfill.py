"""Historical backfill: report files -> parse + NLP (process pool) -> an ``Output`` (the warehouse's
writer, or the reports topic).

The main process reads the files and cuts them into chunks of raw records; a pool of worker
processes parses each chunk (the same parsers as the live front doors), pseudonymises, runs the NLP
(``streams.handlers.analyze_report``, the worker's own logic) and applies the output's ``prepare``
(the warehouse: the stream sink's own row mapping); the main process writes the chunks *in order*
with the output (the warehouse: the stream sink's own ``write_rows``; ``radstream.backfill`` wires
it) and then records a checkpoint (per file: records done; totals). Only where records come from and
the checkpoint differ from the stream.

Resuming after a kill: the checkpoint holds the run's fixed time stamp, used as the events'
``received_time``, the NLP ``processed_time`` and the dead letters' time, so a chunk that was
written but not yet checkpointed is written again as identical rows, which the warehouse's
ReplacingMergeTree tables collapse: counts stay exact, nothing is duplicated.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from processors.ingest.fhir import parse_fhir
from processors.ingest.hl7v2 import parse_oru, split_batch
from processors.ingest.model import ParseError, ReportEvent
from processors.ingest.pseudonym import load_key, pseudonymise
from processors.ingest.records import ColumnMapping, csv_line, parse_csv_row, parse_jsonl_line, text_lines
from streams.config import IngestConfig, KafkaConfig, MlConfig, TopicsConfig
from streams.handlers import (
    TextDeid,
    analyze_and_deidentify,
    deidentify_report,
    findings_key,
    site_classifiers,
)
from streams.ingest.files import guess_format

STAGE = "backfill"
REFUSED_REASON = "Kafka refused the report for good (dead-lettered)"
CHECKPOINT_VERSION = 1


# --- reading raw records (main process) ---------------------------------------------------------

@dataclass
class RawFile:
    path: Path
    fmt: str
    header: list[str] = field(default_factory=list)  # CSV only


def iter_raw(f: RawFile) -> Iterator[tuple[int, Any, int]]:
    """(record number, payload, byte position reached) for each record; payloads are pickled to workers."""
    if f.fmt == "fhir" and f.path.suffix.lower() == ".json":  # one pretty-printed resource
        data = f.path.read_bytes()
        yield 1, data, len(data)
    elif f.fmt in ("jsonl", "fhir"):
        pos = 0
        with f.path.open("rb") as fh:
            for no, line in enumerate(fh, 1):
                pos += len(line)
                if line.strip():
                    yield no, line, pos
    elif f.fmt == "hl7":
        data = f.path.read_bytes()
        total = len(data)
        msgs = split_batch(data)
        for no, raw in enumerate(msgs, 1):
            yield no, raw, total * no // max(len(msgs), 1)
    elif f.fmt == "csv":
        with f.path.open("rb") as bfh:
            reader = csv.reader(text_lines(bfh))
            try:
                f.header = [h.strip() for h in next(reader)]
            except StopIteration:
                return
            no = 0
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    no += 1
                    yield no, ParseError(f"unreadable CSV row: {exc}"), bfh.tell()
                    continue
                no += 1
                if any(c.strip() for c in cells):
                    yield no, cells, bfh.tell()
    else:
        raise ValueError(f"unknown format {f.fmt!r}")


# --- the work of one chunk (worker process) ------------------------------------------------------

@dataclass
class Job:
    fmt: str
    name: str
    header: list[str]
    mapping: ColumnMapping
    site: str
    accession_field: str
    run_time: datetime
    nlp: bool
    key: bytes | None = field(repr=False)  # the pseudonym key: never in a repr, a log or a traceback
    items: list[tuple[int, Any]]
    # the output's mapping, applied here in the worker process (spreads its CPU): records by contract ->
    # what the output writes. A module-level function (pickled by reference).
    prepare: Prepare | None = None
    classifiers: tuple[str, ...] = ()  # site models (MlConfig.classifiers), as in the worker's NLP agent
    torch_threads: int = 1
    deid: TextDeid | None = field(default=None, repr=False)  # report text de-identification, as in the worker


Prepare = Callable[[dict[str, list[dict[str, Any]]]], Any]


@dataclass
class ChunkResult:
    reports: list[dict[str, Any]] = field(default_factory=list)  # records (when no ``prepare``)
    deidentified: list[dict[str, Any]] = field(default_factory=list)  # the same with de-identified text
    findings: list[dict[str, Any]] = field(default_factory=list)
    prepared: Any = None  # ``prepare``'s result for the chunk's records
    loaded: int = 0
    rejects: list[tuple[int, str, bytes]] = field(default_factory=list)  # (record no, reason, raw)
    last: int = 0
    nbytes: int = 0
    records: int = 0


def _parse(job: Job, payload: Any) -> list[ReportEvent]:
    if isinstance(payload, ParseError):
        raise payload
    if job.fmt == "jsonl":
        return [parse_jsonl_line(payload, job.mapping, site=job.site, received_time=job.run_time)]
    if job.fmt == "csv":
        return [parse_csv_row(job.header, payload, job.mapping, site=job.site, received_time=job.run_time)]
    if job.fmt == "hl7":
        return parse_oru(payload, site=job.site, accession_field=job.accession_field,
                         received_time=job.run_time).events
    if job.fmt == "fhir":
        return parse_fhir(payload, site=job.site, received_time=job.run_time)
    raise ValueError(f"unknown format {job.fmt!r}")


def _raw_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, list):
        return csv_line(payload)
    return b""


def process_chunk(job: Job) -> ChunkResult:
    """Parse (+ pseudonymise + NLP) one chunk. Runs in a worker process; never raises for bad input."""
    out = ChunkResult(records=len(job.items))
    # loaded once per worker process; a broken classifier config fails the run, as it fails the worker
    classifiers = site_classifiers(job.classifiers, job.torch_threads) if job.nlp and job.classifiers else []
    for no, payload in job.items:
        out.last = no
        try:
            events = _parse(job, payload)
        except ParseError as exc:
            out.rejects.append((no, exc.reason, _raw_bytes(payload)))
            continue
        for ev in events:
            rec = pseudonymise(ev, job.key).to_avro()
            deid_rec = None
            try:
                if job.nlp:
                    findings, deid_rec = analyze_and_deidentify(rec, job.run_time, classifiers, job.deid)
                    out.findings.append(findings)
                elif job.deid is not None:
                    deid_rec = deidentify_report(rec, job.deid)[0]
            except Exception as exc:  # a bug or bad text must not lose the report: reject with reason
                stage = "NLP" if job.nlp else "de-identification"
                out.rejects.append((no, f"{stage} failed: {type(exc).__name__}: {exc}", _raw_bytes(payload)))
                continue
            out.reports.append(rec)
            if deid_rec is not None:
                out.deidentified.append(deid_rec)
            out.loaded += 1
    if job.prepare is not None:
        # the original text only to its restricted table; the analysts' tables from the de-identified copy
        # (none without de-identification: private by default)
        out.prepared = job.prepare({"report_original": out.reports, "report_finalized": out.deidentified,
                                    "report_findings": out.findings})
        out.reports, out.deidentified, out.findings = [], [], []
    return out


def _warm_up() -> None:
    """Worker initializer: build the NLP engine once per process, before the first chunk."""
    try:
        from processors.nlp import get_engine

        get_engine()
    except Exception:
        pass


# --- checkpoint ----------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    path: Path
    run_time: datetime
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"read": 0, "loaded": 0, "rejected": 0})
    reasons: dict[str, int] = field(default_factory=dict)
    resumed: bool = False

    @classmethod
    def open(cls, path: Path, files: Sequence[Path], restart: bool) -> Checkpoint:
        if path.exists() and not restart:
            data = json.loads(path.read_text())
            if data.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"checkpoint {path} has an unknown version; use --restart")
            cp = cls(path, datetime.fromisoformat(data["run_time"]), data["files"], data["counts"],
                     data.get("reasons", {}), resumed=True)
            for f in files:
                st = cp.files.get(str(f.resolve()))
                if st and (st["size"] != f.stat().st_size or st["mtime_ns"] != f.stat().st_mtime_ns):
                    raise ValueError(f"{f} changed since the checkpoint {path} was written; use --restart")
            return cp
        return cls(path, datetime.now(UTC))

    def file_state(self, f: Path) -> dict[str, Any]:
        key = str(f.resolve())
        if key not in self.files:
            st = f.stat()
            self.files[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "done": 0, "finished": False}
        return self.files[key]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": CHECKPOINT_VERSION, "run_time": self.run_time.isoformat(),
                                   "files": self.files, "counts": self.counts, "reasons": self.reasons},
                                  indent=1))
        os.replace(tmp, self.path)


def default_checkpoint(state_dir: str | Path, paths: Sequence[Path], options: str) -> Path:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.resolve()).encode() + b"\0")
    h.update(options.encode())
    return Path(state_dir) / "backfill" / f"{h.hexdigest()[:16]}.json"


_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\b[A-Z]*\d[\w.-]*|for accession \S+|\(.*\)$")


def reason_kind(reason: str) -> str:
    """A reject reason without its record-specific values (for the summary's grouping)."""
    return _VARIABLE.sub("…", reason)[:120]


# --- the run -------------------------------------------------------------------------------------

@dataclass
class Summary:
    read: int
    loaded: int
    rejected: int
    reasons: dict[str, int]
    seconds: float
    rows: int
    resumed: bool
    checkpoint: Path
    files: int
    loaded_this_run: int

    @property
    def rate(self) -> float:
        """Reports loaded per second in this run (a resumed run counts only its own part)."""
        return self.loaded_this_run / self.seconds if self.seconds > 0 else 0.0


class Output:
    """Where finished chunks go, in order. ``prepare`` (optional, picklable) runs in the worker processes
    on each chunk's records; ``write`` gets the chunks' results and the dead letters, returns rows
    written."""

    name = "output"
    prepare: Prepare | None = None
    refused: Sequence[str] = ()  # the last write's records the destination refused for good (dead-lettered)

    def write(self, results: Sequence[ChunkResult], dead_letters: list[dict[str, Any]]) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class KafkaOutput(Output):
    """The reports topic (``--via-kafka``): the stream's worker does the NLP."""

    name = "kafka"

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig) -> None:
        from streams.ingest.publish import Publisher

        self.topics = topics
        self.pub = Publisher(kafka, topics, ingest, stage=STAGE)
        self.pub.key = None  # the workers pseudonymised already

    def write(self, results: Sequence[ChunkResult], dead_letters: list[dict[str, Any]]) -> int:
        from confluent_kafka import KafkaError, KafkaException, Message

        from streams import serde
        from streams.producer import REFUSED_FOR_GOOD, DeliveryError, produce, send_dead_letter

        # flush() == 0 says only that nothing is queued any more: a record the broker refused (too large,
        # not authorised, invalid) is not queued either. Its delivery report says so; without counting
        # those the chunk would be checkpointed as loaded and skipped by a rerun: lost.
        errors: list[str] = []
        # reports refused for good (over the message limit, invalid): (key, value, why). Sent again by a
        # rerun they would be refused again, and the run could never pass their batch: dead-lettered.
        refused: list[tuple[bytes | None, bytes, DeliveryError]] = []
        self.refused = []

        def done(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                return
            if msg.topic() == self.topics.reports and err.code() in REFUSED_FOR_GOOD:
                refused.append((msg.key(), msg.value() or b"", DeliveryError(err.str(), err.code())))
            else:
                errors.append(f"{msg.topic()}: {err.str()}")

        n = 0
        for res in results:
            for rec in res.reports:
                key = findings_key(rec)
                try:
                    produce(self.pub.producer, self.topics.reports, "report_finalized", key, rec,
                            on_delivery=done)
                except KafkaException as exc:  # over the producer's own limit: refused before sending
                    err = exc.args[0]
                    if err.code() not in REFUSED_FOR_GOOD:
                        raise
                    refused.append((key, serde.encode("report_finalized", rec),
                                    DeliveryError(err.str(), err.code())))
            n += len(res.reports)
        for dl in dead_letters:
            produce(self.pub.producer, self.topics.dead_letter, "dead_letter", dl.get("key"), dl,
                    on_delivery=done)
        self._confirm(self.pub.producer.flush(120), errors)
        if refused:
            # their dead letters (head of the report kept) are confirmed before the batch is checkpointed
            for dl_key, dl_value, why in refused:
                send_dead_letter(self.pub.producer, self.topics.dead_letter, STAGE, dl_value,
                                 f"{REFUSED_REASON}: {why}", on_delivery=done,
                                 topic=self.topics.reports, key=dl_key, error_type="DeliveryError")
            self._confirm(self.pub.producer.flush(120), errors, " (dead letters of refused reports)")
        self.refused = [f"{REFUSED_REASON}: {why}" for _, _, why in refused]
        return n - len(refused)

    @staticmethod
    def _confirm(left: int, errors: list[str], what: str = "") -> None:
        from streams.producer import DeliveryError

        if left or errors:
            shown = "; ".join(sorted(set(errors))[:3])
            raise DeliveryError(f"{left} records not confirmed and {len(errors)} refused by Kafka{what}"
                                + (f" ({shown})" if shown else "") + "; this batch is not checkpointed")

    def close(self) -> None:
        self.pub.producer.flush(30)


@dataclass
class _Run:
    ingest: IngestConfig
    ml: MlConfig
    files: list[RawFile]
    mapping: ColumnMapping
    site: str
    nlp: bool
    key: bytes | None = field(repr=False)
    cp: Checkpoint
    output: Output
    pool: ProcessPoolExecutor | None
    chunk_size: int
    max_inflight: int
    rejects: Any = None
    progress: Callable[[int, int, int], None] | None = None
    stop_after_chunks: int | None = None
    deid: TextDeid | None = field(default=None, repr=False)
    rows: int = 0
    chunks_done: int = 0
    bytes_base: int = 0
    stopped: bool = False
    write_batch: int = 2000
    pending: list[tuple[ChunkResult, int]] = field(default_factory=list)
    pending_reports: int = 0
    inflight: deque[tuple[Future[ChunkResult] | ChunkResult, int]] = field(default_factory=deque)

    def submit(self, f: RawFile, items: list[tuple[int, Any]], pos: int) -> None:
        job = Job(f.fmt, f.path.name, list(f.header), self.mapping, self.site,
                  self.ingest.accession_field, self.cp.run_time, self.nlp, self.key, items,
                  prepare=self.output.prepare, classifiers=tuple(self.ml.classifiers),
                  torch_threads=self.ml.torch_threads, deid=self.deid)
        self.inflight.append((self.pool.submit(process_chunk, job) if self.pool else process_chunk(job), pos))

    def drain(self, f: RawFile, state: dict[str, Any], limit: int) -> None:
        """Collect finished chunks in order until at most ``limit`` are in flight; write in batches."""
        while len(self.inflight) > limit and not self.stopped:
            fut, pos = self.inflight.popleft()
            res = fut.result() if isinstance(fut, Future) else fut
            self.pending.append((res, pos))
            self.pending_reports += res.loaded + len(res.rejects)
            self.chunks_done += 1
            last_chunk = self.stop_after_chunks is not None and self.chunks_done >= self.stop_after_chunks
            if self.pending_reports >= self.write_batch or limit == 0 and not self.inflight or last_chunk:
                self.flush(f, state)
            if last_chunk:
                self.stopped = True

    def flush(self, f: RawFile, state: dict[str, Any]) -> None:
        """Write the collected chunks (one insert per table), then checkpoint them."""
        if not self.pending:
            return
        cp = self.cp
        dls = [_dead_letter(f.path.name, no, reason, raw, cp.run_time)
               for res, _ in self.pending for no, reason, raw in res.rejects]
        self.rows += self.output.write([res for res, _ in self.pending], dls)
        for why in self.output.refused:  # dead-lettered by the output: rejected, not loaded
            self.count_reject(f.path.name, why)
            cp.counts["loaded"] -= 1
            cp.counts["rejected"] += 1
        for res, _ in self.pending:
            for no, reason, _raw in res.rejects:
                self.count_reject(f"{f.path.name}:{no}", reason)
            cp.counts["read"] += res.records
            cp.counts["loaded"] += res.loaded
            cp.counts["rejected"] += len(res.rejects)
            state["done"] = max(state["done"], res.last)
        cp.save()
        pos = self.pending[-1][1]
        self.pending.clear()
        self.pending_reports = 0
        if self.progress:
            self.progress(self.bytes_base + pos, cp.counts["read"], cp.counts["loaded"])

    def count_reject(self, where: str, reason: str) -> None:
        """Count a rejected record under its kind of reason, and list it in the rejects file."""
        kind = reason_kind(reason)
        self.cp.reasons[kind] = self.cp.reasons.get(kind, 0) + 1
        if self.rejects is not None:
            print(f"{where}\t{reason}", file=self.rejects)

    def load(self, f: RawFile) -> None:
        state = self.cp.file_state(f.path)
        if state["finished"]:
            self.bytes_base += state["size"]
            return
        items: list[tuple[int, Any]] = []
        pos = 0
        for no, payload, pos in iter_raw(f):
            if no <= state["done"]:
                continue
            items.append((no, payload))
            if len(items) >= self.chunk_size:
                self.submit(f, items, pos)
                items = []
                self.drain(f, state, self.max_inflight)
                if self.stopped:
                    return
        if items:
            self.submit(f, items, pos)
        self.drain(f, state, 0)
        if not self.stopped:
            self.flush(f, state)
            state["finished"] = True
            self.cp.save()
            self.bytes_base += state["size"]


def run_backfill(paths: Sequence[Path], output: Output, *, ingest: IngestConfig, ml: MlConfig,
                 state_dir: str | Path, fmt: str | None = None, mapping: ColumnMapping | None = None,
                 site: str | None = None, workers: int | None = None, chunk_size: int = 256,
                 checkpoint: Path | None = None, restart: bool = False, nlp: bool = True, rejects: Any = None,
                 progress: Callable[[int, int, int], None] | None = None,
                 stop_after_chunks: int | None = None, write_batch: int = 2000,
                 text_deid: TextDeid | None = None) -> Summary:
    """Load ``paths`` into ``output``; ``progress(bytes_done, records_done, loaded)`` after each chunk.

    Finished chunks are written together once ``write_batch`` records are collected (fewer,
    larger inserts: fewer parts to merge). ``workers=0`` parses in this process. ``nlp`` is off for an
    output that leaves the NLP to the stream (Kafka). ``stop_after_chunks`` ends the run early, leaving
    the checkpoint as a kill between two chunks would (tests). ``text_deid``: de-identify report text as
    the worker does (the warehouse output; the Kafka output leaves it to the worker).
    """
    mapping = mapping or ColumnMapping()
    site = site or ingest.site
    files = [RawFile(p, fmt or guess_format(p)) for p in paths]
    via_kafka = isinstance(output, KafkaOutput)  # in the checkpoint's identity as before
    opts = json.dumps([fmt, sorted(mapping.columns.items()), site, via_kafka, nlp], default=str)
    cp_path = checkpoint or default_checkpoint(state_dir, paths, opts)
    cp = Checkpoint.open(cp_path, paths, restart)
    key = load_key(ingest.pseudonym_key, ingest.pseudonym_key_file)
    workers = (os.cpu_count() or 1) if workers is None else workers
    do_nlp = nlp and not via_kafka
    # spawn, not fork: the parent may already hold chDB/librdkafka threads
    pool = (ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                initializer=_warm_up if do_nlp else None) if workers > 0 else None)
    t0 = time.monotonic()
    loaded_before = cp.counts["loaded"]
    run = _Run(ingest, ml, files, mapping, site, do_nlp, key, cp, output, pool, chunk_size,
               # keep the workers busy while the main process writes a batch
               2 * max(workers, 1) + write_batch // max(chunk_size, 1),
               rejects, progress, stop_after_chunks, deid=None if via_kafka else text_deid,
               write_batch=write_batch)
    try:
        for f in files:
            run.load(f)
            if run.stopped:
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=not run.stopped, cancel_futures=True)
        output.close()
    return Summary(cp.counts["read"], cp.counts["loaded"], cp.counts["rejected"], dict(cp.reasons),
                   time.monotonic() - t0, run.rows, cp.resumed, cp_path, len(files),
                   cp.counts["loaded"] - loaded_before)


def _dead_letter(name: str, no: int, reason: str, raw: bytes, when: datetime) -> dict[str, Any]:
    from streams.producer import dead_letter_record

    rec = dead_letter_record(STAGE, raw, reason, key=f"{name}:{no}".encode())
    rec["time"] = when
    return rec
