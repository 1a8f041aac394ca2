"""The warehouse writer's config section (composed by ``radstream.config``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClickHouseConfig:
    # chdb:///path/to/store (embedded) or http://host:8123; radstream.config fills in the embedded default
    url: str = ""
    database: str = "radstream"
    batch_rows: int = 5000
    flush_ms: int = 500
    # the sink inserts a batch's child tables over this many clients at once (1: one after the other)
    insert_threads: int = 3
    # Kafka static membership of the sink: "auto" = one stable id per (host, embedded store), "" = off
    sink_instance_id: str = "auto"

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")
