"""Research projects as registered objects, not free strings.

A project has an id (``sinks.dicom.paths`` grammar), a destination AE, an owner, the de-identification
options of PS3.15 Annex E (``sinks.dicom.deid.DeidOptions``), whether burned-in-risk images may be stored
(``allow_burned_in_risk``), who registered it and when. **Every project is de-identified** unless it is
registered as identified, which needs an IRB approval or waiver reference.

Registrations live on a compacted Kafka topic (``topics.projects``, keyed by project id, contract
``project_registration``): the CLI, the retrieval worker and the storage SCP each replay it
(``ProjectRegistry``, the streams layer's one consumer loop); the ClickHouse sink keeps every registration
in the ``projects`` table (append-only history). A new registration of the same id replaces the previous
one; ``active=false`` retires a project (its retrievals are refused).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sinks.dicom.deid import DeidOptions
from sinks.dicom.paths import is_project_id
from sinks.dicom.registration import registration_problem
from streams import serde
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record, run_in_thread
from streams.producer import make_producer, produce_sync

LOG = logging.getLogger(__name__)
DEID_FIELDS = tuple(f.name for f in dataclasses.fields(DeidOptions))


class ProjectError(ValueError):
    """A registration that is not allowed (bad id, identified without an IRB reference, ...)."""


@dataclass(frozen=True)
class StoreOptions:
    """What the storage SCP needs of a project; written into each expectation file by the worker."""

    identified: bool = False
    deid: DeidOptions = field(default_factory=DeidOptions)
    allow_burned_in_risk: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"identified": self.identified, "allow_burned_in_risk": self.allow_burned_in_risk,
                "deid": {**dataclasses.asdict(self.deid),
                         "private_safe_list": list(self.deid.private_safe_list)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> StoreOptions:
        """Missing values take the safe defaults (de-identified, Basic Profile, no burned-in risk)."""
        if not data:
            return cls()
        deid = dict(data.get("deid") or {})
        opts = {k: deid[k] for k in DEID_FIELDS if k in deid}
        if "private_safe_list" in opts:
            opts["private_safe_list"] = tuple(str(t) for t in opts["private_safe_list"])
        return cls(identified=bool(data.get("identified", False)), deid=DeidOptions(**opts),
                   allow_burned_in_risk=bool(data.get("allow_burned_in_risk", False)))


@dataclass(frozen=True)
class Project:
    project_id: str
    destination_ae: str
    owner: str
    registered_by: str
    identified: bool = False
    irb_reference: str = ""
    deid: DeidOptions = field(default_factory=DeidOptions)
    allow_burned_in_risk: bool = False
    active: bool = True
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def store_options(self) -> StoreOptions:
        return StoreOptions(self.identified, self.deid, self.allow_burned_in_risk)

    def record(self) -> dict[str, Any]:
        """The ``project_registration`` record."""
        return {"project_id": self.project_id, "identified": self.identified,
                "irb_reference": self.irb_reference or None,
                **{k: getattr(self.deid, k) for k in DEID_FIELDS if k != "private_safe_list"},
                "private_safe_list": list(self.deid.private_safe_list),
                "allow_burned_in_risk": self.allow_burned_in_risk, "destination_ae": self.destination_ae,
                "owner": self.owner, "registered_by": self.registered_by, "active": self.active,
                "time": self.time}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Project:
        deid = DeidOptions(**{k: rec[k] for k in DEID_FIELDS if k != "private_safe_list"},
                           private_safe_list=tuple(rec.get("private_safe_list") or ()))
        return cls(project_id=rec["project_id"], destination_ae=rec["destination_ae"], owner=rec["owner"],
                   registered_by=rec["registered_by"], identified=bool(rec["identified"]),
                   irb_reference=rec.get("irb_reference") or "", deid=deid,
                   allow_burned_in_risk=bool(rec["allow_burned_in_risk"]), active=bool(rec["active"]),
                   time=rec["time"])


def validate(project: Project, allowed_destinations: Sequence[str] = ()) -> Project:
    """The project if it may be registered, else ProjectError saying why."""
    if not is_project_id(project.project_id):
        raise ProjectError(f"project id {project.project_id[:80]!r} is not valid: 1-64 of A-Z a-z 0-9 - _, "
                           "starting with a letter or digit")
    if project.identified and not project.irb_reference.strip():
        raise ProjectError(f"project {project.project_id}: identified images need an IRB approval or "
                           "waiver reference (--irb)")
    if not project.identified and project.irb_reference and not project.irb_reference.strip():
        raise ProjectError("empty IRB reference")
    if allowed_destinations and project.destination_ae not in allowed_destinations:
        raise ProjectError(f"destination {project.destination_ae!r} is not on the allow-list "
                           f"{list(allowed_destinations)}")
    if not project.owner.strip() or not project.registered_by.strip():
        raise ProjectError("a project needs an owner and who registered it")
    return project


def publish(kafka: KafkaConfig, topics: TopicsConfig, project: Project) -> None:
    """Register (or re-register) a project: waits until the broker has it."""
    produce_sync(make_producer(kafka), topics.projects, "project_registration", project.project_id.encode(),
                 project.record())


class Projects(Protocol):
    def get(self, project_id: str, wait_s: float = 0.0) -> Project | None: ...

    def peek(self, project_id: str) -> Project | None:
        """The registration as held now: never waits (not even for the view to be read)."""
        ...


def unread(projects: object) -> bool:
    """The projects view was never read to its end (its broker did not answer in time): a project missing
    from it is not "not registered". The one rule of ``refusal`` and the ``radstream project`` commands;
    a view without ``loaded`` (``StaticProjects``) is always read."""
    loaded = getattr(projects, "loaded", None)
    return loaded is not None and not loaded.is_set()


def refusal(projects: Projects, project_id: str, destination_ae: str | None = None,
            wait_s: float = 0.0) -> str | None:
    """Why a retrieval for ``project_id`` (to ``destination_ae``) is refused, or None."""
    project = projects.get(project_id, wait_s) if project_id else None
    if project is None and unread(projects):
        # say what failed (the caller refuses all the same)
        return (f"cannot tell whether project {project_id!r} is registered: the projects topic was not read "
                "from Kafka in time (is Kafka running and reachable?); try again when it is")
    if project is None:
        return (f"project {project_id!r} is not registered (radstream project add; "
                "retrievals need a registered project)")
    if not project.active:
        return f"project {project_id!r} is retired"
    if destination_ae is not None and project.destination_ae and destination_ae != project.destination_ae:
        return f"project {project_id!r} delivers to {project.destination_ae!r}, not {destination_ae!r}"
    return None


def options_of(projects: Projects, project_id: str) -> dict[str, Any] | None:
    """The project's store options for its expectation file (None: not registered)."""
    project = projects.get(project_id)
    return project.store_options.to_dict() if project is not None else None


class StaticProjects:
    """A fixed set of projects (tests, tools without Kafka)."""

    def __init__(self, projects: Sequence[Project] = ()) -> None:
        self.projects = {p.project_id: p for p in projects}

    def get(self, project_id: str, wait_s: float = 0.0) -> Project | None:
        return self.projects.get(project_id)

    def peek(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    def all(self) -> list[Project]:
        return sorted(self.projects.values(), key=lambda p: p.project_id)


class ProjectRegistry(Handler):
    """Every registered project, kept current by replaying the compacted projects topic (a replaying
    consumer loop in a daemon thread, started on first use or by ``start``)."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, load_timeout_s: float = 15.0) -> None:
        self._projects: dict[str, Project] = {}
        self._cv = threading.Condition()
        self._loop = ConsumerLoop(kafka, LoopConfig(
            group_id=f"{kafka.consumer_group}.projects", topics=[topics.projects], stage="projects",
            replay=True, poll_s=0.2), self)
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._start_lock = threading.Lock()
        self.load_timeout_s = load_timeout_s
        self.loaded = self._loop.caught_up

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread, self._stop = run_in_thread(self._loop, "projects")

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(10)

    def _ready(self) -> None:
        self.start()
        if not self.loaded.wait(self.load_timeout_s):
            LOG.warning("the projects topic was not read to its end within %.0f s", self.load_timeout_s)

    def get(self, project_id: str, wait_s: float = 0.0) -> Project | None:
        """The project as last registered; waits up to ``wait_s`` for one not seen yet (a registration
        may have been made a moment ago, by another process)."""
        self._ready()
        with self._cv:
            self._cv.wait_for(lambda: project_id in self._projects, timeout=wait_s)
            return self._projects.get(project_id)

    def peek(self, project_id: str) -> Project | None:
        """The project as the view holds it now, without waiting for the topic to be read (``get`` waits
        up to ``load_timeout_s`` on every call while it is not: a broker outage)."""
        with self._cv:
            return self._projects.get(project_id)

    def all(self) -> list[Project]:
        self._ready()
        with self._cv:
            return sorted(self._projects.values(), key=lambda p: p.project_id)

    # -- the loop's Handler ------------------------------------------------------------------------
    def add(self, records: Sequence[Record], acks: Acks) -> None:
        for rec in records:
            self.apply(rec.value, rec.key)

    def apply(self, value: bytes | None, key: bytes | None) -> None:
        if value is None:  # tombstone
            with self._cv:
                self._projects.pop((key or b"").decode(), None)
            return
        try:
            rec = serde.decode("project_registration", value)
            problem = registration_problem(rec)  # the ClickHouse sink refuses the same ones
            if problem:
                raise ProjectError(problem)
            project = Project.from_record(rec)
        except (serde.SerdeError, ProjectError, KeyError, TypeError) as exc:
            LOG.error("ignoring invalid project registration %r: %s", key, exc)
            return
        with self._cv:
            self._projects[project.project_id] = project
            self._cv.notify_all()
