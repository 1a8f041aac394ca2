"""The one configuration object, composed of the sections each layer defines beside its code
(``streams.config``, ``sinks.clickhouse.config``, ``sinks.dicom.config``). Only this package loads
the environment and TOML files; the layers below take their sections as plain arguments.

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

from sinks.clickhouse.config import ClickHouseConfig
from sinks.dicom.config import PacsConfig, ResearchConfig
from streams.config import (
    AuthConfig,
    IngestConfig,
    KafkaConfig,
    MetricsConfig,
    MlConfig,
    TextDeidConfig,
    TopicsConfig,
    WorkerConfig,
    at_least,
)

__all__ = ["AuthConfig", "ClickHouseConfig", "ConfigError", "IngestConfig", "KafkaConfig", "MetricsConfig",
           "MlConfig", "PacsConfig", "ResearchConfig", "Settings", "TextDeidConfig", "TopicsConfig",
           "WebConfig", "WorkerConfig", "load_settings", "problems", "settings_env", "validate"]

T = TypeVar("T")


def _default_state_dir() -> str:
    return str(Path.cwd() / ".state")


@dataclass(frozen=True)
class WebConfig:
    """The researchers' web app (``radstream web``, docs/web.md), served by uvicorn."""

    # connections (or running requests) at which uvicorn answers a new request 503 instead of serving it,
    # so a flood of connections does not exhaust the process (an open dashboard stream is a connection).
    # At least 2: uvicorn counts the asking connection too, so 1 would refuse every request
    limit_concurrency: int = 100
    timeout_keep_alive: int = 5  # seconds an idle keep-alive connection is kept after a response

    def problems(self) -> list[str]:
        return at_least("limit_concurrency", self.limit_concurrency, 2) + \
            at_least("timeout_keep_alive", self.timeout_keep_alive, 1)


# (section, field, path under state_dir) filled in when empty; the quarantine is outside the store's tree
_PATHS = (("research", "store_dir", "research"), ("research", "quarantine_dir", "quarantine"),
          ("auth", "token_file", "auth/tokens.json"), ("auth", "audit_log", "audit.log"))


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
    text_deid: TextDeidConfig = field(default_factory=TextDeidConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    # "section.field" paths filled in from state_dir (filled in again when state_dir changes)
    _derived: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        # the layers below get concrete paths; an empty one means "under the state dir"
        derived = set(self._derived)
        if not self.clickhouse.url:
            url = f"chdb://{Path(self.state_dir).resolve() / 'chdb'}"
            object.__setattr__(self, "clickhouse", dataclasses.replace(self.clickhouse, url=url))
            derived.add("clickhouse.url")
        for section, name, under in _PATHS:
            current: Any = getattr(self, section)
            if not getattr(current, name):
                path = str(Path(self.state_dir) / under)
                object.__setattr__(self, section, dataclasses.replace(current, **{name: path}))
                derived.add(f"{section}.{name}")
        object.__setattr__(self, "_derived", frozenset(derived))

    @property
    def clickhouse_url(self) -> str:
        return self.clickhouse.url

    @property
    def research_store_dir(self) -> Path:
        return Path(self.research.store_dir)

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse.embedded

    def replace(self, **sections: Any) -> Settings:
        """Copy with some fields changed: ``s.replace(kafka={"bootstrap": "x"})``."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
                changes[name] = dataclasses.replace(current, **value)  # type: ignore[type-var]
            else:
                changes[name] = value
        # a path derived from state_dir stays derived (and follows a new state_dir) unless set here
        derived = frozenset(d for d in self._derived
                            if not _sets_path(sections.get(d.split(".")[0]), d.split(".")[1]))
        if "state_dir" in changes:
            for d in derived:
                name, path_field = d.split(".")
                section = changes.get(name, getattr(self, name))
                changes[name] = dataclasses.replace(section, **{path_field: ""})
        changes["_derived"] = derived
        return dataclasses.replace(self, **changes)


def _sets_path(given: Any, path_field: str) -> bool:
    return given is not None and (not isinstance(given, Mapping) or path_field in given)


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
        if f.name.startswith("_"):
            continue
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
            if f.name.startswith("_"):
                continue
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


class ConfigError(ValueError):
    """The configuration is not usable; the message lists every problem, one a line."""


def problems(settings: Settings) -> list[str]:
    """Everything wrong with ``settings``, each as "section.field: what is wrong": each section's own
    checks (``problems()`` beside its fields: ports, AE titles, key and certificate files, classifier
    configs, topic names, ...) and the state dir. Reads files; connects to nothing."""
    out: list[str] = []
    state = Path(settings.state_dir)
    existing = next((p for p in (state, *state.parents) if p.exists()), None)
    if state.exists() and not state.is_dir():
        out.append(f"state_dir: {state} is not a directory")
    elif existing is None or not os.access(existing, os.W_OK | os.X_OK):
        out.append(f"state_dir: {state} cannot be created or written (no write access to {existing})")
    for f in fields(settings):
        section = getattr(settings, f.name)
        check = getattr(section, "problems", None)
        if callable(check):
            out += [f"{f.name}.{problem}" for problem in check()]
    return out


def validate(settings: Settings) -> Settings:
    """``settings`` if nothing is wrong with them, else ConfigError naming every problem at once."""
    found = problems(settings)
    if found:
        where = os.environ.get("RADSTREAM_CONFIG")
        head = f"the configuration{f' ({where} and RADSTREAM_* variables)' if where else ''} has " \
               f"{len(found)} problem{'s' if len(found) > 1 else ''}:"
        raise ConfigError("\n".join([head, *(f"  {p}" for p in found)]))
    return settings
