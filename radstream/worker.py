"""The worker process, wired from its parts: the stream agents (NLP and standing cohorts, each on the one
consumer loop in a thread), the warehouse sink's loop, the embedding writer (``ml.embed``) and the
read-only SQL page with the process's metrics and probes.

    reports topic --(nlp agent: de-identify, NLP)--> reports.deidentified + findings topics
    findings topic --(cohort agent)--> retrieval requests
    every stored topic --(sink loop, thread)--> ClickHouse  <--  POST /sql (read-only)
    reports.deidentified topic --(embedding loop, thread; [ml])--> report_embeddings

In embedded mode (``chdb://``) only one process may open the store, so the worker owns it and the
embedding writer writes through a client on the sink's engine.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from radstream import access
from radstream.config import Settings
from radstream.text_deid import text_deid
from sinks.clickhouse.service import SinkService
from sinks.clickhouse.web import SqlServer
from streams.agents import AgentGroups, Agents
from streams.loop import run_in_thread
from streams.membership import group_instance_id
from streams.ops import kafka_check

log = logging.getLogger("radstream.worker")


def agent_groups(settings: Settings) -> AgentGroups:
    """The agents' consumer groups and this process's static member id in each."""
    app = f"{settings.kafka.consumer_group}-worker"
    groups = AgentGroups(app)
    groups.nlp_instance = group_instance_id(settings.worker, settings.state_dir, app)
    groups.cohort_instance = group_instance_id(settings.worker, settings.state_dir, groups.cohort)
    return groups


class Worker:
    """``start()``, then ``failed()`` while it runs, then ``stop()``."""

    def __init__(self, settings: Settings, with_sink: bool = True) -> None:
        self.settings = settings
        kafka = settings.kafka
        self.agents = Agents(kafka, settings.topics, settings.worker, settings.ml, agent_groups(settings),
                             settings.research.allowed_destinations, text_deid(settings),
                             state_dir=settings.state_dir)
        self.sink = SinkService(kafka, settings.topics, settings.clickhouse,
                                consumer_conf=sink_consumer_conf(settings)) if with_sink else None
        self.server = SqlServer(self.sink, settings.worker.web_host, settings.worker.web_port,
                                gate=access.gate(settings, "sql-page"), tls=access.tls(settings),
                                roles_dir=access.roles_dir(settings),
                                checks={"kafka": kafka_check(settings.kafka)})
        self._embeddings: dict[str, Any] = {}

    def start(self) -> None:
        self.server.start()
        if self.sink is not None:
            self.sink.start()
        self.agents.start()
        if self.settings.ml.embed:
            self._start_embeddings()

    def failed(self) -> str | None:
        """Why a part stopped on its own; None while everything runs."""
        why = self.agents.failed()
        if why is None and self.sink is not None and self.sink.thread is not None \
                and not self.sink.thread.is_alive():
            why = f"the warehouse sink stopped: {self.sink.error!r}"
        return why

    def stop(self) -> None:
        self.agents.stop()
        if "loop" in self._embeddings:
            thread, stop = self._embeddings.pop("loop")
            stop.set()
            thread.join(30)
        if "client" in self._embeddings:
            self._embeddings.pop("client").close()
        if self.sink is not None:
            self.sink.stop()
        self.server.stop()

    def _start_embeddings(self) -> None:
        """Similar-report search: the embedding writer's loop in a thread, writing through a client on the
        sink's engine (chDB: one process owns the store) or a client of its own without the sink."""
        from sinks.clickhouse.client import client_like, open_client
        from sinks.clickhouse.embeddings import EmbedWorker, clickhouse_writer, embed_loop

        settings, sink = self.settings, self.sink
        if sink is None:
            client = open_client(settings.clickhouse)
        else:
            deadline = time.monotonic() + 120
            while not sink.opened.wait(0.1) and time.monotonic() < deadline:
                pass  # the sink thread opens (retrying) and migrates the store first
            if not sink.opened.is_set():
                raise RuntimeError(f"the ClickHouse sink did not start: {sink.error!r}")
            client = client_like(sink.client)
        worker = EmbedWorker(clickhouse_writer(client, settings.clickhouse.database),
                             threads=settings.ml.torch_threads)
        self._embeddings["client"] = client
        self._embeddings["loop"] = run_in_thread(embed_loop(settings.kafka, settings.topics, worker), "embed")


def run(worker: Worker, stop: threading.Event) -> str | None:
    """Run until ``stop`` is set or a part fails; returns why it failed (None: stopped)."""
    worker.start()
    why = None
    try:
        while not stop.wait(0.5):
            why = worker.failed()
            if why is not None:
                log.error("%s; stopping the worker (its uncommitted reports come again)", why)
                break
    finally:
        worker.stop()
    return why


def sink_consumer_conf(settings: Settings) -> dict[str, Any]:
    """The warehouse sink's session settings: the worker's own (its group.instance.id is the sink's:
    ``sinks.clickhouse.sink.static_instance_id``)."""
    return {"session.timeout.ms": int(settings.worker.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.worker.heartbeat_s * 1000)}
