"""End-to-end latency of the ClickHouse sink: event produced -> row visible, baseline vs ours, one go.

    PYTHONPATH=. python bench/e2e_latency.py [--seconds 10] [--max-reports 5000] [--stack] [--json]

Each "report" is two events, as in the pipeline: a ReportFinalized on the reports topic and its
ReportFindings (5 findings, a measurement, a recommendation, an assessment, a critical result, chest
labels: 13 table rows in all) on the findings topic. Latency = first time a poller (50 ms period, a
separate client on the same engine, in the sink's process) sees the report's ``report_nlp`` row (inserted
after its child rows) minus the time the event was handed to the producer (sink modes: carried in the
findings' ``processed_time``; stack: recorded by the producing process; the poll reads ``report_nlp``
alone, so it costs the measured process little). "CPU ms/rep" is the CPU time of the sink's process
(sink thread, poller, librdkafka threads) per stored report, which load on the machine changes less
than wall-clock latency. Each
(sink, rate) runs in a fresh process with its own store and topics, so merges left behind by one run
do not slow the next. Rates: 10/s and 100/s for ``--seconds``,
then ``--max-reports`` produced as fast as possible (throughput = reports / (last visible - first sent)).

- baseline: a per-message sink (decode, insert that message's rows, commit its offset synchronously).
- ours: ``sinks.clickhouse.sink.ClickHouseSink`` (batches by rows / 500 ms, commit after insert).
- ``--stack``: additionally the full stack, ``radstream worker`` (NLP agent + our sink) as a subprocess,
  fed ReportFinalized events only; visibility is polled through the worker's read-only ``/sql`` page
  (every 50 ms, at the max rate every 200 ms); CPU ms/rep = the worker and its NLP child.
  ``--baseline-tree DIR`` runs, rate by rate, the worker of another source tree first (e.g. an older
  commit unpacked with ``git archive``), so both are measured in the same run; ``--rates`` picks rates;
  ``--profile DIR`` writes every thread's CPU time on the machine during each stack measurement
  (``*.cpu``) and a py-spy record of the worker (``RADSTREAM_BENCH_PYSPY``, ``..._PYSPY_ARGS``).

Real components: a local Kafka broker (started here unless ``RADSTREAM_KAFKA_BOOTSTRAP`` is set) and
embedded ClickHouse (chDB). Everything runs on this machine's cores together (producer, sink, poller,
broker), as it would in production on one host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer  # noqa: E402

from radstream.config import Settings  # noqa: E402
from sinks.clickhouse.client import open_client  # noqa: E402
from sinks.clickhouse.migrate import migrate  # noqa: E402
from sinks.clickhouse.rows import Origin, Rows, merge_rows, rows_for  # noqa: E402
from sinks.clickhouse.sink import ClickHouseSink, warehouse_loop, write_rows  # noqa: E402
from streams import serde  # noqa: E402
from streams.producer import make_producer  # noqa: E402
from streams.topics import create_topics, topic_specs  # noqa: E402

TEXT = (
    "EXAM: CT chest with contrast.\nFINDINGS: 9 mm nodule in the right upper lobe. No pleural effusion. "
    "Small pneumothorax on the left.\nIMPRESSION: Pulmonary nodule, Lung-RADS 4A. Follow-up CT in 3 months. "
    "Findings were discussed with Dr Smith at 10:30.\n"
)


def report_event(acc: str, now: datetime) -> dict[str, Any]:
    return {
        "event_id": acc,
        "site": "bench",
        "accession": acc,
        "report_id": acc,
        "version": 1,
        "status": "final",
        "patient_id": "P" + acc[-3:],
        "visit_number": "V" + acc,
        "patient_class": "outpatient",
        "modality": "CT",
        "procedure_code": "CTCHEST",
        "procedure_description": "CT chest",
        "body_part": "CHEST",
        "study_instance_uid": "1.2.3." + acc[-6:],
        "observation_time": now,
        "status_time": now,
        "received_time": now,
        "author": "bench",
        "source_format": "json",
        "text": TEXT,
    }


def findings_event(rep: dict[str, Any], now: datetime) -> dict[str, Any]:
    f = {
        "concept": "nodule",
        "category": "lung",
        "text": "nodule",
        "start": 50,
        "end": 56,
        "sentence": 1,
        "section": "findings",
        "negated": False,
        "uncertain": False,
        "historical": False,
        "hypothetical": False,
        "laterality": "right",
        "anatomy": ["right upper lobe"],
        "size_mm": 9.0,
    }
    found = [
        dict(f, concept=c, negated=c == "pleural_effusion")
        for c in ("nodule", "pleural_effusion", "pneumothorax", "nodule", "mass")
    ]
    return {
        "event_id": rep["event_id"],
        "site": rep["site"],
        "accession": rep["accession"],
        "report_version": 1,
        "status": "final",
        "patient_id": rep["patient_id"],
        "modality": "CT",
        "body_region": "chest",
        "nlp_version": "bench",
        "processed_time": now,
        "sections": [{"name": "findings", "title": "FINDINGS", "start": 30, "end": 120}],
        "findings": found,
        "measurements": [
            {"text": "9 mm", "start": 40, "end": 44, "dims_mm": [9.0], "max_mm": 9.0, "finding": 0}
        ],
        "recommendations": [
            {
                "text": "Follow-up CT in 3 months",
                "start": 150,
                "end": 175,
                "kind": "imaging_followup",
                "modality": "CT",
                "interval_days_min": 90,
                "interval_days_max": 90,
            }
        ],
        "assessments": [
            {"system": "Lung-RADS", "category": "4A", "text": "Lung-RADS 4A", "start": 130, "end": 142}
        ],
        "critical_results": [{"concept": "pneumothorax", "text": "pneumothorax", "start": 90, "end": 102}],
        "communication": {
            "text": "discussed with Dr Smith",
            "recipient": "Dr Smith",
            "time": now + timedelta(minutes=5),
        },
        "chest_labels": {"Nodule": "positive", "Effusion": "negative", "Pneumothorax": "positive"},
    }


class PerMessageSink:
    """Baseline: insert each message's rows at once and commit its offset synchronously."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = open_client(settings.clickhouse)
        migrate(self.client, settings.clickhouse.database)
        self.contracts = {s.name: s.contract for s in topic_specs(settings.topics)}

    def run(self, stop: threading.Event) -> None:
        c = Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap,
                "enable.auto.commit": False,
                "group.id": self.settings.kafka.consumer_group + ".baseline",
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            }
        )
        c.subscribe(sorted(self.contracts))
        try:
            while not stop.is_set():
                msg = c.poll(0.1)
                if msg is None or msg.error():
                    continue
                contract = self.contracts[str(msg.topic())]
                rows: Rows = {}
                merge_rows(
                    rows,
                    rows_for(
                        contract,
                        serde.decode(contract, msg.value()),
                        Origin(str(msg.topic()), msg.partition() or 0, msg.offset() or 0),
                    ),
                )
                write_rows(self.client, rows)
                c.commit(message=msg, asynchronous=False)
        finally:
            c.close()


class Poller:
    """Records the first time each accession is returned by ``query(since_ms)``: rows of (accession,
    inserted_epoch_s, processed_epoch_s) from ``report_nlp`` alone. Only rows inserted after ``since``
    (the newest seen minus a margin) are asked for, so a poll stays cheap however much is stored: the
    poller runs inside the measured process (stack: through its /sql page) and must not load it.
    ``seen[acc] = (processed, first seen)``; in the sink modes ``processed_time`` is the send time
    (``findings_event``), in the stack mode the caller substitutes the send times it recorded."""

    def __init__(self, query: Any, period: float = 0.02) -> None:
        self.query = query
        self.period = period
        self.seen: dict[str, tuple[float, float]] = {}  # accession -> (sent, seen)
        self.processed: dict[str, float] = {}  # accession -> NLP time (stack mode: when the agent ran)
        self.newest = time.time() - 60.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.time()
            try:
                rows = self.query(int((self.newest - 5.0) * 1000))
            except Exception as exc:  # a slow or failing poll must not end the measurement
                print(f"poll failed: {exc}", file=sys.stderr)
                rows = []
            for acc, inserted, processed in rows:
                self.newest = max(self.newest, float(inserted))
                if acc not in self.seen:
                    self.seen[acc] = (float(processed), t0)
                    self.processed[acc] = float(processed)
            self.stop.wait(max(0.0, self.period - (time.time() - t0)))


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


SENT: dict[str, float] = {}  # accession -> when it was handed to the producer (this process)


def produce(settings: Settings, tag: str, rate: float | None, n: int, findings_too: bool) -> float:
    """Produce n reports at ``rate``/s (None: as fast as possible); returns the start time. The send
    time of each accession goes to ``SENT`` (and into the events' received/processed times)."""
    producer = make_producer(settings.kafka, **{"linger.ms": 2})
    t = settings.topics
    start = time.time()
    for i in range(n):
        if rate:
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        acc = f"{tag}{i:07d}"
        now = datetime.now(UTC)
        SENT[acc] = now.timestamp()
        rep = report_event(acc, now)
        key = f"bench|{acc}".encode()
        producer.produce(t.reports, key=key, value=serde.encode("report_finalized", rep))
        if findings_too:
            producer.produce(
                t.findings, key=key, value=serde.encode("report_findings", findings_event(rep, now))
            )
        producer.poll(0)
    producer.flush(60)
    return start


def summarise(seen: dict[str, tuple[float, float]], tag: str, n: int, start: float) -> dict[str, Any]:
    mine = [v for a, v in seen.items() if a.startswith(tag)]
    lat = [b - a for a, b in mine]
    last = max((b for _, b in mine), default=float("nan"))
    return {
        "reports": n,
        "visible": len(lat),
        "p50_ms": pct(lat, 50) * 1000,
        "p95_ms": pct(lat, 95) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "max_ms": max(lat, default=float("nan")) * 1000,
        "reports_per_s": len(lat) / (last - start) if lat else 0.0,
    }


def fresh_settings(base: Settings, name: str) -> Settings:
    prefix = f"b{uuid.uuid4().hex[:6]}."
    topics = {f: prefix + getattr(base.topics, f) for f in base.topics.__dataclass_fields__}
    s = base.replace(topics=topics, kafka={"consumer_group": f"bench-{name}-{uuid.uuid4().hex[:6]}"})
    create_topics(s.kafka, s.topics)
    time.sleep(1.0)
    return s


# report_nlp rows: written after their child rows, so a visible header means the report is complete
POLL_SQL = (
    "SELECT accession, toUnixTimestamp64Milli(inserted_at) / 1e3, "
    "toUnixTimestamp64Micro(processed_time) / 1e6 FROM report_nlp "
    "WHERE inserted_at >= fromUnixTimestamp64Milli({since})"
)


def child(mode: str, tags: list[str], counts: list[int], timeout: float) -> None:
    """Runs in its own process: the sink (``mode``) + the poller; prints one JSON line per tag when seen."""
    from radstream.config import load_settings

    if os.environ.get("RADSTREAM_BENCH_DEBUG"):  # the sink's flush log (insert / commit ms, batch age)
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(relativeCreated)d %(message)s")
        logging.getLogger("confluent_kafka").setLevel(logging.INFO)
    s = load_settings()
    sink: Any = (warehouse_loop(s.kafka, s.topics, ClickHouseSink(s.clickhouse, s.topics)) if mode == "ours"
                 else PerMessageSink(s))
    reader = open_client(s.clickhouse)
    poller = Poller(lambda since: [tuple(r) for r in reader.query(POLL_SQL.format(since=since)).result_rows],
                    period=float(os.environ.get("RADSTREAM_BENCH_POLL_S", "0.05")))
    stop = threading.Event()
    th = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    th.start()
    poller.thread.start()
    print("READY", flush=True)
    for tag, n in zip(tags, counts, strict=True):
        deadline = time.time() + timeout
        cpu0 = time.process_time()
        while time.time() < deadline and sum(1 for a in poller.seen if a.startswith(tag)) < n:
            time.sleep(0.05)
        cpu = time.process_time() - cpu0  # this process: sink thread + poller + librdkafka threads
        seen = {a: v for a, v in poller.seen.items() if a.startswith(tag)}
        print(json.dumps({"tag": tag, "seen": seen, "cpu_s": cpu}), flush=True)
    stop.set()
    th.join(60)
    poller.stop.set()


def child_env(s: Settings, state: Path, web_port: int | None = None, tree: Path = REPO) -> dict[str, str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(tree),
        RADSTREAM_STATE_DIR=str(state),
        RADSTREAM_KAFKA_BOOTSTRAP=s.kafka.bootstrap,
        RADSTREAM_KAFKA_CONSUMER_GROUP=s.kafka.consumer_group,
    )
    if web_port:
        env["RADSTREAM_WORKER_WEB_PORT"] = str(web_port)
    for f in s.topics.__dataclass_fields__:
        env[f"RADSTREAM_TOPICS_{f.upper()}"] = getattr(s.topics, f)
    return env


def run_sink_mode(base: Settings, mode: str, rate: float | None, n: int, tmp: Path) -> dict[str, Any]:
    s = fresh_settings(base, mode)
    warm, tag = "w" + uuid.uuid4().hex[:5], "m" + uuid.uuid4().hex[:5]
    timeout = max(120.0, n / 20)
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--tags",
            f"{warm},{tag}",
            "--counts",
            f"5,{n}",
            "--timeout",
            str(timeout),
        ],
        cwd=REPO,
        env=child_env(s, tmp / uuid.uuid4().hex[:6]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "READY"
        produce(s, warm, None, 5, True)
        json.loads(proc.stdout.readline())  # the sink is assigned and has written its first parts
        start = produce(s, tag, rate, n, True)
        got = json.loads(proc.stdout.readline())
        res = summarise({a: tuple(v) for a, v in got["seen"].items()}, tag, n, start)
        res["cpu_ms_per_report"] = got["cpu_s"] * 1000 / max(1, res["visible"])
    finally:
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
    res.update(mode=mode, rate="max" if rate is None else f"{rate:g}/s")
    print(json.dumps(res), file=sys.stderr)
    return res


def cpu_snapshot() -> dict[tuple[int, int], tuple[str, float]]:
    """CPU seconds (user + system) of every thread on the machine: (pid, tid) -> (name, seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, int], tuple[str, float]] = {}
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:90]
            for task in (pid_dir / "task").iterdir():
                stat = (task / "stat").read_text()
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                out[(int(pid_dir.name), int(task.name))] = (f"{cmd} [{comm}]",
                                                           (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, ValueError):
            continue
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by process ``root`` and its live descendants (the worker's NLP child)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(stat_file.parent.name)
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid, cpu in used.items():
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            total += cpu
    return total


def write_cpu_report(path: Path, before: dict[tuple[int, int], tuple[str, float]],
                     after: dict[tuple[int, int], tuple[str, float]], seconds: float, reports: int) -> None:
    """Where the machine's CPU went while the measured reports flowed: per process and per thread."""
    by_proc: dict[int, float] = {}
    names: dict[int, str] = {}
    threads: list[tuple[float, str]] = []
    for key, (name, cpu) in after.items():
        used = cpu - before.get(key, (name, 0.0))[1]
        if used <= 0:
            continue
        by_proc[key[0]] = by_proc.get(key[0], 0.0) + used
        names[key[0]] = name.rsplit(" [", 1)[0]
        threads.append((used, f"{key[0]}/{key[1]} {name}"))
    total = sum(by_proc.values())
    lines = [f"window {seconds:.1f} s, {reports} reports, CPU {total:.1f} s "
             f"({100 * total / seconds:.0f}% of one core; {total * 1000 / max(1, reports):.2f} ms/report)"]
    for pid, used in sorted(by_proc.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"{used:7.2f} s {100 * used / seconds:5.0f}%  {pid} {names[pid]}")
    lines.append("threads:")
    lines += [f"{used:7.2f} s  {name}" for used, name in sorted(threads, reverse=True)[:25]]
    path.write_text("\n".join(lines) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_stack_mode(base: Settings, rate: float | None, n: int, tmp: Path,
                   split: bool = False, profile: str | None = None, tree: Path = REPO,
                   label: str = "") -> dict[str, Any]:
    """The full stack: ``radstream worker`` (NLP agent + our sink) fed ReportFinalized events only;
    visibility polled through the worker's read-only ``/sql`` page (50 ms period). ``split``:
    ``radstream worker --no-sink`` and ``radstream db sink`` as two processes, polled through the
    sink's page. ``tree``: the source tree the worker runs from (``--baseline-tree``: an older commit
    measured in the same run)."""
    s = fresh_settings(base, "stack")
    port = free_port()
    state = tmp / uuid.uuid4().hex[:6]
    state.mkdir(parents=True)
    log = open(state / "worker.log", "wb")  # noqa: SIM115 - closed in the finally below
    procs = [subprocess.Popen(
        [sys.executable, "-m", "radstream", "worker", *(["--no-sink"] if split else [])],
        cwd=tree,
        env=child_env(s, state, free_port() if split else port, tree),
        stdout=log,
        stderr=subprocess.STDOUT,
    )]
    if split:
        procs.append(subprocess.Popen([sys.executable, "-m", "radstream", "db", "sink"], cwd=tree,
                                      env=child_env(s, state, port, tree), stdout=log,
                                      stderr=subprocess.STDOUT))

    from radstream.warehouse import auth_headers, open_ours

    headers = auth_headers(s.replace(state_dir=str(state)))  # the local token of the worker's state dir

    # the analysts' tables hold research accessions (keyed with the installation key of the worker's
    # state dir, processors.ingest.research): mapped back to the ones the bench sent
    from processors.ingest.pseudonym import keyed_identifier
    from radstream.text_deid import research_key

    clinical: dict[str, str] = {}

    def sent_as(research: str) -> str:
        if not clinical:
            key = research_key(s.replace(state_dir=str(state)))
            clinical.update({keyed_identifier(key, "accession", a): a for a in list(SENT)})
        if research not in clinical:  # sent after the map was made
            key = research_key(s.replace(state_dir=str(state)))
            clinical.update({keyed_identifier(key, "accession", a): a for a in list(SENT)
                             if a not in clinical.values()})
        return clinical.get(research, research)

    def query(since: int) -> list[tuple[str, float, float]]:
        sql = POLL_SQL.format(since=since)
        url = f"http://127.0.0.1:{port}/sql?format=tsv"
        req = urllib.request.Request(url, data=sql.encode(), method="POST", headers=headers)
        try:
            with open_ours(s, req, 5) as resp:  # the token only to our own worker (streams.peer)
                lines = resp.read().decode().splitlines()[1:]
        except OSError:
            return []
        return [(sent_as(a), float(i), float(p)) for a, i, p in (line.split("\t") for line in lines)]

    # every poll is a FINAL query over the growing report_nlp, in the measured process: the max-rate run
    # (a throughput figure over many seconds) polls every 200 ms, the latency runs every 50 ms
    period = float(os.environ.get("RADSTREAM_BENCH_POLL_S", "0.05" if rate else "0.2"))
    poller = Poller(query, period=period)
    poller.thread.start()
    spy: subprocess.Popen[bytes] | None = None
    warm, tag = "w" + uuid.uuid4().hex[:5], "m" + uuid.uuid4().hex[:5]
    try:
        produce(s, warm, None, 5, False)
        deadline = time.time() + 180
        while time.time() < deadline and sum(1 for a in poller.seen if a.startswith(warm)) < 5:
            time.sleep(0.1)
        assert sum(1 for a in poller.seen if a.startswith(warm)) == 5, "stack: warm-up never visible"
        if profile:  # the measured part only, worker and its NLP child(ren)
            rate_name = "max" if rate is None else f"{rate:g}"
            out = Path(profile) / f"worker-{label or 'ours'}-{rate_name}{'-split' if split else ''}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            extra = shlex.split(os.environ.get("RADSTREAM_BENCH_PYSPY_ARGS", "--rate 50"))  # e.g. --gil
            pyspy = os.environ.get("RADSTREAM_BENCH_PYSPY", "py-spy")  # "": the CPU table alone
        if profile and pyspy:
            spy = subprocess.Popen([pyspy, "record", "--pid",
                                    str(procs[0].pid), "--subprocesses", "--format", "raw",
                                    "--output", str(out), *extra],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = cpu_snapshot() if profile else {}
        worker_cpu0 = sum(tree_cpu(p.pid) for p in procs)
        start = produce(s, tag, rate, n, False)
        deadline = time.time() + max(180.0, n / 10)
        while time.time() < deadline and sum(1 for a in poller.seen if a.startswith(tag)) < n:
            time.sleep(0.1)
        worker_cpu = sum(tree_cpu(p.pid) for p in procs) - worker_cpu0
        if profile:
            write_cpu_report(out.with_suffix(".cpu"), cpu0, cpu_snapshot(), time.time() - start, n)
        seen = {a: (SENT[a], v[1]) for a, v in poller.seen.items() if a.startswith(tag)}
        res = summarise(seen, tag, n, start)
        res["cpu_ms_per_report"] = worker_cpu * 1000 / max(1, res["visible"])  # worker + NLP child
        # the split: produced -> NLP agent ran (processed_time), NLP agent -> row visible (sink). The research
        # copy moves processed_time back by the patient's whole days: the rest of a day is the latency
        nlp = [(poller.processed[a] - SENT[a]) % 86400 for a in seen]
        res["nlp_p50_ms"], res["nlp_p95_ms"] = pct(nlp, 50) * 1000, pct(nlp, 95) * 1000
    finally:
        poller.stop.set()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(30)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    mode = "stack split (worker | sink)" if split else "stack (worker: NLP + sink)"
    if label:
        mode = f"{mode[:-1]}, {label})" if not split else f"{mode} {label}"
    res.update(mode=mode, rate="max" if rate is None else f"{rate:g}/s")
    print(json.dumps(res), file=sys.stderr)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-reports", type=int, default=5000)
    ap.add_argument("--stack", action="store_true", help="also measure the full worker (NLP + sink)")
    ap.add_argument("--stack-max-reports", type=int, default=3000)
    ap.add_argument("--split", action="store_true",
                    help="with --stack: also `worker --no-sink` + `db sink` as two processes")
    ap.add_argument("--modes", default="ours,baseline")
    ap.add_argument("--baseline-tree", metavar="DIR",
                    help="with --stack: also run the worker from DIR (e.g. `git archive <commit>` "
                         "unpacked there), rate by rate before this tree's")
    ap.add_argument("--rates", default="10,100,max", help="reports/s to offer, comma-separated ('max')")
    ap.add_argument("--profile", metavar="DIR",
                    help="stack: per-thread CPU of the machine during each measurement into DIR/*.cpu, "
                         "and a py-spy record of the worker and its NLP child (py-spy from "
                         "RADSTREAM_BENCH_PYSPY, default: on PATH; '' = no py-spy)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tags", help=argparse.SUPPRESS)
    ap.add_argument("--counts", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.tags.split(","), [int(c) for c in args.counts.split(",")], args.timeout)
        return
    tmp = Path(tempfile.mkdtemp(prefix="radstream-bench-"))
    base = Settings(state_dir=str(tmp))
    started = None
    bootstrap = os.environ.get("RADSTREAM_KAFKA_BOOTSTRAP")
    if not bootstrap:
        from radstream.stack import kafka

        started = tmp / "kafka"
        bootstrap = kafka.start_kafka(started, tie_to_parent=True).bootstrap
    base = base.replace(kafka={"bootstrap": bootstrap})
    rates: list[float | None] = [None if r == "max" else float(r) for r in args.rates.split(",") if r]
    rows: list[dict[str, Any]] = []
    try:
        for mode in [m for m in args.modes.split(",") if m]:
            for rate in rates:
                n = args.max_reports if rate is None else int(rate * args.seconds)
                if mode == "baseline" and rate is None:
                    n = min(n, 500)  # a per-message sink needs minutes for more
                rows.append(run_sink_mode(base, mode, rate, n, tmp))
        if args.stack:
            for rate in rates:
                n = args.stack_max_reports if rate is None else int(rate * args.seconds)
                if args.baseline_tree:  # the same rate, back to back: the older worker, then this one
                    rows.append(run_stack_mode(base, rate, n, tmp, profile=args.profile,
                                               tree=Path(args.baseline_tree).resolve(), label="baseline"))
                rows.append(run_stack_mode(base, rate, n, tmp, profile=args.profile,
                                           label="ours" if args.baseline_tree else ""))
                if args.split:
                    rows.append(run_stack_mode(base, rate, n, tmp, split=True))
    finally:
        if started is not None:
            from radstream.stack import kafka

            kafka.stop_kafka(started)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"e2e latency, event produced -> row visible ({os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.machine()}); poll period 50 ms, stack max 200 ms "
        "(RADSTREAM_BENCH_POLL_S)"
    )
    print(
        f"{'mode':38} {'rate':>7} {'reports':>8} {'visible':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'stored/s':>9} {'CPU ms/rep':>10}"
    )
    for r in rows:
        print(
            f"{r['mode']:38} {r['rate']:>7} {r['reports']:>8} {r['visible']:>8} {r['p50_ms']:8.0f} "
            f"{r['p95_ms']:8.0f} {r['p99_ms']:8.0f} {r['max_ms']:8.0f} {r['reports_per_s']:9.0f} "
            f"{r.get('cpu_ms_per_report', float('nan')):10.2f}"
        )
    for r in rows:
        if "nlp_p50_ms" in r:
            print(f"{r['mode']} {r['rate']}: produced -> NLP agent done p50 {r['nlp_p50_ms']:.0f} ms, "
                  f"p95 {r['nlp_p95_ms']:.0f} ms (the rest is the sink)")


if __name__ == "__main__":
    main()
