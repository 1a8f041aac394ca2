"""The worker process, wired from its parts: the Faust app (NLP and standing-cohort agents), the
warehouse sink's consumer loop, the embedding writer (``ml.embed``) and the read-only SQL page.

    reports topic --(nlp agent: de-identify, NLP)--> reports.deidentified + findings topics
    findings topic --(cohort agent)--> retrieval requests
    every stored topic --(sink loop, thread)--> ClickHouse  <--  POST /sql (read-only)
    reports.deidentified topic --(embedding loop, thread; [ml])--> report_embeddings

In embedded mode (``chdb://``) only one process may open the store, so the worker owns it and the
embedding writer writes through a client on the sink's engine.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import faust
import mode

from radstream import access
from radstream.config import Settings
from radstream.text_deid import text_deid
from sinks.clickhouse.service import SinkService
from sinks.clickhouse.web import SqlServer
from streams.app import create_app
from streams.loop import run_in_thread
from streams.membership import group_instance_id
from streams.metrics import GroupLag
from streams.ops import kafka_check
from streams.topics import cluster_replication


def build_worker(settings: Settings, with_sink: bool = True) -> faust.App:
    """The worker's Faust app with the sink, the embedding writer and the SQL page as its services."""
    kafka = settings.kafka
    app = create_app(kafka, settings.topics, settings.worker, settings.ml,
                     allowed_destinations=settings.research.allowed_destinations,
                     datadir=Path(settings.state_dir) / "faust", text_deid=text_deid(settings),
                     instance_id=group_instance_id(settings.worker, settings.state_dir,
                                                   f"{kafka.consumer_group}-worker"),
                     replication=cluster_replication(kafka))
    sink = SinkService(kafka, settings.topics, settings.clickhouse,
                       consumer_conf=sink_consumer_conf(settings)) if with_sink else None
    server = SqlServer(sink, settings.worker.web_host, settings.worker.web_port,
                       gate=access.gate(settings, "sql-page"), tls=access.tls(settings),
                       roles_dir=access.roles_dir(settings), checks={"kafka": kafka_check(settings.kafka)})

    @app.service
    class _Warehouse(mode.Service):
        async def on_start(self) -> None:
            server.start()
            if sink is not None:
                sink.start()

        async def on_stop(self) -> None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, server.stop)
            if sink is not None:
                await loop.run_in_executor(None, sink.stop)

    # the lag of the Faust agents' group (the sink's loop reports its own)
    lag = GroupLag(settings.kafka, str(app.conf.id), [settings.topics.reports, settings.topics.findings])

    @app.service
    class _Lag(mode.Service):
        async def on_start(self) -> None:
            lag.start()

        async def on_stop(self) -> None:
            await asyncio.get_running_loop().run_in_executor(None, lag.stop)

    if settings.ml.embed:
        _embeddings(app, settings, sink)
    return app


def sink_consumer_conf(settings: Settings) -> dict[str, Any]:
    """The warehouse sink's session settings: the worker's own (its group.instance.id is the sink's:
    ``sinks.clickhouse.sink.static_instance_id``)."""
    return {"session.timeout.ms": int(settings.worker.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.worker.heartbeat_s * 1000)}


def _embeddings(app: faust.App, settings: Settings, sink: SinkService | None) -> None:
    """Similar-report search: the embedding writer's loop in a thread, writing through a client on the
    sink's engine (chDB: one process owns the store) or a client of its own without the sink."""
    from sinks.clickhouse.client import client_like, open_client
    from sinks.clickhouse.embeddings import EmbedWorker, clickhouse_writer, embed_loop

    running: dict[str, Any] = {}

    def start() -> None:
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
        running["client"] = client
        running["loop"] = run_in_thread(embed_loop(settings.kafka, settings.topics, worker), "embed")

    @app.service
    class _Embeddings(mode.Service):
        async def on_start(self) -> None:
            await asyncio.get_running_loop().run_in_executor(None, start)

        async def on_stop(self) -> None:
            if "loop" in running:
                thread, stop = running.pop("loop")
                stop.set()
                await asyncio.get_running_loop().run_in_executor(None, thread.join, 30)
            if "client" in running:
                running.pop("client").close()
