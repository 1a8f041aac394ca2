"""Producing report events and rejects: the one place where ingest talks to Kafka.

Events are pseudonymised here (when a key is configured) right before they are encoded, so a
real patient id never reaches a topic. Rejected input goes to the dead-letter topic with the
reason and the original bytes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from processors.ingest.model import ReportEvent
from processors.ingest.pseudonym import load_key, pseudonymise
from streams import metrics
from streams.config import IngestConfig, KafkaConfig, TopicsConfig
from streams.producer import DeliveryError, make_producer, produce, send_dead_letter

log = logging.getLogger(__name__)
CONTRACT = "report_finalized"
# the front doors answer one message at a time per connection: send at once instead of lingering
INTERACTIVE = {"linger.ms": 0}


@dataclass
class Counts:
    produced: int = 0
    rejected: int = 0
    failed: int = 0
    dead_letter_failed: int = 0  # dead letters Kafka did not confirm: rejected input not kept
    errors: list[str] = field(default_factory=list)


class Publisher:
    """Wraps one idempotent producer for report events and dead letters."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig, stage: str,
                 producer: Producer | None = None) -> None:
        self.stage = stage
        self.producer = producer or make_producer(kafka)
        self.key = load_key(ingest.pseudonym_key, ingest.pseudonym_key_file)
        where = "settings" if ingest.pseudonym_key else "the key file"
        log.info("%s: research pseudonyms %s", stage, f"on (key from {where})" if self.key else "off")
        self.topic = topics.reports
        self.dead_letter_topic = topics.dead_letter
        metrics.stage_started(stage, produces=[self.topic])
        metrics.INGEST_MESSAGES.labels(stage)
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    def prepare(self, event: ReportEvent) -> ReportEvent:
        return pseudonymise(event, self.key)

    def publish(self, event: ReportEvent, on_delivery: Any = None) -> None:
        ev = self.prepare(event)
        produce(self.producer, self.topic, CONTRACT, ev.key, ev.to_avro(),
                on_delivery=self._counted(on_delivery))

    def _counted(self, on_delivery: Any) -> Any:
        """``on_delivery``, after counting a confirmed event in ``radstream_records_produced_total``."""
        out = metrics.RECORDS_OUT.labels(self.stage, self.topic)

        def done(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                out.inc()
            if on_delivery is not None:
                on_delivery(err, msg)

        return done

    def dead_letter(self, raw: bytes | None, error: BaseException | str, where: str | None = None,
                    on_delivery: Any = None) -> None:
        """Queue a dead letter (its delivery report goes to ``on_delivery`` on poll/flush)."""
        send_dead_letter(self.producer, self.dead_letter_topic, self.stage, raw, error,
                         on_delivery=on_delivery, key=where.encode("utf-8") if where else None)

    def dead_letter_counted(self, raw: bytes | None, error: BaseException | str, where: str | None,
                            counts: Counts) -> None:
        """Queue a dead letter; a delivery failure is counted into ``counts`` on poll/flush."""

        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                counts.dead_letter_failed += 1
                if len(counts.errors) < 10:
                    counts.errors.append(f"dead letter: {err}")

        self.dead_letter(raw, error, where, on_delivery=done)

    async def dead_letter_confirmed(self, raw: bytes | None, error: BaseException | str,
                                    where: str | None = None, timeout: float = 30.0) -> None:
        """Send a dead letter and return once the broker confirmed it (raises DeliveryError): a front door
        answers a rejection only when the rejected input is kept."""
        fut, done = self._delivery_future()
        self.dead_letter(raw, error, where, on_delivery=done)
        await self._confirmed([fut], timeout)

    def publish_all(self, events: Iterable[ReportEvent], counts: Counts) -> None:
        """Queue events; delivery results are counted into ``counts`` on poll/flush."""

        def done(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                counts.produced += 1
            else:
                counts.failed += 1
                if len(counts.errors) < 10:
                    counts.errors.append(str(err))

        for i, ev in enumerate(events):
            self.publish(ev, on_delivery=done)
            if i % 1000 == 0:
                self.producer.poll(0)

    def flush(self, timeout: float = 60.0) -> int:
        return int(self.producer.flush(timeout))

    async def publish_confirmed(self, events: list[ReportEvent], timeout: float = 30.0) -> None:
        """Produce all events and return once the broker confirmed every one (raises DeliveryError).

        Runs the blocking flush in a thread, so the event loop keeps serving other connections.
        """
        pending: list[asyncio.Future[None]] = []
        for ev in events:
            fut, done = self._delivery_future()
            pending.append(fut)
            self.publish(ev, on_delivery=done)
        await self._confirmed(pending, timeout)

    @staticmethod
    def _delivery_future() -> tuple[asyncio.Future[None], Any]:
        """A future of the running loop, and the delivery callback (poller thread) that settles it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(err: KafkaError | None, msg: Message) -> None:
            if fut.done():
                return
            loop.call_soon_threadsafe(_set, fut, None if err is None else DeliveryError(str(err), err.code()))

        return fut, done

    async def _confirmed(self, pending: list[asyncio.Future[None]], timeout: float) -> None:
        if not pending:
            return
        self.start_polling()
        try:
            await asyncio.wait_for(asyncio.gather(*pending), timeout=timeout)
        except TimeoutError:
            raise DeliveryError(f"Kafka did not confirm delivery within {timeout}s") from None

    def start_polling(self) -> None:
        """Serve delivery reports from a background thread (for the asyncio front doors)."""
        if self._poller is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                self.producer.poll(0.05)

        self._poller = threading.Thread(target=run, name=f"{self.stage}-kafka-poll", daemon=True)
        self._poller.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
            self._poller = None
        self.producer.flush(timeout)


def _set(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
