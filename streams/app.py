"""The Faust application: the NLP agent and the standing-cohort agent.

    reports topic --(nlp agent: processors.nlp in a child process)--> findings topic
    findings topic --(cohort agent: processors.cohort)--> retrieval requests topic

The process around it (``radstream.worker``) adds the warehouse sink, the embedding writer and the
read-only SQL page as services of this app; nothing here knows about them.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import mode

from processors.cohort.decide import decide
from processors.ingest.versions import add_version, whole_text
from streams import metrics, serde
from streams.children import die_with_parent
from streams.cohort import WatchRegistry
from streams.config import KafkaConfig, MlConfig, TopicsConfig, WorkerConfig
from streams.handlers import Outcome, TextDeid, analyze_batch, findings_key, origin_headers
from streams.logs import rate_limit_root_handlers
from streams.producer import dead_letter_record

log = logging.getLogger("radstream.worker")

NLP_STAGE = "nlp-agent"
COHORT_STAGE = "cohort-agent"  # names the standing-cohort agent in metrics
NLP_BATCH_WAIT_S = 0.02
WORKER_EXIT_AFTER_S = 30.0  # after the NLP pipeline failed, if the worker has not stopped by then
NLP_INFLIGHT = 2  # batches handed to the NLP process and not yet emitted
NLP_REDO = 3  # fresh NLP processes a batch may kill before it is analysed one report at a time


class NlpRunner:
    """The NLP of a batch, in a child process (the worker's second core) unless
    ``WorkerConfig.nlp_processes`` is 0; the event loop stays free for Kafka and the sink.

    The children die with the worker (``die_with_parent``). A child that dies (killed, out of memory)
    breaks the pool and every batch in it: the pool is replaced and those batches are analysed again
    (the worker streams on; nothing of them was sent yet). A batch that kills ``NLP_REDO`` fresh
    children in a row is analysed one report at a time, and a report that kills a child on its own is
    dead-lettered instead of stopping the stream."""

    def __init__(self, worker: WorkerConfig, ml: MlConfig, deid: TextDeid | None = None) -> None:
        self.args = (tuple(ml.classifiers), ml.torch_threads, deid)
        self.processes = worker.nlp_processes
        self.replaced = 0  # children replaced after one died
        self.pool = self._new_pool() if self.processes > 0 else None

    def _new_pool(self) -> ProcessPoolExecutor:
        # children are started by the submitting thread, the event loop's (the main thread): the death
        # signal follows that thread, which lives as long as the worker
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(signal.SIGKILL, os.getpid()))

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self.pool is broken:  # the other batches in the broken pool find it replaced already
            broken.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            self.replaced += 1

    async def _in_child(self, values: list[bytes | None], texts: list[str | None]) -> list[Outcome]:
        pool = self.pool
        assert pool is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, analyze_batch, values, *self.args,
                                                                    texts)
        except BrokenProcessPool:
            self._replace(pool)
            raise

    async def run(self, values: list[bytes | None], texts: list[str | None]) -> list[Outcome]:
        started = time.perf_counter()
        if self.pool is None:
            out = analyze_batch(values, *self.args, texts)
        else:
            out = await self._redone(values, texts)
        metrics.NLP_SECONDS.observe(time.perf_counter() - started)
        metrics.NLP_REPORTS.inc(len(values))
        return out

    async def _redone(self, values: list[bytes | None], texts: list[str | None]) -> list[Outcome]:
        for attempt in range(NLP_REDO):
            try:
                return await self._in_child(values, texts)
            except BrokenProcessPool:
                log.warning("an NLP process died; analysing its batch of %d again in a new one (%d/%d)",
                            len(values), attempt + 1, NLP_REDO)
        out: list[Outcome] = []
        for value, text in zip(values, texts, strict=True):
            try:
                out += await self._in_child([value], [text])
            except BrokenProcessPool:
                out.append(Outcome(error_type="NlpProcessDied",
                                   error="the NLP process died analysing this report"))
        return out


def whole_texts(table: Any, events: list[faust.EventT]) -> list[str | None]:
    """Each report's whole text (``processors.ingest.versions``), from the report's version history in
    ``table`` (keyed like the reports topic, one entry per report), which each report updates first.

    The table is Faust's changelogged state: its update goes to the changelog partition of the event's
    own partition, as Faust's ``table[key] = value`` does in a stream of single events. Re-applying a
    version is a no-op, so a report consumed again after a crash (at-least-once) gives the same text.
    None for a message that does not decode (the NLP process dead-letters it).
    """
    out: list[str | None] = []
    for event in events:
        try:
            report = serde.decode("report_finalized", event.value)
            key = findings_key(report)
        except Exception:  # bad input is the NLP process's to reject, with its reason
            out.append(None)
            continue
        history = add_version(table.data.get(key) or [], int(report["version"]), report["status"],
                              report.get("text") or "")
        if history != table.data.get(key):
            table.data[key] = history
            table.send_changelog(event.message.partition, key, history)
        out.append(whole_text(history, int(report["version"])))
    return out


def _cohorts(app: faust.App, kafka: KafkaConfig, topics: TopicsConfig, findings: faust.TopicT,
             allowed_destinations: tuple[str, ...], replicated: dict[str, str]) -> None:
    """Standing cohorts: each new report version's findings -> retrieval requests (or cancels)."""
    registry = WatchRegistry(kafka, topics)
    requests = app.topic(topics.retrieval_requests, key_type=bytes, value_type=bytes)
    # per report (site|accession): {project|destination: {request_id, matched, version}}
    state = app.Table("cohort-state", default=dict, partitions=kafka.partitions,
                      schema=faust.Schema(key_serializer="raw", value_serializer="json"),
                      extra_topic_configs=replicated)
    allowed = set(allowed_destinations)

    @app.service
    class _Watches(mode.Service):
        async def on_start(self) -> None:
            registry.start()

        async def on_stop(self) -> None:
            await asyncio.get_running_loop().run_in_executor(None, registry.stop)

    @app.agent(findings)
    async def cohort_agent(stream: faust.StreamT) -> None:
        # evaluate nothing before every registered watch is known
        await asyncio.get_running_loop().run_in_executor(None, registry.loaded.wait, 60.0)
        async for event in stream.events():
            watches = registry.current()
            if not watches or event.key is None:
                continue
            try:
                record = serde.decode("report_findings", event.value)
            except serde.SerdeError:
                continue  # the ClickHouse sink dead-letters undecodable findings
            new_state, out = decide(record, watches, state[event.key], datetime.now(UTC))
            for req in out:
                if req["destination_ae"] not in allowed:
                    log.error("cohort %s: destination %s not allowed", req["project_id"],
                              req["destination_ae"])
                    continue
                await requests.send(key=req["request_id"].encode(),
                                    value=serde.encode("retrieval_requested", req))
                metrics.RECORDS_OUT.labels(COHORT_STAGE, topics.retrieval_requests).inc()
            if new_state != state[event.key]:
                state[event.key] = new_state


def _drop_spinner_debug_level() -> None:
    """``faust.Worker`` sets the root logger to DEBUG for its start-up spinner, whatever the log level
    asked for; every ``log.debug`` in aiokafka and Faust (several per message sent) then builds a
    LogRecord that the handlers throw away. Back to the handlers' own (lowest) level."""
    from faust.utils.terminal.spinners import SpinnerHandler

    root = logging.getLogger()
    levels = [h.level for h in root.handlers if not isinstance(h, SpinnerHandler)]
    if levels and root.level < min(levels):
        root.setLevel(min(levels))


def faust_credentials(kafka: KafkaConfig) -> Any:
    """The broker credentials of ``KafkaConfig`` for Faust (aiokafka); None for PLAINTEXT."""
    import ssl

    protocol = kafka.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    ctx = None
    if protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
        if kafka.ssl_certfile:
            ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=kafka.sasl_username, password=kafka.password(),
                                     mechanism=kafka.sasl_mechanism or "PLAIN", ssl_context=ctx)
    return faust.SSLCredentials(ctx)


def create_app(kafka: KafkaConfig, topics: TopicsConfig, worker: WorkerConfig, ml: MlConfig, *,
               allowed_destinations: tuple[str, ...], datadir: Path,
               text_deid: TextDeid | None = None, instance_id: str | None = None,
               replication: tuple[int, dict[str, str]] = (1, {})) -> faust.App:
    """The Faust app of the worker process. ``allowed_destinations``: where standing cohorts may send
    studies; ``datadir``: Faust's own state (created); ``text_deid``: the NLP agent also de-identifies
    each report's text (to ``topics.reports_deidentified``) and points the findings into it. Without it
    nothing goes to that topic, so the analysts' report tables get no text at all (private by default).
    ``instance_id``: the consumer's ``group.instance.id`` (``streams.membership``; None: dynamic);
    ``replication``: replication factor and topic config of the tables' changelog topics
    (``streams.topics.replication``)."""
    datadir.mkdir(parents=True, exist_ok=True)
    replicas, replicated = replication
    app = faust.App(
        f"{kafka.consumer_group}-worker",
        broker=f"kafka://{kafka.bootstrap}",
        broker_credentials=faust_credentials(kafka),
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        topic_disable_leader=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # messages sent while processing an event are attached to its offset and published when
        # that offset is committed; the commit waits for their acks (at-least-once without a
        # round trip per event), so commit often to keep the feed's latency low
        stream_publish_on_commit=True,
        broker_commit_interval=0.1,
        web_enabled=False,  # the process serves its pages itself (radstream.worker)
        # a restarted worker gets its partitions back at once under its static id; a dead one without
        # a successor is out after the session timeout (Faust's default: 60 s)
        consumer_group_instance_id=instance_id,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.heartbeat_s,
        topic_replication_factor=replicas,
    )
    reports = app.topic(topics.reports, key_type=bytes, value_type=bytes)
    findings = app.topic(topics.findings, key_type=bytes, value_type=bytes)
    dead_letters = app.topic(topics.dead_letter, key_type=bytes, value_type=bytes)

    async def reject(event: faust.EventT, error: str, error_type: str) -> Awaitable[Any]:
        msg = event.message
        log.warning("dead-letter %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, error)
        rec = dead_letter_record(NLP_STAGE, msg.value, error, topic=msg.topic, partition=msg.partition,
                                 offset=msg.offset, key=msg.key, error_type=error_type)
        return await dead_letters.send(key=msg.key, value=serde.encode("dead_letter", rec))

    nlp = NlpRunner(worker, ml, text_deid)
    metrics.stage_started(NLP_STAGE, consumes=[topics.reports], produces=[topics.findings])
    # per report (site|accession): its versions since the last report that is not an addendum
    versions = app.Table("report-versions", default=list, partitions=kafka.partitions,
                         key_type=bytes, extra_topic_configs=replicated)  # bytes keys go raw, values as JSON

    @app.service
    class _LogLevel(mode.Service):
        async def on_started(self) -> None:  # after the Worker configured logging
            _drop_spinner_debug_level()
            rate_limit_root_handlers()  # a broker restart: one line per kind of reconnect error per 10 s

    @app.agent(reports)
    async def nlp_agent(stream: faust.StreamT) -> None:
        """Micro-batches of reports -> NLP (child process) -> findings, as a pipeline: while one batch
        is analysed, the next is consumed and earlier findings are sent (``NLP_INFLIGHT`` batches in
        the NLP process at most). Findings go out in input order. Each event is held (an extra
        reference on its message) until the broker acknowledged its findings (or dead letter); only
        then is it acked, so no offset is committed past a report whose output was not delivered. A
        failed delivery or NLP process fails the agent: its unacked events are consumed again."""
        inflight: asyncio.Queue[tuple[list[faust.EventT], asyncio.Future[list[Outcome]]]] = asyncio.Queue(
            maxsize=NLP_INFLIGHT)
        sent: asyncio.Queue[tuple[list[faust.EventT], list[Awaitable[Any]]]] = asyncio.Queue(maxsize=8)

        async def emit() -> None:
            # Faust's producer directly: Topic.send adds a FutureMessage, sensor calls and a callback
            # per message on top of the same producer call (a tenth of the event loop at max rate)
            producer = await app.maybe_start_producer()
            topic = topics.findings
            while True:
                events, pending = await inflight.get()
                outcomes = await pending
                acks: list[Awaitable[Any]] = []
                for event, out in zip(events, outcomes, strict=True):
                    msg = event.message
                    if out.value is None:
                        acks.append(await reject(event, out.error or "", out.error_type or "Rejected"))
                        continue
                    headers = origin_headers(msg.timestamp, msg.headers)
                    if out.deidentified is not None:  # the analysts' copy of the report, before its findings
                        acks.append(await producer.send(topics.reports_deidentified, out.key,
                                                        out.deidentified, None, None, headers))
                    # the origin header lets the sink's deadline count from the report
                    acks.append(await producer.send(topic, out.key, out.value, None, None, headers))
                    metrics.RECORDS_OUT.labels(NLP_STAGE, topic).inc()
                    if msg.timestamp:  # the report's production -> its findings handed to the producer
                        metrics.NLP_LATENCY.observe(max(0.0, time.time() - msg.timestamp))
                await sent.put((events, acks))

        async def confirm() -> None:
            while True:
                events, acks = await sent.get()
                await asyncio.gather(*acks)  # a failed delivery raises here: these stay unacked
                for event in events:
                    await stream.ack(event)  # the reference taken below: now committable

        helpers = [asyncio.ensure_future(emit()), asyncio.ensure_future(confirm())]
        try:
            batches = stream.take_events(  # type: ignore[attr-defined]
                max(1, worker.nlp_batch), within=NLP_BATCH_WAIT_S)
            async for events in batches:
                for event in events:
                    event.message.incref()  # take_events acks these when we ask for the next batch
                metrics.RECORDS_IN.labels(NLP_STAGE, topics.reports).inc(len(events))
                texts = whole_texts(versions, list(events))
                item = (list(events), asyncio.ensure_future(nlp.run([e.value for e in events], texts)))
                put = asyncio.ensure_future(inflight.put(item))
                await asyncio.wait((put, *helpers), return_when=asyncio.FIRST_COMPLETED)
                failed = [h for h in helpers if h.done()]
                if failed:  # the NLP process died or a delivery failed: the worker stops (as Faust's
                    put.cancel()  # consumer does when a send fails); its unacked reports come again
                    exc = failed[0].exception() or RuntimeError("NLP pipeline stopped")
                    log.error("NLP pipeline failed, stopping the worker: %r", exc)
                    # a shutdown that hangs must not keep a worker alive that processes nothing
                    watchdog = threading.Timer(WORKER_EXIT_AFTER_S, os._exit, args=(70,))
                    watchdog.daemon = True  # a worker that does stop is not held up by it
                    watchdog.start()
                    await app.crash(exc)
                    await asyncio.Event().wait()  # until the shutdown cancels us (a raise would restart us)
        finally:
            for helper in helpers:
                helper.cancel()

    _cohorts(app, kafka, topics, findings, allowed_destinations, replicated)
    return app
