"""The ClickHouse sink as a service of a long-running process (the Faust worker, ``radstream db sink``):
its loop in a thread, opening the store with retries, and read-only queries on the store it owns."""

from __future__ import annotations

import logging
import threading
from typing import Any

from radstream.config import Settings

log = logging.getLogger("radstream.sink")


class SinkService:
    """Runs the ClickHouse sink loop in a thread; exposes its client for read-only queries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.sink: Any = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="clickhouse-sink", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from sinks.clickhouse.sink import ClickHouseSink

        # Opening the store and migrating happen here, off the event loop. An embedded store can be
        # held for a moment by another process (e.g. `radstream sql` while this worker starts up):
        # retry with backoff; the sink's offsets are not committed meanwhile, so nothing is lost.
        delay = 0.5
        while self.sink is None and not self.stop_event.is_set():
            try:
                self.sink = ClickHouseSink(self.settings)
            except Exception as exc:  # surfaced on /health until it opens
                self.error = exc
                log.warning("cannot open ClickHouse yet (retrying in %.1f s): %s", delay, exc)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 10.0)
        if self.sink is None:
            return
        self.error = None
        try:
            self.sink.run(self.stop_event)
        except BaseException as exc:  # surfaced on /health; the worker keeps streaming
            self.error = exc
            log.exception("clickhouse sink stopped")

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
        if self.sink is not None:
            self.sink.close()

    def query(self, sql: str, fmt: str) -> Any:
        from sinks.clickhouse.query import run_readonly

        return run_readonly(self.sink.client, sql, fmt)
