"""Benchmark: moving studies out of the same Orthanc with the same synthetic data, in one go.

- baseline: dcmtk ``movescu`` (one C-MOVE per study, sequential) -> dcmtk ``storescp`` writing files,
  with ``TCP_NODELAY=1`` (dcmtk's switch for Nagle; one extra round without it, for reference);
- ours: ``radstream retrieve``-style requests on Kafka -> ``radstream dicom worker`` (C-FIND + C-MOVE,
  one association at a time) -> ``radstream dicom scp`` (journals, writes, produces received_instance).

Both runs start after everything is up and stop when the last file is on disk (ours: when the last
request's final status is on Kafka and the SCP has written every file). Each pair runs ``--rounds``
times, alternating, and the table shows every round and the best of each.

Ours runs with de-identification off and on (``--deid off,on``): on, the bench's project is de-identified
with the default options (Basic Profile + Modified Dates). The table shows CPU ms per image per role
beside dcmtk's; before the rounds the bench also measures the de-identification of one of its instances
in-process (dcmread + apply + dcmwrite, and apply_file), CPU ms per instance.

``--variant BENCH_TREE=<checkout>``: extra rounds (de-identification off; ``,BENCH_DEID=on`` on, and
``,BENCH_SCPS=2`` with two SCP processes) with the worker and the SCP of another checkout, on the same
Orthanc and Kafka, interleaved with ours: an A/B less exposed to the host's load than two runs.

``BENCH_VERBOSE=1``: the worker logs at debug level, and each of our runs also prints its timeline, the
broker's CPU while our worker and SCP are connected and idle (2 s before the clock starts), and during the
timed part the broker's CPU per thread and the requests each process sent it (``kafka_sends``).
``BENCH_PYSPY=<dir>``: py-spy profiles (raw, per thread) of our SCP and worker during the timed part
(py-spy of the venv, or ``BENCH_PYSPY_BIN=<path>``).

Usage: ``python bench/dicom_move.py [--studies 10] [--images 50] [--kb 128] [--rounds 2] [--deid off,on]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERBOSE = ["-v"] if os.environ.get("BENCH_VERBOSE") else []
sys.path.insert(0, str(ROOT))

from radstream.config import Settings  # noqa: E402
from radstream.stack import kafka, orthanc  # noqa: E402
from sinks.dicom.seed import seed  # noqa: E402
from sinks.dicom.synth import StudySpec, instance_bytes, rows_for_kb  # noqa: E402
from streams import serde  # noqa: E402
from streams.consumer import consume_now  # noqa: E402
from streams.producer import make_producer, produce  # noqa: E402
from streams.topics import create_topics  # noqa: E402


def count_files(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) a live process has used so far; 0 if unknown."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a live process and its live descendants (``dicom scp --processes N``)."""
    if not pid:
        return 0.0
    total = cpu_s(pid)
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(tree_cpu_s(int(k)) for k in kids)


def children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# CPU seconds per role during the timed part of the last run (printed with the table).
Cpu = dict[str, float]


def thread_cpu_s(pid: int | None) -> dict[str, float]:
    """CPU seconds per thread name (``comm``, digits dropped: a pool is one row) of a live process."""
    import re

    out: dict[str, float] = {}
    if not pid:
        return out
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = re.sub(r"\d+", "N", comm)
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def kafka_sends(port: int) -> dict[int, tuple[int, int]]:
    """Per client process: (connections to the broker at ``port``, data segments sent on them so far).

    On loopback a request to the broker is one segment (the events are small): their difference over
    the timed part counts each process's requests, which the broker's CPU follows (``BENCH_VERBOSE``)."""
    import re

    try:
        out = subprocess.run(["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    sends: dict[int, tuple[int, int]] = {}
    pid = 0
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            m = re.search(r"pid=(\d+)", line)
            pid = int(m.group(1)) if m else 0
            continue
        m = re.search(r"data_segs_out:(\d+)", line)
        conns, segs = sends.get(pid, (0, 0))
        sends[pid] = (conns + 1, segs + (int(m.group(1)) if m else 0))
    return sends


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def run_dcmtk(settings: Settings, studies: list[StudySpec], out: Path, nodelay: bool = True,
              parallel: int = 1, pids: dict[str, int] | None = None) -> tuple[float, Cpu]:
    """dcmtk reads TCP_NODELAY from the environment; without it storescp's responses wait for Nagle."""
    out.mkdir(parents=True)
    env = dict(os.environ, TCP_NODELAY="1") if nodelay else {k: v for k, v in os.environ.items()
                                                              if k != "TCP_NODELAY"}
    cmd = ["storescp", "--aetitle", settings.research.ae_title, "--output-directory", str(out),
           str(settings.research.port)]
    scp = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(settings.research.port)
        pids = pids or {}
        c0 = {"pacs": cpu_s(pids.get("pacs")), "kafka": cpu_s(pids.get("kafka")), "scp": cpu_s(scp.pid),
              "mover": children_cpu_s()}
        t0 = time.perf_counter()
        running: list[subprocess.Popen[bytes]] = []
        for s in studies:
            while len(running) >= parallel:
                running.pop(0).wait()
            running.append(subprocess.Popen(
                ["movescu", "-S", "-aet", settings.pacs.calling_ae, "-aec", settings.pacs.ae_title,
                 "-aem", settings.research.ae_title, "-k", "QueryRetrieveLevel=STUDY",
                 "-k", f"StudyInstanceUID={s.study_uid}", settings.pacs.host, str(settings.pacs.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        for p in running:
            if p.wait() != 0:
                raise RuntimeError("movescu failed")
        want = sum(s.images for s in studies)
        while count_files(out) < want:
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        c1 = {"pacs": cpu_s(pids.get("pacs")), "kafka": cpu_s(pids.get("kafka")), "scp": cpu_s(scp.pid),
              "mover": children_cpu_s()}
        return elapsed, {k: c1[k] - c0[k] for k in c0}
    finally:
        scp.send_signal(signal.SIGTERM)
        scp.wait(10)


def _env(settings: Settings) -> dict[str, str]:
    t = settings.topics
    return dict(os.environ, PYTHONPATH=str(ROOT), RADSTREAM_STATE_DIR=settings.state_dir,
                RADSTREAM_KAFKA_BOOTSTRAP=settings.kafka.bootstrap,
                RADSTREAM_KAFKA_CONSUMER_GROUP=settings.kafka.consumer_group,
                RADSTREAM_TOPICS_RETRIEVAL_REQUESTS=t.retrieval_requests,
                RADSTREAM_TOPICS_RETRIEVAL_STATUS=t.retrieval_status,
                RADSTREAM_TOPICS_RECEIVED_INSTANCES=t.received_instances,
                RADSTREAM_TOPICS_DEAD_LETTER=t.dead_letter,
                RADSTREAM_TOPICS_PROJECTS=t.projects,
                RADSTREAM_TOPICS_RECEIVED_RESTRICTED=t.received_restricted,
                RADSTREAM_TOPICS_QUARANTINE=t.quarantine,
                RADSTREAM_TOPICS_DICOM_EXPECTED=t.dicom_expected,
                RADSTREAM_PACS_PORT=str(settings.pacs.port),
                RADSTREAM_PACS_HTTP_PORT=str(settings.pacs.http_port),
                RADSTREAM_PACS_MAX_ASSOCIATIONS=str(settings.pacs.max_associations),
                RADSTREAM_RESEARCH_PORT=str(settings.research.port),
                RADSTREAM_RESEARCH_STORE_DIR=str(settings.research.store_dir),
                RADSTREAM_RESEARCH_PROCESSES=str(settings.research.processes))


BENCH_PROJECT = "BENCH"


def deid_env(on: bool) -> dict[str, str]:
    """The SCP's de-identification key when the round de-identifies (the project is registered so, below)."""
    return {"RADSTREAM_INGEST_PSEUDONYM_KEY": "bench-" + uuid.uuid4().hex} if on else {}


def register_bench_project(settings: Settings, deidentified: bool) -> None:
    """The one place that knows how the bench's project is registered: identified (synthetic data) for the
    de-id off rounds, de-identified for the on rounds."""
    from sinks.dicom.projects import Project, publish

    publish(settings.kafka, settings.topics, Project(
        BENCH_PROJECT, settings.research.ae_title, "bench", "bench", identified=not deidentified,
        irb_reference="" if deidentified else "none: synthetic bench data"))


def deid_cpu_ms(spec: StudySpec, n: int = 300) -> dict[str, float]:
    """CPU ms per instance of de-identifying one of the bench's instances in this process."""
    import io

    from pydicom import dcmread
    from pydicom.filewriter import dcmwrite

    from sinks.dicom.deid import Deidentifier

    raw = instance_bytes(spec, 0)
    d = Deidentifier(b"bench-key-of-32-bytes-----------")

    def classic() -> None:
        ds = dcmread(io.BytesIO(raw))
        d.apply(ds, BENCH_PROJECT)
        dcmwrite(io.BytesIO(), ds, enforce_file_format=True)

    def read_only() -> None:
        dcmread(io.BytesIO(raw))

    out = {}
    for name, fn in (("dcmread", read_only), ("dcmread+apply+dcmwrite", classic),
                     ("apply_file", lambda: d.apply_file(raw, BENCH_PROJECT))):
        for _ in range(20):
            fn()
        t = time.process_time()
        for _ in range(n):
            fn()
        out[name] = 1000 * (time.process_time() - t) / n
    return out


def check_deid(out: Path, on: bool) -> None:
    """A de-identified round must have stored de-identified files (and a plain one plain files)."""
    from pydicom import dcmread

    first = next(p for p in out.rglob("*.dcm"))
    said = dcmread(first, stop_before_pixels=True).get("PatientIdentityRemoved", "")
    if (said == "YES") != on:
        raise RuntimeError(f"de-identification {'on' if on else 'off'} but {first} says {said!r}")


def run_ours(settings: Settings, studies: list[StudySpec], out: Path, associations: int = 1,
             scp_processes: int = 1, pids: dict[str, int] | None = None,
             extra_env: dict[str, str] | None = None, deid: bool = False) -> tuple[float, Cpu]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    prefix = f"b{uuid.uuid4().hex[:8]}."
    settings = settings.replace(
        topics={f: prefix + getattr(settings.topics, f) for f in
                ("retrieval_requests", "retrieval_status", "received_instances", "dead_letter", "projects",
                 "received_restricted", "quarantine", "dicom_expected")},
        research={"store_dir": str(out), "processes": scp_processes},
        kafka={"consumer_group": prefix + "worker"},
        pacs={"max_associations": associations})
    create_topics(settings.kafka, settings.topics)
    register_bench_project(settings, deid)
    time.sleep(1.0)
    env = {**_env(settings), **(extra_env or {})}
    # BENCH_TREE=<path> (a --variant): worker and SCP from another checkout, for an A/B on one stack
    tree = Path(env.pop("BENCH_TREE", ROOT))
    env["PYTHONPATH"] = str(tree)
    logs = Path(settings.state_dir) / "bench-logs"
    logs.mkdir(exist_ok=True)
    scp = subprocess.Popen([sys.executable, "-m", "radstream", "dicom", "scp"], env=env, cwd=tree,
                           stdout=subprocess.DEVNULL, stderr=open(logs / f"{prefix}scp.log", "wb"))  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "radstream", "dicom", "worker", *VERBOSE], env=env,
                              cwd=tree,
                              stdout=subprocess.DEVNULL, stderr=open(logs / f"{prefix}worker.log", "wb"))  # noqa: SIM115
    status = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": prefix + "probe",
                       "enable.auto.commit": False})
    topic = settings.topics.retrieval_status
    parts = status.list_topics(topic, timeout=10).topics[topic].partitions
    status.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    try:
        wait_port(settings.research.port)
        time.sleep(3.0)  # the worker joins its consumer group
        producer = make_producer(settings.kafka)
        # connect the bench's own producer before the clock starts (its first connection took ~0.1 s)
        producer.produce(settings.topics.dead_letter, value=b"bench warm-up")
        producer.flush(10)
        # one request for a study the PACS does not have, answered before the clock starts: the worker
        # loads its view of the projects topic on its first request (~0.6 s here, once per process),
        # which every timed run of a fresh worker paid otherwise
        warm = str(uuid.uuid4())
        produce(producer, settings.topics.retrieval_requests, "retrieval_requested", warm, {
            "request_id": warm, "project_id": BENCH_PROJECT, "requester": "bench",
            "requester_roles": ["steward"], "accession": "NO-SUCH-STUDY",
            "destination_ae": settings.research.ae_title,
            "requested_time": datetime.now(UTC)})
        producer.flush(10)
        warm_until, warmed = time.perf_counter() + 60, False
        while not warmed and time.perf_counter() < warm_until:
            for m in consume_now(status, 100, 0.1):
                e = {} if m.error() else serde.decode("retrieval_status", m.value())
                warmed |= e.get("request_id") == warm and e.get("state") in ("completed", "partial", "failed")
        pids = pids or {}

        def cpu_now() -> Cpu:
            return {"pacs": cpu_s(pids.get("pacs")), "kafka": cpu_s(pids.get("kafka")),
                    "scp": tree_cpu_s(scp.pid), "mover": cpu_s(worker.pid)}

        if VERBOSE:  # what the broker spends while worker and SCP are connected and idle
            k0 = cpu_s(pids.get("kafka"))
            time.sleep(2.0)
            print(f"ours: broker CPU while idle {1000 * (cpu_s(pids.get('kafka')) - k0) / 2.0:.0f} ms/s",
                  file=sys.stderr)
        kport = int(settings.kafka.bootstrap.rsplit(":", 1)[1])
        sends0 = kafka_sends(kport) if VERBOSE else {}
        b0 = thread_cpu_s(pids.get("kafka")) if VERBOSE else {}
        spies = []
        if os.environ.get("BENCH_PYSPY"):  # a py-spy profile of the SCP and the worker, timed part only
            spy = os.environ.get("BENCH_PYSPY_BIN") or str(Path(sys.executable).parent / "py-spy")
            for role, pid in (("scp", scp.pid), ("worker", worker.pid)):
                spies.append(subprocess.Popen(
                    [spy, "record", "-p", str(pid), "-r", "250",
                     "--nonblocking", "--format", "raw", "-t",
                     "-o", f"{os.environ['BENCH_PYSPY']}/{prefix}{role}.txt"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)
        c0 = cpu_now()
        t0 = time.perf_counter()
        ids = set()
        for s in studies:
            rid = str(uuid.uuid4())
            ids.add(rid)
            produce(producer, settings.topics.retrieval_requests, "retrieval_requested", rid, {
                "request_id": rid, "project_id": BENCH_PROJECT, "requester": "bench",
                "requester_roles": ["steward"], "accession": s.accession,
                "destination_ae": settings.research.ae_title, "requested_time": datetime.now(UTC)})
        producer.flush(10)
        t_sent = time.perf_counter()
        finals: dict[str, str] = {}
        while len(finals) < len(ids):
            for m in consume_now(status, 100, 0.1):  # consume() would hold a final status up to 0.1 s
                if m.error():
                    continue
                e = serde.decode("retrieval_status", m.value())
                if e.get("error"):  # a retry or a failure: say why (a slow round is then explained)
                    print(f"ours: {e['request_id'][:8]} {e['state']} attempt {e['attempt']} after "
                          f"{time.perf_counter() - t0:.3f} s: {e['error']}", file=sys.stderr)
                if e["state"] in ("completed", "partial", "failed") and e["request_id"] in ids:
                    finals[e["request_id"]] = e["state"]
            if time.perf_counter() - t0 > 300:
                raise TimeoutError(f"ours: final status for {len(finals)} of {len(ids)} requests "
                                   f"after 300 s; "
                                   f"see {logs}")
        t_final = time.perf_counter()
        want = sum(s.images for s in studies)
        while count_files(out) < want:
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        c1 = cpu_now()
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        if VERBOSE:
            b1 = thread_cpu_s(pids.get("kafka"))
            busy = sorted(((b1[k] - b0.get(k, 0.0), k) for k in b1), reverse=True)
            print("ours: broker CPU ms per thread during the timed part: " + ", ".join(
                f"{k} {1000 * v:.0f}" for v, k in busy if v > 0), file=sys.stderr)
            sends1 = kafka_sends(kport)
            roles = {worker.pid: "worker", scp.pid: "scp", os.getpid(): "bench"}
            with contextlib.suppress(OSError):
                kids = Path(f"/proc/{scp.pid}/task/{scp.pid}/children").read_text().split()
                roles.update({int(k): "scp" for k in kids})
            per: dict[str, list[int]] = {}
            for pid, (conns, segs) in sends1.items():
                row = per.setdefault(roles.get(pid, f"pid {pid}"), [0, 0])
                row[0] += conns
                row[1] += segs - sends0.get(pid, (0, 0))[1]
            print("ours: requests to the broker during the timed part (connections): " + ", ".join(
                f"{r} {n} ({c})" for r, (c, n) in sorted(per.items())), file=sys.stderr)
            print(f"ours: t0 {datetime.now(UTC).timestamp() - elapsed:.3f} (epoch), requests on Kafka "
                  f"after {t_sent - t0:.3f} s, every final status after {t_final - t0:.3f} s, files "
                  f"{elapsed:.3f} s", file=sys.stderr)
        bad = {k: v for k, v in finals.items() if v != "completed"}
        if bad:
            raise RuntimeError(f"ours: requests not completed: {bad}")
        return elapsed, {k: c1[k] - c0[k] for k in c0}
    finally:
        status.close()
        for p in (worker, scp):
            p.send_signal(signal.SIGTERM)
        for p in (worker, scp):
            p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--kb", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed rounds of each x1 pair first (the broker's JIT, Orthanc's caches)")
    ap.add_argument("--only-ours", action="store_true", help="skip dcmtk (profiling)")
    ap.add_argument("--associations", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                    help="concurrent moves to compare, e.g. 1,2 (dcmtk: parallel movescu processes)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                    help="an extra row of ours per round with these environment settings (paired A/B)")
    ap.add_argument("--no-nagle", action="store_true", help="skip the dcmtk round with Nagle on (~20 s)")
    ap.add_argument("--no-scp-processes", action="store_true",
                    help="skip the variant with one SCP process per association (research.processes)")
    ap.add_argument("--deid", type=lambda s: [x.strip() == "on" for x in s.split(",")], default=[False, True],
                    metavar="off,on", help="rounds of ours with de-identification off and/or on")
    args = ap.parse_args()
    for tool in ("storescp", "movescu"):
        if shutil.which(tool) is None:
            orthanc.install_packages()
    tmp = Path(tempfile.mkdtemp(prefix="radstream-bench-"))
    base = Settings(state_dir=str(tmp))
    kst = None
    try:
        settings = base.replace(**orthanc.start(base, tmp))
        kst = kafka.start_kafka(tmp / "kafka")
        settings = settings.replace(kafka={"bootstrap": kst.bootstrap})
        rows = rows_for_kb(args.kb)
        t = time.perf_counter()
        studies = seed(settings.pacs, args.studies, args.images, rows=rows)
        print(f"seeded {args.studies} studies x {args.images} images of {rows}x{rows}x16 bit "
              f"({rows * rows * 2 // 1024} KiB pixel data) in {time.perf_counter() - t:.1f} s")
        n = args.studies * args.images
        ostate = orthanc._read_state(tmp) or {}
        pids = {"pacs": int(ostate.get("pid") or 0), "kafka": int(kst.pid or 0)}
        results: list[tuple[str, int, float, Cpu]] = []
        if not args.only_ours and not args.no_nagle:
            d, cpu = run_dcmtk(settings, studies, tmp / "dcmtk-nagle", nodelay=False, pids=pids)
            results.append(("dcmtk, Nagle on (default)", 1, d, cpu))
        for w in range(args.warmup):
            if not args.only_ours:
                run_dcmtk(settings, studies, tmp / f"warm-dcmtk-{w}", pids=pids)
            run_ours(settings, studies, tmp / f"warm-ours-{w}", pids=pids)
        per_instance = deid_cpu_ms(studies[0])
        for r in range(args.rounds):
            for par in args.associations:
                if not args.only_ours:
                    d, cpu = run_dcmtk(settings, studies, tmp / f"dcmtk-{r}-{par}", parallel=par, pids=pids)
                    results.append((f"dcmtk movescu -> storescp x{par}", r + 1, d, cpu))
                for on in args.deid:
                    tag = " [de-id]" if on else ""
                    o, cpu = run_ours(settings, studies, tmp / f"ours-{r}-{par}-{on}", associations=par,
                                      pids=pids, extra_env=deid_env(on), deid=on)
                    results.append((f"radstream worker -> scp x{par}{tag}", r + 1, o, cpu))
                    check_deid(tmp / f"ours-{r}-{par}-{on}", on)
                    if par > 1 and not args.no_scp_processes:
                        o, cpu = run_ours(settings, studies, tmp / f"ours-{r}-{par}p-{on}", associations=par,
                                          scp_processes=par, pids=pids, extra_env=deid_env(on), deid=on)
                        results.append((f"radstream worker -> {par} scps x{par}{tag}", r + 1, o, cpu))
                for v in args.variant:
                    extra = dict(kv.split("=", 1) for kv in v.split(","))
                    # BENCH_DEID=on: the variant de-identifies; BENCH_SCPS=N: N SCP processes
                    on, scps = extra.pop("BENCH_DEID", "off") == "on", int(extra.pop("BENCH_SCPS", "1"))
                    o, cpu = run_ours(settings, studies, tmp / f"ours-{r}-{par}-{len(results)}",
                                      associations=par, scp_processes=scps, pids=pids,
                                      extra_env={**extra, **deid_env(on)}, deid=on)
                    check_deid(tmp / f"ours-{r}-{par}-{len(results)}", on)
                    results.append((f"ours x{par} [{v}]", r + 1, o, cpu))
        print("de-identification of one instance in-process, CPU ms: "
              + ", ".join(f"{k} {v:.3f}" for k, v in per_instance.items()))
        print()
        print("CPU ms per image during the timed part: PACS = Orthanc, SCP = storescp / our scp process(es),")
        print("mover = movescu / our worker, Kafka = the broker.")
        print(f"{'pair':40} {'round':>5} {'seconds':>8} {'images/s':>9} {'PACS':>6} {'SCP':>6} {'mover':>6} "
              f"{'Kafka':>6} {'total':>6}")
        for name, r, secs, cpu in results:
            per = {k: 1000 * v / n for k, v in cpu.items()}
            print(f"{name:40} {r:>5} {secs:8.2f} {n / secs:9.1f} {per['pacs']:6.2f} {per['scp']:6.2f} "
                  f"{per['mover']:6.2f} {per['kafka']:6.2f} {sum(per.values()):6.2f}")
        print()
        for par in args.associations:
            best_d = min([s for name, _, s, _ in results if name == f"dcmtk movescu -> storescp x{par}"]
                         or [float("nan")])
            for tag in ("", " [de-id]"):
                for ours in (f"radstream worker -> scp x{par}{tag}",
                             f"radstream worker -> {par} scps x{par}{tag}"):
                    times = [s for name, _, s, _ in results if name == ours]
                    if times:
                        best_o = min(times)
                        target = "ratio target >= 0.80" if not tag else "target >= 500 images/s at x2"
                        print(f"x{par}: best dcmtk {n / best_d:.1f} images/s, {ours} {n / best_o:.1f} "
                              f"images/s, ratio {best_d / best_o:.2f} ({target})")
            for v in args.variant:
                times = [s for name, _, s, _ in results if name == f"ours x{par} [{v}]"]
                if times:
                    print(f"x{par}: ours [{v}] {n / min(times):.1f} images/s")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if kst is not None:
            kafka.stop_kafka(tmp / "kafka")
        orthanc.stop(tmp)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
