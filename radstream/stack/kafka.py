"""A local single-node Kafka (KRaft, broker + controller in one JVM) without Docker.

The broker jars come from Maven Central through ``pom.xml`` next to this file and
``mvn dependency:copy-dependencies``; they are cached outside the clone in
``$RADSTREAM_CACHE/kafka-<version>/libs`` (default ``~/.cache/radstream``).
Everything the broker writes (config, data, logs, pid) lives in the given state dir.

Security: PLAINTEXT by default (tests and the demo). ``start_kafka(..., scram=(user, password))``
starts it with a SASL_PLAINTEXT listener (SCRAM-SHA-512) instead, ``user`` its super user, and the
StandardAuthorizer: a client then sees only the topics and groups its ACLs allow
(``streams.acl`` creates users and ACLs per role). The controller listener (127.0.0.1) is
SASL_PLAINTEXT too, with SASL/PLAIN and ``user`` as its only account: the combined broker/controller
talks to itself as ``user``, and a client that goes to the controller port (KIP-919) without that
password is refused. ``user`` is the only super user (no ANONYMOUS).

JVM: a small heap and flags for a quick start (C1 only, serial GC), right for tests and the demo;
``KAFKA_HEAP_OPTS`` / ``KAFKA_JVM_PERFORMANCE_OPTS`` replace them as in Kafka's own scripts (``jvm_flags``).

Version: Kafka 4.x (ZooKeeper-free, Java 17). ``RADSTREAM_KAFKA_VERSION`` overrides it.
Our client, confluent-kafka 2.16 (librdkafka), was checked against the default (produce, consumer
group, commit).
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from radstream.config import Settings
from streams.children import die_with_parent

DEFAULT_VERSION = "4.4.0"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
POM = Path(__file__).with_name("pom.xml")
HEAP_FLAGS = ["-Xms128m", "-Xmx512m"]
# start-up speed on a small machine (tests, the demo): one GC thread, C1 only, no JIT queue build-up; a
# site that runs the local broker otherwise sets Kafka's own variables, as for kafka-run-class.sh
# (``jvm_flags``)
STARTUP_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-Xshare:auto"]
# kafka-run-class.sh's default KAFKA_JVM_PERFORMANCE_OPTS (Kafka 4.x), for a broker tuned as Kafka ships it
KAFKA_PERFORMANCE_FLAGS = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                           "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"]
COMMON_FLAGS = ["-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true"]


def jvm_flags(env: Mapping[str, str] | None = None) -> list[str]:
    """The broker's JVM flags: ``KAFKA_HEAP_OPTS`` and ``KAFKA_JVM_PERFORMANCE_OPTS`` when set (Kafka's own
    variables, split as a shell would), else a small heap and the start-up flags above."""
    env = os.environ if env is None else env
    heap = shlex.split(env.get("KAFKA_HEAP_OPTS", "")) or HEAP_FLAGS
    perf = shlex.split(env.get("KAFKA_JVM_PERFORMANCE_OPTS", "")) or STARTUP_FLAGS
    return [*heap, *perf, *COMMON_FLAGS]

log = logging.getLogger(__name__)


class KafkaStackError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


@dataclass(frozen=True)
class KafkaState:
    version: str
    port: int
    controller_port: int
    pid: int | None = None
    sasl: bool = False  # the client listener is SASL_PLAINTEXT (SCRAM-SHA-512) with ACLs
    node_id: int = 1
    voters: str = ""  # controller.quorum.voters of a cluster ("": this node alone)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def version() -> str:
    return os.environ.get("RADSTREAM_KAFKA_VERSION", DEFAULT_VERSION)


def cache_root() -> Path:
    return Path(os.environ.get("RADSTREAM_CACHE") or Path.home() / ".cache" / "radstream")


def libs_dir(ver: str | None = None) -> Path:
    return cache_root() / f"kafka-{ver or version()}" / "libs"


def fetch(ver: str | None = None) -> Path:
    """Download the broker and its runtime dependencies once; return the libs dir."""
    ver = ver or version()
    libs = libs_dir(ver)
    home = libs.parent
    if (home / ".complete").exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test sessions may start at once
        if (home / ".complete").exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaStackError("Maven (mvn) is needed once to fetch the Kafka jars; install it")
        tmp = home / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("fetching Kafka %s jars into %s", ver, libs)
        cmd = [mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={ver}", "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=home)
        if proc.returncode != 0 or not (tmp / f"kafka_2.13-{ver}.jar").exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise KafkaStackError(f"mvn failed to fetch Kafka {ver}:\n{(proc.stdout + proc.stderr)[-3000:]}")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        (home / ".complete").touch()
    return libs


def _free_port(exclude: frozenset[int] = frozenset()) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in exclude:
            return port


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker does: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _state_file(kdir: Path) -> Path:
    return kdir / "kafka.json"


def _read_state(kdir: Path) -> KafkaState | None:
    try:
        return KafkaState(**json.loads(_state_file(kdir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(kdir: Path, st: KafkaState) -> None:
    _state_file(kdir).write_text(json.dumps(asdict(st), indent=2) + "\n")


def _ours(pid: int | None, kdir: Path) -> bool:
    """True if ``pid`` is alive and is the broker started for this state dir (not a recycled pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MAIN_CLASS.encode() in cmdline and str(kdir / "server.properties").encode() in cmdline


def _server_properties(kdir: Path, st: KafkaState, scram: tuple[str, str] | None = None) -> str:
    nodes = st.voters.count("@") or 1
    rf = str(min(nodes, 3))  # Kafka's own topics (offsets, transactions): as replicated as ours
    isr = "2" if nodes >= 3 else "1"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(st.node_id),
        "controller.quorum.voters": st.voters or f"1@127.0.0.1:{st.controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{st.port},CONTROLLER://127.0.0.1:{st.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{st.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(kdir / "data"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": rf,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "4",  # default 50: slow first consumer group on 2 cores
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.check.interval.ms": "60000",
        # a node back from a crash takes its partitions' leadership back soon (preferred leaders)
        "leader.imbalance.check.interval.seconds": "10",
    }
    if scram:
        user, password = scram
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" '
                f'password="{password}";')
        # The controller listener authenticates too: a client can reach it directly (KIP-919,
        # bootstrap.controllers) and ask it for ACLs, so an anonymous one there would bypass them all.
        # PLAIN with the super user as its only account (in the JAAS config), not SCRAM: SCRAM credentials
        # live in the metadata log, which a controller may have to fetch from its quorum peers before it
        # could check theirs (KAFKA-15513). It is on 127.0.0.1 only; an analyst's account cannot log in.
        ctl_jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{user}" '
                    f'password="{password}" user_{user}="{password}";')
        props.update({
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{st.port},CONTROLLER://127.0.0.1:{st.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{st.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            f"listener.name.sasl_plaintext.{SCRAM.lower()}.sasl.jaas.config": jaas,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": ctl_jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{user}",  # the node itself (broker and controller) and the stack's admin
            "allow.everyone.if.no.acl.found": "false",
        })
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _log4j2(kdir: Path) -> str:
    return "\n".join([
        "status = warn",
        "appender.file.type = File",
        "appender.file.name = file",
        f"appender.file.fileName = {kdir / 'server.log'}",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = file",
        "logger.state.name = state.change.logger",
        "logger.state.level = WARN",
        "logger.request.name = kafka.request.logger",
        "logger.request.level = WARN",
        "",
    ])


def _java(libs: Path, kdir: Path, main: str, *args: str) -> list[str]:
    java = shutil.which("java") or "/usr/bin/java"
    return [java, *jvm_flags(), f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={kdir}", "-cp", f"{libs}/*", main, *args]


def log_tail(kdir: Path, lines: int = 40) -> str:
    out = []
    for name in ("console.log", "server.log"):
        p = kdir / name
        if p.exists():
            text = p.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {p} ---\n" + "\n".join(text))
    return "\n".join(out) or "(no broker log yet)"


SCRAM = "SCRAM-SHA-512"


def _metadata_ok(bootstrap: str, timeout: float, scram: tuple[str, str] | None = None,
                 brokers: int = 1) -> bool:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    auth = ({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": SCRAM, "sasl.username": scram[0],
             "sasl.password": scram[1]} if scram else {})
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **auth,
                         "socket.connection.setup.timeout.ms": 1000, "reconnect.backoff.ms": 50,
                         "reconnect.backoff.max.ms": 200})
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return len(md.brokers) >= brokers


def _die_with_parent() -> None:
    """preexec_fn: the broker gets SIGTERM when the starting process dies, even by SIGKILL (Linux)."""
    die_with_parent(signal.SIGTERM)


def start_kafka(kdir: Path, ver: str | None = None, timeout: float = 60.0,
                tie_to_parent: bool = False, scram: tuple[str, str] | None = None) -> KafkaState:
    """Start (or reuse) the broker whose files live in ``kdir``; return when it answers metadata requests.

    ``tie_to_parent``: stop the broker when this process dies (test sessions: no orphan brokers
    after a killed pytest); ``radstream stack up`` leaves it False so the broker outlives the CLI.
    ``scram``: (super user, password): SASL_PLAINTEXT/SCRAM-SHA-512 with ACLs instead of PLAINTEXT;
    the super user's credential is written into the storage at format time (a new ``kdir``).
    """
    ver = ver or version()
    kdir = kdir.resolve()
    _private_dir(kdir)
    old = _read_state(kdir)
    if old is not None and _ours(old.pid, kdir) and old.sasl == bool(scram) and _same_config(
            kdir, old, scram) and _metadata_ok(old.bootstrap, 5.0, scram):
        return old
    if old is not None and _ours(old.pid, kdir):
        stop_kafka(kdir)  # alive but not answering, or started with other settings: restart it
    libs = fetch(ver)
    if old is not None and old.version == ver and _port_free(old.port) and _port_free(old.controller_port):
        st = KafkaState(ver, old.port, old.controller_port, sasl=bool(scram))
    else:
        port = _free_port()
        st = KafkaState(ver, port, _free_port(frozenset({port})), sasl=bool(scram))
    _configure(kdir, libs, st, _new_cluster_id(), scram)
    proc = _launch(kdir, libs, st, tie_to_parent)
    st = _read_state(kdir) or st
    _wait_up(kdir, [proc], st.bootstrap, 1, timeout, scram)
    return st


def _private_dir(kdir: Path) -> None:
    """The broker's dir, for its user only: it holds the topics' data (original report text) and, with
    SASL, the super user's password (server.properties); the ACLs guard neither against a local reader."""
    kdir.mkdir(parents=True, exist_ok=True)
    kdir.chmod(0o700)


def _same_config(kdir: Path, st: KafkaState, scram: tuple[str, str] | None) -> bool:
    """True if the running broker was started with the settings this code writes: one started by an older
    radstream (e.g. with an unauthenticated controller listener) is not reused as it is."""
    try:
        return (kdir / "server.properties").read_text() == _server_properties(kdir, st, scram)
    except OSError:
        return False


def _new_cluster_id() -> str:
    cluster_id = "-"
    while cluster_id.startswith("-"):  # the tool's argument parser takes "-…" for an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


def _configure(kdir: Path, libs: Path, st: KafkaState, cluster_id: str,
               scram: tuple[str, str] | None = None) -> None:
    """Write the node's config files; format its storage (as part of ``cluster_id``) unless it has data."""
    props = kdir / "server.properties"
    props.touch(mode=0o600)
    props.chmod(0o600)  # an older stack's file: 0644
    props.write_text(_server_properties(kdir, st, scram))
    (kdir / "log4j2.properties").write_text(_log4j2(kdir))
    if not (kdir / "data" / "meta.properties").exists():
        argfile = kdir / "format.args"
        try:
            fmt = subprocess.run(_format_cmd(libs, kdir, cluster_id, props, argfile, scram),
                                 capture_output=True, text=True)
        finally:
            argfile.unlink(missing_ok=True)
        if fmt.returncode != 0:
            raise KafkaStackError(f"kafka storage format failed:\n{(fmt.stdout + fmt.stderr)[-3000:]}")


def _format_cmd(libs: Path, kdir: Path, cluster_id: str, props: Path, argfile: Path,
                scram: tuple[str, str] | None) -> list[str]:
    """The storage tool's command. Its main class and arguments go in ``argfile`` (a Java launcher
    @argfile, 0600 in the 0700 broker dir; the caller removes it), not on the command line: with SASL they
    hold the super user's password (``--add-scram``), and any local user may read a process's command
    line (/proc/<pid>/cmdline). The classpath stays outside: the launcher does not expand the ``*`` of a
    classpath given in an argfile."""
    args = [STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(props)]
    if scram:
        args += ["--add-scram", f"{SCRAM}=[name={scram[0]},password={scram[1]}]"]
    fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fd, 0o600)  # an older file left by a crash: whatever its mode was
        fh.write("".join(_argfile_quote(a) + "\n" for a in args))
    java = _java(libs, kdir, STORAGE_TOOL)
    return [*java[:-1], f"@{argfile}"]  # _java ends with the main class: it is in the file


def _argfile_quote(arg: str) -> str:
    """One argument of a Java @argfile: double-quoted, backslash escapes inside the quotes."""
    esc = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{esc}"'


def _launch(kdir: Path, libs: Path, st: KafkaState, tie_to_parent: bool) -> subprocess.Popen[bytes]:
    """Start the node's JVM (configured by ``_configure``) and record its pid."""
    with open(kdir / "console.log", "ab") as console:
        proc = subprocess.Popen(_java(libs, kdir, MAIN_CLASS, str(kdir / "server.properties")),
                                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=kdir,
                                preexec_fn=_die_with_parent if tie_to_parent else None)
    (kdir / "kafka.pid").write_text(f"{proc.pid}\n")
    _write_state(kdir, dataclasses.replace(st, pid=proc.pid))
    return proc


def _wait_up(kdir: Path, procs: list[subprocess.Popen[bytes]], bootstrap: str, brokers: int, timeout: float,
             scram: tuple[str, str] | None = None) -> None:
    """Until ``bootstrap`` answers metadata requests with ``brokers`` brokers; stop and raise on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise KafkaStackError(f"Kafka exited with code {proc.returncode} during start-up\n"
                                      f"{log_tail(kdir)}")
        if _metadata_ok(bootstrap, 1.0, scram, brokers):
            return
        time.sleep(0.2)
    stop_kafka(kdir)
    raise KafkaStackError(f"Kafka did not answer a metadata request on {bootstrap} "
                          f"within {timeout:.0f} s\n{log_tail(kdir)}")


# --- a local cluster: N nodes, each a combined broker and controller, in <kdir>/node-<id> -----------

def node_dirs(kdir: Path) -> list[Path]:
    """The node dirs of the cluster in ``kdir``; [] for a single broker (its files in ``kdir`` itself)."""
    return sorted((p for p in kdir.glob("node-*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))


def start_cluster(kdir: Path, brokers: int, ver: str | None = None, timeout: float = 120.0,
                  tie_to_parent: bool = False) -> list[KafkaState]:
    """Start (or reuse) a cluster of ``brokers`` KRaft nodes in ``kdir`` (1: ``start_kafka``); return when
    its bootstrap list answers with every broker. Each node keeps its ports across restarts."""
    if brokers <= 1:
        return [start_kafka(kdir, ver, timeout, tie_to_parent)]
    ver = ver or version()
    kdir = kdir.resolve()
    if running(kdir) is not None:
        raise KafkaStackError(f"a single broker runs in {kdir}: stop it first (`radstream stack down`)")
    _private_dir(kdir)
    dirs = [kdir / f"node-{i}" for i in range(1, brokers + 1)]
    olds = [_read_state(d) for d in dirs]
    if all(o is not None and _ours(o.pid, d) for o, d in zip(olds, dirs, strict=True)) and _metadata_ok(
            cluster_bootstrap(kdir), 5.0, None, brokers):
        return [o for o in olds if o is not None]
    stop_cluster(kdir)
    libs = fetch(ver)
    taken: set[int] = set()
    nodes = []
    for i, (d, old) in enumerate(zip(dirs, olds, strict=True), start=1):
        d.mkdir(parents=True, exist_ok=True)
        if old is not None and old.version == ver and _port_free(old.port) and _port_free(
                old.controller_port):
            ports = (old.port, old.controller_port)
        else:
            port = _free_port(frozenset(taken))
            ports = (port, _free_port(frozenset(taken | {port})))
        taken |= set(ports)
        nodes.append(KafkaState(ver, *ports, node_id=i))
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    nodes = [dataclasses.replace(n, voters=voters) for n in nodes]
    if not all((d / "data" / "meta.properties").exists() for d in dirs):  # one cluster id for all
        for d in dirs:
            shutil.rmtree(d / "data", ignore_errors=True)
    cluster_id = _new_cluster_id()
    procs = []
    for d, st in zip(dirs, nodes, strict=True):
        _configure(d, libs, st, cluster_id)
        procs.append(_launch(d, libs, st, tie_to_parent))
    _wait_up(dirs[0], procs, cluster_bootstrap(kdir), brokers, timeout)
    return [up for d in dirs if (up := _read_state(d)) is not None]


def restart_node(kdir: Path, node_id: int, timeout: float = 60.0, tie_to_parent: bool = False) -> KafkaState:
    """Start node ``node_id`` of the cluster in ``kdir`` again (after it died): its ports, its data."""
    d = kdir.resolve() / f"node-{node_id}"
    st = _read_state(d)
    if st is None:
        raise KafkaStackError(f"no node {node_id} in {kdir}")
    if _ours(st.pid, d):
        return st
    proc = _launch(d, fetch(st.version), dataclasses.replace(st, pid=None), tie_to_parent)
    _wait_up(d, [proc], st.bootstrap, 1, timeout)
    return _read_state(d) or st


def stop_cluster(kdir: Path, timeout: float = 20.0) -> None:
    """Stop every node of the cluster in ``kdir`` at once: one after the other, the last ones would wait
    for a controller quorum that is gone."""
    nodes = [(d, st) for d in node_dirs(kdir.resolve()) if (st := running(d)) is not None]
    for _, st in nodes:
        assert st.pid is not None
        _signal(st.pid, signal.SIGTERM)
    for d, _ in nodes:
        stop_kafka(d, timeout)


def cluster_bootstrap(kdir: Path) -> str:
    """Every node's client address, the bootstrap list of the cluster in ``kdir``."""
    states = [st for d in node_dirs(kdir.resolve()) if (st := _read_state(d)) is not None]
    return ",".join(st.bootstrap for st in states)


def stop_kafka(kdir: Path, timeout: float = 20.0) -> bool:
    """Stop the broker we started in ``kdir`` (SIGTERM, then SIGKILL). Returns True if one was running."""
    kdir = kdir.resolve()
    st = _read_state(kdir)
    pid = st.pid if st else None
    if not _ours(pid, kdir):
        (kdir / "kafka.pid").unlink(missing_ok=True)
        return False
    assert pid is not None
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        log.warning("Kafka pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
        _signal(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    (kdir / "kafka.pid").unlink(missing_ok=True)
    if st is not None:
        _write_state(kdir, dataclasses.replace(st, pid=None))
    return True


def _signal(pid: int, sig: int) -> None:
    """Signal the broker's process group if it leads one (started with start_new_session), else just it:
    never a group some other process leads."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        # reap it if it is our child (same Python process started it), else just probe
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie that is not our child still counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def running(kdir: Path) -> KafkaState | None:
    """The broker state if the broker of ``kdir`` is alive, else None."""
    kdir = kdir.resolve()
    st = _read_state(kdir)
    return st if st is not None and _ours(st.pid, kdir) else None


# --- the component interface shared with radstream/stack/orthanc.py -------------------------------

def start(settings: Settings, state_dir: Path, brokers: int | None = None) -> dict[str, dict[str, object]]:
    """One broker, or a cluster of ``brokers`` (default: as many as last time)."""
    kdir = state_dir / "kafka"
    n = brokers if brokers is not None else max(1, len(node_dirs(kdir.resolve())))
    if n <= 1:
        st = start_kafka(kdir)
        return {"kafka": {"bootstrap": st.bootstrap}}
    start_cluster(kdir, n)
    return {"kafka": {"bootstrap": cluster_bootstrap(kdir)}}


def _running_nodes(state_dir: Path) -> list[KafkaState]:
    kdir = (state_dir / "kafka").resolve()
    return [st for d in [kdir, *node_dirs(kdir)] if (st := running(d)) is not None]


def stop(state_dir: Path) -> None:
    kdir = (state_dir / "kafka").resolve()
    stop_cluster(kdir)
    stop_kafka(kdir)


def status(state_dir: Path) -> str:
    nodes = _running_nodes(state_dir)
    if not nodes:
        return "stopped"
    if len(nodes) == 1 and not nodes[0].voters:
        return f"running (Kafka {nodes[0].version}, pid {nodes[0].pid})"
    total = nodes[0].voters.count("@")
    return (f"running (Kafka {nodes[0].version}, {len(nodes)} of {total} brokers, "
            f"pids {' '.join(str(n.pid) for n in nodes)})")


def pid(state_dir: Path) -> int | None:
    nodes = _running_nodes(state_dir)
    return nodes[0].pid if nodes else None


def address(state_dir: Path) -> str:
    return ",".join(st.bootstrap for st in _running_nodes(state_dir))
