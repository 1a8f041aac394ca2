"""Producing our Avro records with confluent-kafka (idempotent, acks=all)."""

from __future__ import annotations

import logging
import threading
import traceback
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams import metrics, serde
from streams.config import KafkaConfig


class DeliveryError(RuntimeError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the broker's KafkaError code, when it answered

    @property
    def refused_for_good(self) -> bool:
        """The broker refused the record itself (too large, invalid): sending it again cannot succeed."""
        return self.code in REFUSED_FOR_GOOD


REFUSED_FOR_GOOD = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE,
                              KafkaError.INVALID_RECORD})


def make_producer(kafka: KafkaConfig, **overrides: Any) -> Producer:
    conf: dict[str, Any] = {
        **kafka.client_conf(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 10_000_000,
        "logger": logging.getLogger("radstream.librdkafka"),
    }
    conf.update(overrides)
    return Producer(conf)


def produce(producer: Producer, topic: str, contract: str, key: str | bytes | None,
            record: dict[str, Any], on_delivery: Any = None,
            headers: list[tuple[str, str | bytes | None]] | None = None, partition: int = -1) -> None:
    """Encode ``record`` with contract ``contract`` and queue it (call ``flush``/``poll`` to deliver;
    ``partition`` -1: the producer's choice, by key)."""
    value = serde.encode(contract, record)
    while True:
        try:
            if partition >= 0:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery, headers=headers,
                                 partition=partition)
            else:  # the producer's choice (by key); also what producer-like test doubles take
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery, headers=headers)
            return
        except BufferError:
            producer.poll(0.1)


def produce_sync(producer: Producer, topic: str, contract: str, key: str | bytes | None,
                 record: dict[str, Any], timeout: float = 30.0) -> Message:
    """Produce one record and wait until the broker confirmed it (raises DeliveryError)."""
    box: dict[str, Any] = {}

    def done(err: KafkaError | None, msg: Message) -> None:
        box["err"], box["msg"] = err, msg

    produce(producer, topic, contract, key, record, on_delivery=done)
    producer.flush(timeout)
    if "msg" not in box:
        raise DeliveryError(f"no delivery report from Kafka within {timeout}s for {topic}")
    if box["err"] is not None:
        raise DeliveryError(str(box["err"]))
    msg: Message = box["msg"]
    return msg


class Deliveries:
    """Records produced through it, and what the broker said about them: ``flush`` returns how many
    were not confirmed, still queued or refused. (Counting only what ``Producer.flush`` leaves queued
    took a refused record for a delivered one: a refusal empties the queue too.)

    Usage, for "produce many, wait, fail unless every one was confirmed"::

        sent = Deliveries(producer)
        for rec in records:
            sent.produce(topic, contract, key, rec)
        if sent.flush(30):
            raise ...  # sent.last_error says why
    """

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self._lock = threading.Lock()
        self._pending = 0  # produced, no delivery report yet
        self._failed = 0  # refused since the last flush
        self.last_error: KafkaError | None = None

    def produce(self, topic: str, contract: str, key: str | bytes | None, record: dict[str, Any], *,
                headers: list[tuple[str, str | bytes | None]] | None = None, partition: int = -1,
                on_delivery: Any = None) -> None:
        """``produce`` one record, its delivery counted (``on_delivery``, if given, is called too)."""
        report = self._report if on_delivery is None else self._and_then(on_delivery)
        with self._lock:  # before: the report may come on another thread's poll at once
            self._pending += 1
        try:
            produce(self.producer, topic, contract, key, record, on_delivery=report, headers=headers,
                    partition=partition)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise

    def _and_then(self, on_delivery: Any) -> Any:
        def report(err: KafkaError | None, msg: Message) -> None:
            self._report(err, msg)
            on_delivery(err, msg)
        return report

    def _report(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            self._pending -= 1
            if err is not None:
                self._failed += 1
                self.last_error = err

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` for the producer's queue; how many records produced here the broker
        has not confirmed: still pending, plus those refused since the last ``flush`` (each refusal is
        counted by one flush only)."""
        self.producer.flush(timeout)
        with self._lock:
            left = self._pending + self._failed
            self._failed = 0
        return left


# A dead letter must fit the broker's default message limit (message.max.bytes, 1 MiB): one over it is
# refused, and the rejected input with it. Above these sizes the record keeps the head of the original
# bytes (and of the reason), says so in its error text and, from send_dead_letter, in a header.
DEAD_LETTER_VALUE_MAX = 768 * 1024
DEAD_LETTER_ERROR_MAX = 16 * 1024
TRUNCATED_HEADER = "radstream-dead-letter-truncated"  # value: the original size in bytes


def dead_letter_record(stage: str, value: bytes | None, error: BaseException | str, *,
                       topic: str | None = None, partition: int | None = None,
                       offset: int | None = None, key: bytes | None = None,
                       error_type: str | None = None) -> dict[str, Any]:
    """The DeadLetter record for input that a stage rejected."""
    if isinstance(error, BaseException):
        error_type = error_type or type(error).__name__
        text = str(error) or "".join(traceback.format_exception_only(error)).strip()
    else:
        error_type, text = error_type or "Rejected", error
    metrics.dead_letter(stage, error_type)  # counted when made: a delivery that is retried counts again
    raw = value or b""
    if len(text) > DEAD_LETTER_ERROR_MAX:
        text = text[:DEAD_LETTER_ERROR_MAX] + " [reason cut]"
    if len(raw) > DEAD_LETTER_VALUE_MAX:
        text += f" [dead letter keeps the first {DEAD_LETTER_VALUE_MAX} of {len(raw)} bytes]"
        raw = raw[:DEAD_LETTER_VALUE_MAX]
    return {
        "stage": stage,
        "original_topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "value": raw,
        "error_type": error_type,
        "error": text,
        "time": datetime.now(UTC),
    }


def send_dead_letter(producer: Producer, dead_letter_topic: str, stage: str, value: bytes | None,
                     error: BaseException | str, on_delivery: Any = None, **where: Any) -> None:
    """Queue a dead letter. Pass ``on_delivery`` (or wait for it otherwise) before acknowledging the
    input it rejects: a dead letter the broker refused is the input lost."""
    rec = dead_letter_record(stage, value, error, **where)
    size = len(value or b"")
    headers: list[tuple[str, str | bytes | None]] | None = (
        [(TRUNCATED_HEADER, str(size).encode())] if size > len(rec["value"]) else None)
    produce(producer, dead_letter_topic, "dead_letter", where.get("key"), rec, on_delivery=on_delivery,
            headers=headers)
