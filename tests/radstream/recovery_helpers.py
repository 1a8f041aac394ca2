"""Helpers of the recovery tests (and ``bench/recovery_times.py``): real ``radstream`` processes that
are killed with SIGKILL, their descendants, reports in, findings out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from radstream.config import Settings, settings_env
from streams import serde
from streams.producer import make_producer
from tests.helpers_chdb import seed_store_of
from tests.streams.helpers import report

ROOT = Path(__file__).resolve().parents[2]
TEXT = "FINDINGS: 7 mm nodule in the right upper lobe. No pleural effusion."


class Proc:
    """``radstream <args>`` as a real process in a session of its own, its output in ``log``."""

    def __init__(self, settings: Settings, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log, self.settings = log, settings
        if args[:1] == ("worker",) and "--no-sink" not in args:
            # its store starts as a migrated copy when there is none yet (tests/helpers_chdb.py)
            seed_store_of(settings.clickhouse.url, settings.clickhouse.database)
        full = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), **(env or {})}
        self._out: IO[bytes] = log.open("ab")
        self.started = time.monotonic()
        self.popen = subprocess.Popen([sys.executable, "-m", "radstream", *args], cwd=ROOT, env=full,
                                      stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid

    def kill(self) -> set[int]:
        """SIGKILL to this process alone (not its group); returns the descendants it had."""
        kids = descendants(self.pid)
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        return kids

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL to what is left of its process group; its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # anything of it still around
        self._out.close()
        return int(self.popen.returncode)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(") ", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        todo += list(kids - out)
        out |= kids
    return out


def alive(pids: Iterable[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z":
                out.add(pid)
        except (OSError, IndexError):
            pass
    return out


def produce_reports(s: Settings, accessions: Iterable[str], text: str = TEXT) -> int:
    p = make_producer(s.kafka)
    n = 0
    for acc in accessions:
        p.produce(s.topics.reports, key=f"default|{acc}".encode(),
                  value=serde.encode("report_finalized", report(acc, text)))
        p.poll(0)
        n += 1
    assert p.flush(60) == 0
    return n


class Tail:
    """Reads a topic from its beginning without a consumer group: ``keys`` counts what arrived."""

    def __init__(self, s: Settings, topic: str) -> None:
        self.consumer = Consumer({**s.kafka.client_conf(), "group.id": uuid.uuid4().hex,
                                  "enable.auto.commit": False})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.keys: Counter[bytes] = Counter()
        # the analysts' topics key a report by its research accession (processors.ingest.research)
        self.settings = s if topic in (s.topics.findings, s.topics.reports_deidentified) else None

    def poll(self, seconds: float = 0.1) -> None:
        for m in self.consumer.consume(1000, timeout=seconds):
            if m.error() is None and m.key() is not None:
                self.keys[m.key()] += 1

    def wait_for(self, want: set[bytes], timeout: float) -> bool:
        """Wait until a message of every reports-topic key in ``want`` arrived."""
        deadline = time.monotonic() + timeout
        while self.missing(want) and time.monotonic() < deadline:
            self.poll()
        return not self.missing(want)

    def missing(self, want: set[bytes]) -> set[bytes]:
        """The reports-topic keys of ``want`` with no message here yet."""
        from tests.streams.helpers import to_research_key

        if self.settings is None:
            return want - set(self.keys)
        return {k for k in want if to_research_key(self.settings, k) not in self.keys}

    def close(self) -> None:
        self.consumer.close()


def keys(accessions: Iterable[str]) -> set[bytes]:
    return {f"default|{a}".encode() for a in accessions}


def resume_time(s: Settings, tmp: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120.0) -> float:
    """kill -9 a streaming ``radstream worker [args]``, start it again and time how long the new process
    takes, from its start, to publish the findings of a report sent as it starts."""
    tail = Tail(s, s.topics.findings)
    tag = uuid.uuid4().hex[:6]
    first = Proc(s, tmp / f"resume-{tag}-1.log", "worker", *args, env=env)
    try:
        produce_reports(s, [f"A{tag}"])
        assert tail.wait_for(keys([f"A{tag}"]), 90), f"the worker did not start: {first.text()[-3000:]}"
        first.kill()
        second = Proc(s, tmp / f"resume-{tag}-2.log", "worker", *args, env=env)
        try:
            produce_reports(s, [f"B{tag}"])
            assert tail.wait_for(keys([f"B{tag}"]), timeout), (
                f"no findings after a restart: {second.text()[-3000:]}")
            return time.monotonic() - second.started
        finally:
            second.stop()
    finally:
        first.stop()
        tail.close()


def worker_settings(s: Settings, tmp: Path, **worker: Any) -> Settings:
    from tests.streams.helpers import free_port

    return s.replace(state_dir=str(tmp), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
                     worker={"web_port": free_port(), **worker})


class Warehouse:
    """Read-only SQL on a running worker's (or ``db sink --web``'s) ``/sql`` page, as a steward."""

    def __init__(self, s: Settings, port: int | None = None) -> None:
        from streams.auth import TokenStore

        store = TokenStore(Path(s.auth.token_file))
        user = f"steward-{uuid.uuid4().hex[:6]}"
        store.add_user(user, ["steward"])
        self.token = store.add_token(user)
        self.url = f"http://{s.worker.web_host}:{port or s.worker.web_port}/sql?format=tsv"

    def rows(self, sql: str) -> list[list[str]] | None:
        """The result rows (without the header row), or None while the page or the store is not up yet."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url, data=sql.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return [line.split("\t") for line in resp.read().decode().splitlines()[1:]]
        except (urllib.error.URLError, ConnectionError):
            return None

    def wait_reports(self, n: int, timeout: float) -> int:
        """Wait until ``nlp_latest`` holds ``n`` reports; the number it holds at the end."""
        deadline = time.monotonic() + timeout
        have = 0
        while time.monotonic() < deadline:
            rows = self.rows("SELECT uniqExact(site, accession) FROM nlp_latest")
            have = int(rows[0][0]) if rows else 0
            if have >= n:
                break
            time.sleep(0.2)  # a query on the idle page costs little: a short poll ends the wait sooner
        return have

    def doubled(self) -> dict[str, int]:
        """Rows of the latest views that are there more than once: NLP runs per report (one each),
        findings per (report, concept) beyond the one run's, reports per accession."""
        checks = {
            "nlp_latest": "SELECT count() FROM (SELECT site, accession FROM nlp_latest "
                          "GROUP BY site, accession HAVING count() > 1)",
            "reports_latest": "SELECT count() FROM (SELECT site, accession FROM reports_latest "
                              "GROUP BY site, accession HAVING count() > 1)",
            "findings_latest": "SELECT count() FROM (SELECT site, accession, concept, count() AS n "
                               "FROM findings_latest GROUP BY site, accession, concept HAVING n > 1)",
        }
        out = {}
        for view, sql in checks.items():
            rows = self.rows(sql)
            assert rows is not None, f"{view}: no answer"
            out[view] = int(rows[0][0])
        return out
