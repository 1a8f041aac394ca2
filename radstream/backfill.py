"""The backfill process, wired: report files -> the streams layer's parsers and NLP -> the warehouse's
own writer (``sinks.clickhouse.backfill.WarehouseOutput``), or the reports topic (``via_kafka``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radstream.config import Settings
from radstream.text_deid import text_deid
from sinks.clickhouse.backfill import WarehouseOutput
from streams.ingest import backfill
from streams.ingest.backfill import KafkaOutput, Output, Summary


def run_backfill(settings: Settings, paths: Sequence[Path], *, via_kafka: bool = False,
                 **options: Any) -> Summary:
    """Load ``paths``; ``options`` as ``streams.ingest.backfill.run_backfill`` takes them."""
    output: Output = (KafkaOutput(settings.kafka, settings.topics, settings.ingest) if via_kafka
                      else WarehouseOutput(settings.clickhouse))
    options.setdefault("text_deid", None if via_kafka else text_deid(settings))
    return backfill.run_backfill(paths, output, ingest=settings.ingest, ml=settings.ml,
                                 state_dir=settings.state_dir, **options)
