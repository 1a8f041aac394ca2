"""The local stack: Kafka (``kafka.py``) and Orthanc (``orthanc.py``), no Docker.

``up`` starts the components (reusing running ones) and writes ``<state_dir>/stack.json``:
``{"settings": {...}, "pids": {...}}``; ``radstream.config.load_settings`` reads its
``settings`` as a layer, so every command finds the brokers and ports of the stack.
Each component module exposes ``start(settings, state_dir) -> settings overrides``,
``stop(state_dir)``, ``status(state_dir) -> str``, ``pid(state_dir)`` (the pid of the running
process this state dir started, else None) and ``address(state_dir)`` (where it listens, "" when
it does not run). ``status`` takes pid and address from the component's own state, not from
``stack.json``, so a component that died or was stopped alone shows as not running, with no address.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from radstream.config import Settings, stack_state_file

COMPONENTS = ("kafka", "orthanc")


@dataclass(frozen=True)
class ComponentStatus:
    component: str
    pid: int | None  # the running process this state dir started (None: not running)
    address: str  # where it listens ("" when not running)
    state: str  # the component's own status text, e.g. "running (...)" / "stopped" / "not installed"

    @property
    def running(self) -> bool:
        return self.pid is not None


def _module(name: str) -> ModuleType | None:
    target = f"radstream.stack.{name}"
    if importlib.util.find_spec(target) is None:
        return None
    return importlib.import_module(target)


def _read(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(stack_state_file(state_dir).read_text())
    except (OSError, ValueError):
        return {"settings": {}, "pids": {}}
    data.setdefault("settings", {})
    data.setdefault("pids", {})
    return data


def _write(state_dir: Path, data: dict[str, Any]) -> None:
    path = stack_state_file(state_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def up(settings: Settings, components: tuple[str, ...] | list[str] = COMPONENTS,
       brokers: int | None = None) -> dict[str, Any]:
    """Start ``components`` (idempotent) and return the updated stack.json content. ``brokers``: Kafka
    as a cluster of that many nodes (default: as last time, else one)."""
    state_dir = Path(settings.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    data = _read(state_dir)
    for name in components:
        if name not in COMPONENTS:
            raise ValueError(f"unknown stack component {name!r} (known: {', '.join(COMPONENTS)})")
        mod = _module(name)
        if mod is None:
            continue  # e.g. orthanc.py not written yet
        extra = (brokers,) if name == "kafka" else ()
        overrides = mod.start(settings, state_dir, *extra)
        _merge(data["settings"], overrides or {})
        data["pids"][name] = mod.pid(state_dir)
        _write(state_dir, data)  # after each component, so a later failure keeps what runs
    return data


def down(settings: Settings, components: tuple[str, ...] | list[str] = COMPONENTS) -> None:
    """Stop what ``up`` started for this state dir; stack.json goes when nothing is left."""
    state_dir = Path(settings.state_dir).resolve()
    data = _read(state_dir)
    for name in reversed(COMPONENTS):
        if name not in components:
            continue
        mod = _module(name)
        if mod is not None:
            mod.stop(state_dir)
        data["pids"].pop(name, None)
    if not data["pids"] or set(components) >= set(COMPONENTS):
        stack_state_file(state_dir).unlink(missing_ok=True)
    else:
        _write(state_dir, data)


def status(settings: Settings) -> list[ComponentStatus]:
    state_dir = Path(settings.state_dir).resolve()
    rows = []
    for name in COMPONENTS:
        mod = _module(name)
        if mod is None:
            rows.append(ComponentStatus(name, None, "", "not installed"))
            continue
        pid = mod.pid(state_dir)
        address = mod.address(state_dir) if pid is not None else ""
        rows.append(ComponentStatus(name, pid, address, mod.status(state_dir)))
    return rows
