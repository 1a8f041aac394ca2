"""Producing our Avro records with confluent-kafka (idempotent, acks=all)."""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams import metrics, serde
from streams.config import KafkaConfig


class DeliveryError(RuntimeError):
    pass


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
            record: dict[str, Any], on_delivery: Any = None) -> None:
    """Encode ``record`` with contract ``contract`` and queue it (call ``flush``/``poll`` to deliver)."""
    value = serde.encode(contract, record)
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
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
    return {
        "stage": stage,
        "original_topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "value": value or b"",
        "error_type": error_type,
        "error": text,
        "time": datetime.now(UTC),
    }


def send_dead_letter(producer: Producer, dead_letter_topic: str, stage: str, value: bytes | None,
                     error: BaseException | str, **where: Any) -> None:
    rec = dead_letter_record(stage, value, error, **where)
    produce(producer, dead_letter_topic, "dead_letter", where.get("key"), rec)
