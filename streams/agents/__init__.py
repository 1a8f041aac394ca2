"""The worker's stream agents on the one consumer loop: NLP (``nlp``) and standing cohorts (``cohort``),
with their changelogged state (``table``) and delivery-tracked output (``outbox``).

``Agents`` builds both loops, creates the changelog topics, and runs each loop in a thread of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from streams.agents.cohort import CohortHandler
from streams.agents.nlp import NLP_BATCH_WAIT_S, NLP_STAGE, NlpHandler, NlpRunner
from streams.agents.table import ChangelogTable, changelog_topic
from streams.cohort import WatchRegistry
from streams.config import KafkaConfig, MlConfig, TopicsConfig, WorkerConfig
from streams.handlers import TextDeid
from streams.loop import ConsumerLoop, LoopConfig
from streams.producer import make_producer
from streams.topics import admin_client, cluster_replication, wait_until_usable

log = logging.getLogger("radstream.worker")

STOP_TIMEOUT_S = 30.0


@dataclass
class AgentGroups:
    """The consumer groups of the agents (``app`` names their changelog topics too) and each one's
    ``group.instance.id`` (None: dynamic membership)."""

    app: str
    nlp_instance: str | None = None
    cohort_instance: str | None = None

    @property
    def cohort(self) -> str:
        return f"{self.app}-cohorts"


def create_changelogs(kafka: KafkaConfig, source_partitions: dict[str, int], timeout: float = 30.0) -> None:
    """The compacted changelog topics, one partition per partition of their input (existing ones kept)."""
    admin = admin_client(kafka)
    existing = set(admin.list_topics(timeout=timeout).topics)
    rf, replicated = cluster_replication(kafka, timeout)
    new = [NewTopic(name, num_partitions=n, replication_factor=rf,
                    config={"cleanup.policy": "compact", **replicated})
           for name, n in source_partitions.items() if name not in existing]
    for fut in (admin.create_topics(new, request_timeout=timeout) if new else {}).values():
        try:
            fut.result()
        except KafkaException as exc:
            if not (exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS"):
                raise
    wait_until_usable(kafka, set(source_partitions), timeout)  # a sibling may have just created them


def partitions_of(kafka: KafkaConfig, topic: str, timeout: float = 30.0) -> int:
    meta = admin_client(kafka).list_topics(topic, timeout=timeout).topics[topic]
    if meta.error is not None:
        raise KafkaException(meta.error)
    return len(meta.partitions)


class Agents:
    """The NLP loop and the standing-cohort loop of one worker process."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, worker: WorkerConfig, ml: MlConfig,
                 groups: AgentGroups, allowed_destinations: Sequence[str],
                 text_deid: TextDeid | None = None, state_dir: str | Path | None = None) -> None:
        self.kafka = kafka
        versions_topic = changelog_topic(groups.app, "report-versions")
        state_topic = changelog_topic(groups.app, "cohort-state")
        self._changelogs = {versions_topic: topics.reports, state_topic: topics.findings}
        self._prepared = threading.Lock()
        self._ready = False
        session = {"session.timeout.ms": int(worker.session_timeout_s * 1000),
                   "heartbeat.interval.ms": int(worker.heartbeat_s * 1000)}
        self.producer = make_producer(kafka)
        self.runner = NlpRunner(worker, ml, text_deid)
        store = Path(state_dir) / "agents" if state_dir is not None and worker.state_store == "disk" else None
        self.tables = [ChangelogTable(kafka, versions_topic, self.producer, store)]
        self.nlp = NlpHandler(topics, self.runner, self.producer, self.tables[0])
        self.registry = WatchRegistry(kafka, topics)
        self.cohort_producer = make_producer(kafka)
        self.tables.append(ChangelogTable(kafka, state_topic, self.cohort_producer, store))
        self.cohorts = CohortHandler(topics, self.registry, self.cohort_producer, self.tables[1],
                                     allowed_destinations)
        self.loops = {
            "nlp": ConsumerLoop(kafka, LoopConfig(
                group_id=groups.app, topics=[topics.reports], stage=NLP_STAGE,
                max_batch=max(1, worker.nlp_batch), poll_s=NLP_BATCH_WAIT_S,
                conf={**session, **_instance(groups.nlp_instance)}), self.nlp, producer=self.producer),
            "cohorts": ConsumerLoop(kafka, LoopConfig(
                group_id=groups.cohort, topics=[topics.findings], stage="cohort-agent",
                conf={**session, **_instance(groups.cohort_instance)}), self.cohorts,
                producer=self.cohort_producer),
        }
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self.errors: dict[str, BaseException] = {}

    def start(self) -> None:
        self.registry.start()
        for name, loop in self.loops.items():
            thread = threading.Thread(target=self._run, args=(name, loop), name=f"agent-{name}", daemon=True)
            self._threads[name] = thread
            thread.start()

    def _prepare(self) -> bool:
        """Create the changelog topics (sized like their inputs), retrying until Kafka answers; False if
        stopped first."""
        with self._prepared:
            while not self._ready and not self._stop.is_set():
                try:
                    create_changelogs(self.kafka, {name: partitions_of(self.kafka, source)
                                                   for name, source in self._changelogs.items()})
                    self._ready = True
                except Exception as exc:  # no broker yet, or the input topics are not created yet
                    log.warning("the agents wait for Kafka and their topics (`radstream topics create`): %s",
                                exc)
                    self._stop.wait(2.0)
            return self._ready

    def _run(self, name: str, loop: ConsumerLoop) -> None:
        try:
            if self._prepare():
                loop.run(self._stop)
        except BaseException as exc:  # the process sees it in ``failed`` and stops
            log.error("the %s agent failed: %r", name, exc)
            self.errors[name] = exc

    def failed(self) -> str | None:
        """Why an agent stopped on its own (None while both run, or after ``stop``)."""
        if self._stop.is_set():
            return None
        for name, thread in self._threads.items():
            if not thread.is_alive():
                return f"the {name} agent stopped: {self.errors.get(name)!r}"
        return None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._stop.set()
        for thread in self._threads.values():
            thread.join(timeout_s)
        self.registry.stop()
        self.runner.close()
        if not any(t.is_alive() for t in self._threads.values()):
            for table in self.tables:
                table.close()


def _instance(instance_id: str | None) -> dict[str, str]:
    return {"group.instance.id": instance_id} if instance_id else {}
