"""The one configuration object.

Precedence (highest first): environment variables, the TOML file named by
``RADSTREAM_CONFIG``, the local stack's state file (``<state_dir>/stack.json``,
written by ``radstream stack up``: Kafka bootstrap and Orthanc ports), defaults.

Every field maps to an environment variable: ``RADSTREAM_`` + section + field,
upper-cased, e.g. ``RADSTREAM_KAFKA_BOOTSTRAP`` or ``RADSTREAM_PACS_PORT``.
In the TOML file the same field is ``[kafka] bootstrap = "..."``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

T = TypeVar("T")


def _default_state_dir() -> str:
    return str(Path.cwd() / ".state")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    partitions: int = 2
    replication_factor: int = 1
    retention_ms: int = 7 * 24 * 3600 * 1000
    consumer_group: str = "radstream"


@dataclass(frozen=True)
class TopicsConfig:
    reports: str = "radstream.reports.finalized"
    findings: str = "radstream.reports.findings"
    retrieval_requests: str = "radstream.retrieval.requested"
    retrieval_status: str = "radstream.retrieval.status"
    received_instances: str = "radstream.dicom.received"
    dead_letter: str = "radstream.deadletter"
    cohort_watches: str = "radstream.cohort.watches"


@dataclass(frozen=True)
class ClickHouseConfig:
    # chdb:///path/to/store (embedded, default: <state_dir>/chdb) or http://host:8123/db
    url: str = ""
    database: str = "radstream"
    batch_rows: int = 5000
    flush_ms: int = 500
    # the sink inserts a batch's child tables over this many clients at once (1: one after the other)
    insert_threads: int = 3
    # Kafka static membership of the sink: "auto" = one stable id per (host, embedded store), "" = off
    sink_instance_id: str = "auto"


@dataclass(frozen=True)
class PacsConfig:
    ae_title: str = "ORTHANC"
    host: str = "127.0.0.1"
    port: int = 4242
    http_port: int = 8042
    calling_ae: str = "RADSTREAM"
    max_associations: int = 2
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 2.0
    max_studies_per_hour: float = 0.0  # 0 = no limit
    max_images_per_minute: float = 0.0  # 0 = no limit
    windows: str = ""  # allowed times, e.g. "mon-fri 19:00-07:00; sat-sun 00:00-24:00"; empty = always
    timezone: str = ""  # IANA name for windows; empty = the host's
    pending_event_s: float = 1.0  # min seconds between "moving" status events of one request
    status_linger_ms: float = 30.0  # the worker's producer waits this long to send status events together
    fast_move: bool = True  # C-FIND/C-MOVE directly on the socket (False: all through pynetdicom)


@dataclass(frozen=True)
class ResearchConfig:
    # the storage SCP that receives moved studies
    ae_title: str = "RESEARCH"
    host: str = "127.0.0.1"
    port: int = 11113
    store_dir: str = ""  # default <state_dir>/research
    allowed_calling_aes: tuple[str, ...] = ("ORTHANC",)
    allowed_destinations: tuple[str, ...] = ("RESEARCH",)
    default_project: str = ""  # project of studies nobody registered; empty = refuse them
    min_free_mb: int = 100
    writers: int = 2
    deid_projects: tuple[str, ...] = ()  # projects whose images are de-identified on arrival
    fast_path: bool = True  # direct C-STORE receive loop (False: every message through pynetdicom)
    processes: int = 1  # SCP processes sharing one listening socket, for parallel associations
    event_batch_ms: float = 200.0  # received_instance events are produced together for this long (0: each)


@dataclass(frozen=True)
class WorkerConfig:
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    nlp_processes: int = 1  # NLP in child processes (0: in the worker's event loop)
    nlp_batch: int = 256  # most reports per hand-off to the NLP process (fewer when they trickle in)


@dataclass(frozen=True)
class IngestConfig:
    site: str = "default"
    accession_field: str = "OBR-3"  # or OBR-18
    pseudonym_key: str = field(default="", repr=False)  # HMAC key for research pseudonyms; never logged
    pseudonym_key_file: str = ""
    timezone: str = ""  # IANA zone of HL7 times without an offset; empty = UTC
    hl7_charset: str = "utf-8"  # when MSH-18 is empty
    mllp_max_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class MlConfig:
    # the optional [ml] extra
    torch_threads: int = 1  # intra-op threads: a worker shares the machine with Kafka and the NLP agents
    classifiers: tuple[str, ...] = ()  # site classifier config files (JSON); their findings join the rules'
    embed: bool = False  # the worker also embeds each report (Faust agent -> report_embeddings)


@dataclass(frozen=True)
class Settings:
    state_dir: str = field(default_factory=_default_state_dir)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    clickhouse: ClickHouseConfig = field(default_factory=ClickHouseConfig)
    pacs: PacsConfig = field(default_factory=PacsConfig)
    research: ResearchConfig = field(default_factory=ResearchConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    ml: MlConfig = field(default_factory=MlConfig)

    @property
    def clickhouse_url(self) -> str:
        return self.clickhouse.url or f"chdb://{Path(self.state_dir).resolve() / 'chdb'}"

    @property
    def research_store_dir(self) -> Path:
        return Path(self.research.store_dir or Path(self.state_dir) / "research")

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    def replace(self, **sections: Any) -> Settings:
        """Copy with some fields changed: ``s.replace(kafka={"bootstrap": "x"})``."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
                changes[name] = dataclasses.replace(current, **value)  # type: ignore[type-var]
            else:
                changes[name] = value
        return dataclasses.replace(self, **changes)


def _coerce(value: Any, typ: Any) -> Any:
    origin = get_origin(typ)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(i).strip() for i in items if str(i).strip())
    if typ is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    if typ is int:
        return int(value)
    if typ is float:
        return float(value)
    if typ is str:
        return str(value)
    if origin is not None and type(None) in get_args(typ):
        return value
    return value


def _build(cls: type[T], layers: list[Mapping[str, Any]], env: Mapping[str, str], prefix: str) -> T:
    kwargs: dict[str, Any] = {}
    hints = get_type_hints(cls)
    for f in fields(cls):  # type: ignore[arg-type]
        typ = hints[f.name]
        env_name = f"{prefix}_{f.name}".upper()
        if dataclasses.is_dataclass(typ):
            sub = [s for s in (layer.get(f.name, {}) for layer in layers) if isinstance(s, Mapping)]
            kwargs[f.name] = _build(cast(type[Any], typ), sub, env, env_name)
            continue
        value: Any = dataclasses.MISSING
        for layer in layers:
            if f.name in layer:
                value = layer[f.name]
        if env_name in env:
            value = env[env_name]
        if value is not dataclasses.MISSING:
            kwargs[f.name] = _coerce(value, typ)
    return cls(**kwargs)


def stack_state_file(state_dir: str | Path) -> Path:
    return Path(state_dir) / "stack.json"


def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None) -> Settings:
    env = os.environ if env is None else env
    layers: list[Mapping[str, Any]] = []
    state_dir = env.get("RADSTREAM_STATE_DIR")
    path = config_file or env.get("RADSTREAM_CONFIG")
    file_layer: Mapping[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            file_layer = tomllib.load(fh)
        state_dir = state_dir or file_layer.get("state_dir")
    state_dir = state_dir or _default_state_dir()
    state = stack_state_file(state_dir)
    if state.exists():
        with contextlib.suppress(OSError, ValueError):
            layers.append(json.loads(state.read_text()).get("settings", {}))
    layers.append(file_layer)
    layers.append({"state_dir": state_dir})
    return _build(Settings, layers, env, "RADSTREAM")


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child process (inverse of load_settings)."""
    env: dict[str, str] = {}

    def walk(obj: Any, prefix: str) -> None:  # obj: a dataclass instance
        for f in fields(obj):
            value = getattr(obj, f.name)
            name = f"{prefix}_{f.name}".upper()
            if dataclasses.is_dataclass(value):
                walk(value, name)
            elif isinstance(value, tuple):
                env[name] = ",".join(value)
            elif isinstance(value, bool):
                env[name] = "1" if value else "0"
            else:
                env[name] = str(value)

    walk(settings, "RADSTREAM")
    return env
