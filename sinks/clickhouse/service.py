"""The ClickHouse sink as a service of a long-running process (the worker, ``radstream db sink``):
its consumer loop in a thread, opening the store with retries, and read-only queries on the store it
owns."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.sink import ClickHouseSink, warehouse_loop
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import ConsumerLoop, LoopStats

log = logging.getLogger("radstream.sink")


class SinkService:
    """Runs the warehouse's consumer loop in a thread; exposes its client for read-only queries."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, ch: ClickHouseConfig, *,
                 group_id: str | None = None, consumer_conf: Mapping[str, Any] | None = None) -> None:
        self.kafka, self.topics, self.ch = kafka, topics, ch
        self.group_id = group_id or f"{kafka.consumer_group}.clickhouse-sink"
        self.consumer_conf = consumer_conf
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.sink: ClickHouseSink | None = None
        self.loop: ConsumerLoop | None = None
        self.error: BaseException | None = None
        self.opened = threading.Event()

    @property
    def client(self) -> Client:
        if self.sink is None:
            raise RuntimeError("the sink has not opened the store yet")
        return self.sink.client

    @property
    def stats(self) -> LoopStats:
        return self.loop.stats if self.loop is not None else LoopStats()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="clickhouse-sink", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # Opening the store and migrating happen here, off the event loop. An embedded store can be
        # held for a moment by another process (e.g. `radstream sql` while this worker starts up):
        # retry with backoff; the sink's offsets are not committed meanwhile, so nothing is lost.
        delay = 0.5
        while self.sink is None and not self.stop_event.is_set():
            try:
                self.sink = ClickHouseSink(self.ch, self.topics)
            except Exception as exc:  # surfaced on /health until it opens
                self.error = exc
                log.warning("cannot open ClickHouse yet (retrying in %.1f s): %s", delay, exc)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 10.0)
        if self.sink is None:
            return
        self.error = None
        self.loop = warehouse_loop(self.kafka, self.topics, self.sink, group_id=self.group_id,
                                   consumer_conf=self.consumer_conf)
        self.opened.set()
        try:
            self.loop.run(self.stop_event)
        except BaseException as exc:  # surfaced on /health; the worker keeps streaming
            self.error = exc
            log.exception("clickhouse sink stopped")

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
        if self.sink is not None:
            self.sink.close()

    def failure(self, detail: bool = False) -> str:
        """What stopped the sink or keeps it from opening the store, as shown to a caller: the exception's
        class, and its message only with ``detail`` (an admin's request). chDB's messages name the store's
        path (an admin's, docs/access.md), and one from the loop could quote a row; the whole message is
        in the log (``_run``)."""
        if self.error is None:
            return ""
        return repr(self.error) if detail else type(self.error).__name__

    def health(self, detail: bool = False) -> str:
        if self.error is not None:
            return f"error: {self.failure(detail)}"
        return "starting" if self.sink is None else "ok"

    def ping(self) -> None:
        """The store answers a query (readiness); raises while it is not open or when it fails (the
        exception's class only: /ready shows a failing check's message to admins)."""
        if self.error is not None:
            raise RuntimeError(f"the sink stopped: {self.failure()}")
        self.client.command("SELECT 1")

    def query(self, sql: str, fmt: str, policy: Any = None, checked: list[Any] | None = None,
              limited: bool = False) -> Any:
        """A read-only query on the store; with ``policy`` (``access.Policy``) checked against it first;
        ``limited`` (a non-admin's): within the config's ``query_limits``."""
        from sinks.clickhouse.query import run_readonly

        return run_readonly(self.client, sql, fmt, policy=policy, checked=checked,
                            limits=self.ch.query_limits() if limited else None)
