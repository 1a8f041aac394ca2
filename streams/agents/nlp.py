"""The NLP agent: reports topic -> NLP (a child process) -> findings (and the de-identified text).

    reports --(whole text from the report's versions)--> NLP process --> reports.deidentified, findings

A handler of the one consumer loop (``streams.loop``). Batches are pipelined: while one is analysed in
the child process, the next is consumed and earlier results are sent, ``NLP_INFLIGHT`` batches at most;
results go out in input order. Each report is held until the broker acknowledged what it caused (its
findings or dead letter, and its version-history update), so no offset is committed past a report whose
output could be lost. A failed delivery stops the agent (the loop raises); its held reports come again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from confluent_kafka import Producer

from processors.ingest.versions import add_version, whole_text
from streams import metrics, serde
from streams.agents.outbox import Completion, Sent, send
from streams.agents.table import ChangelogTable
from streams.children import die_with_parent
from streams.config import MlConfig, TopicsConfig, WorkerConfig
from streams.handlers import Outcome, TextDeid, analyze_batch, findings_key, origin_headers, warm_up
from streams.loop import Acks, Handler, Record
from streams.producer import dead_letter_record

log = logging.getLogger("radstream.worker")

NLP_STAGE = "nlp-agent"
NLP_BATCH_WAIT_S = 0.02  # the loop's poll: how long a batch may wait to fill
NLP_INFLIGHT = 2  # batches handed to the NLP process and not yet emitted
NLP_REDO = 3  # fresh NLP processes a batch may kill before it is analysed one report at a time
VERSIONS_TABLE = "report-versions"


class NlpRunner:
    """The NLP of a batch, in a child process (the worker's second core) unless
    ``WorkerConfig.nlp_processes`` is 0 (then in the caller's thread).

    The children die with the worker (``die_with_parent``). A child that dies (killed, out of memory)
    breaks the pool and every batch in it: the pool is replaced (``replace``) and those batches are
    submitted again by the agent."""

    def __init__(self, worker: WorkerConfig, ml: MlConfig, deid: TextDeid | None = None) -> None:
        self.args = (tuple(ml.classifiers), ml.torch_threads, deid)
        self.processes = worker.nlp_processes
        self.replaced = 0  # children replaced after one died
        self.pool = self._new_pool() if self.processes > 0 else None

    def _new_pool(self) -> ProcessPoolExecutor:
        # the death signal follows the thread that starts the children (the loop's, which lives as long
        # as the agent); the pool starts them lazily, on the first submit, from that thread
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(signal.SIGKILL, os.getpid()))

    def submit(self, values: list[bytes | None], texts: list[str | None]) -> Future[list[Outcome]]:
        if self.pool is None:
            done: Future[list[Outcome]] = Future()
            done.set_result(analyze_batch(values, *self.args, texts))
            return done
        try:
            return self.pool.submit(analyze_batch, values, *self.args, texts)
        except BrokenProcessPool:  # a child died since the last batch: this one goes to a new pool
            self.replace()
            return self.pool.submit(analyze_batch, values, *self.args, texts)

    def warm(self) -> Future[bool] | None:
        """Start the NLP process and build its engine now (from the loop's thread, which the process's
        death signal follows); None without a process. The first batch then waits for neither."""
        if self.pool is None:
            return None
        return self.pool.submit(warm_up, *self.args[:2])

    def replace(self) -> None:
        """A child died: a new pool for the batches still to analyse."""
        if self.pool is not None:
            log.warning("an NLP process died; a new one replaces it")
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            self.replaced += 1

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _warm_failed(done: Future[bool]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("the NLP process could not build its engine or classifiers: %r", done.exception())


@dataclass
class _Batch:
    records: list[Record]
    done: Completion
    values: list[bytes | None]
    texts: list[str | None]
    future: Future[list[Outcome]]
    pool: ProcessPoolExecutor | None  # the pool it was submitted to (a broken one is replaced once)
    started: float = field(default_factory=time.perf_counter)
    attempts: int = 0
    singles: list[Outcome] | None = None  # after NLP_REDO broken pools: one report at a time


class NlpHandler(Handler):
    """Reports -> findings on the consumer loop (see the module docstring)."""

    def __init__(self, topics: TopicsConfig, runner: NlpRunner, producer: Producer,
                 versions: ChangelogTable) -> None:
        self.topics = topics
        self.runner = runner
        self.producer = producer
        self.versions = versions
        self._analysing: deque[_Batch] = deque()
        self._sent = Sent("NLP")  # emitted, waiting for the broker's acks
        self.warming: Future[bool] | None = None  # started at the first assignment (with a process)
        metrics.stage_started(NLP_STAGE, consumes=[topics.reports], produces=[topics.findings])

    # -- the loop's hooks ---------------------------------------------------------------------------------
    def add(self, records: Sequence[Record], acks: Acks) -> None:
        recs = list(records)
        done = Completion([acks.hold(r) for r in recs])
        texts = self.whole_texts(recs, done)
        values = [r.value for r in recs]
        self._analysing.append(_Batch(recs, done, values, texts, self.runner.submit(values, texts),
                                      self.runner.pool))

    def busy(self) -> bool:
        return len(self._analysing) >= NLP_INFLIGHT

    def tick(self) -> None:
        self.producer.poll(0)
        self._emit_ready()
        self._sent.check()

    def drain(self, partitions: Sequence[tuple[str, int]], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._analysing or self._sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._analysing)} batches in the NLP process and {len(self._sent)} "
                                   f"being delivered after {timeout_s:.0f} s")
            self.producer.poll(0.01)
            self._emit_ready()
            self._sent.check()

    def on_assign(self, partitions: Sequence[tuple[str, int]]) -> None:
        if self.warming is None:
            self.warming = self.runner.warm()  # a failure shows again, with its reason, in the first batch
            if self.warming is not None:
                self.warming.add_done_callback(_warm_failed)
        self.versions.restore(p for t, p in partitions if t == self.topics.reports)

    def on_revoke(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.versions.release(p for t, p in partitions if t == self.topics.reports)

    # -- versions -------------------------------------------------------------------------------------------
    def whole_texts(self, records: list[Record], done: Completion) -> list[str | None]:
        """Each report's whole text (``processors.ingest.versions``: the report and its addenda), from its
        version history, which each report updates first (written to the changelog; ``done`` waits for
        it). Re-applying a version is a no-op, so a report consumed again gives the same text. None for
        a message that does not decode (the NLP process dead-letters it with the reason) and for a version
        older than what the history still holds (the message's own text is analysed)."""
        out: list[str | None] = []
        for rec in records:
            try:
                report = serde.decode("report_finalized", rec.value)
                key = findings_key(report)
            except Exception:  # bad input is the NLP process's to reject, with its reason
                out.append(None)
                continue
            before = self.versions.get(rec.partition, key) or []
            history = add_version(before, int(report["version"]), report["status"], report.get("text") or "")
            if history != before:
                self.versions.put(rec.partition, key, history, done.callback())
            version = int(report["version"])
            # a version older than the history's base (a redelivery, or a late older version) was pruned
            # from it: its whole text is not known here, and "" would replace the good results
            held = any(int(str(e[0])) == version for e in history)
            out.append(whole_text(history, version) if held else None)
        return out

    # -- results, in input order ----------------------------------------------------------------------------
    def _emit_ready(self) -> None:
        while self._analysing:
            batch = self._analysing[0]
            outcomes = self._outcomes(batch)
            if outcomes is None:
                return
            self._analysing.popleft()
            metrics.NLP_SECONDS.observe(time.perf_counter() - batch.started)
            metrics.NLP_REPORTS.inc(len(batch.records))
            self._emit(batch, outcomes)

    def _outcomes(self, batch: _Batch) -> list[Outcome] | None:
        """The batch's results once they are there; a broken pool is replaced and the batch redone."""
        if not batch.future.done():
            return None
        try:
            result = batch.future.result()
        except (BrokenProcessPool, CancelledError):  # cancelled: queued in a pool replaced for a broken one
            if self.runner.pool is batch.pool:  # the other batches of the pool find it replaced already
                self.runner.replace()
            return self._redo(batch)
        if batch.singles is None:
            return result
        batch.singles += result
        return self._next_single(batch)

    def _redo(self, batch: _Batch) -> list[Outcome] | None:
        batch.attempts += 1
        if batch.singles is not None:  # this report killed a fresh process on its own
            batch.singles.append(Outcome(error_type="NlpProcessDied",
                                         error="the NLP process died analysing this report"))
            return self._next_single(batch)
        if batch.attempts < NLP_REDO:
            log.warning("an NLP process died; analysing its batch of %d again in a new one (%d/%d)",
                        len(batch.records), batch.attempts, NLP_REDO)
            batch.future, batch.pool = self.runner.submit(batch.values, batch.texts), self.runner.pool
            return None
        log.warning("a batch of %d killed %d NLP processes: analysing it one report at a time",
                    len(batch.records), NLP_REDO)
        batch.singles = []
        return self._next_single(batch)

    def _next_single(self, batch: _Batch) -> list[Outcome] | None:
        assert batch.singles is not None
        i = len(batch.singles)
        if i == len(batch.records):
            return batch.singles
        batch.future = self.runner.submit([batch.values[i]], [batch.texts[i]])
        batch.pool = self.runner.pool
        return None

    def _emit(self, batch: _Batch, outcomes: list[Outcome]) -> None:
        findings = self.topics.findings
        for rec, out in zip(batch.records, outcomes, strict=True):
            if out.value is None:
                log.warning("dead-letter %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, out.error)
                dead = dead_letter_record(NLP_STAGE, rec.value, out.error or "", topic=rec.topic,
                                          partition=rec.partition, offset=rec.offset, key=rec.key,
                                          error_type=out.error_type or "Rejected")
                send(self.producer, self.topics.dead_letter, rec.key, serde.encode("dead_letter", dead),
                     batch.done)
                continue
            origin = rec.timestamp_ms / 1000 if rec.timestamp_ms else None
            headers = origin_headers(origin, rec.headers)
            if out.deidentified is not None:  # the analysts' copy of the report, before its findings
                send(self.producer, self.topics.reports_deidentified, out.key, out.deidentified, batch.done,
                     headers)
            # the origin header lets the sink's deadline count from the report
            send(self.producer, findings, out.key, out.value, batch.done, headers)
            metrics.RECORDS_OUT.labels(NLP_STAGE, findings).inc()
            if origin:  # the report's production -> its findings handed to the producer
                metrics.NLP_LATENCY.observe(max(0.0, time.time() - origin))
        batch.done.seal()
        self._sent.append(batch.done)
