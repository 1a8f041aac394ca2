"""The streams layer's config sections (composed into the one settings object by ``radstream.config``).

Each field is set from ``[section] field`` in the TOML file or ``RADSTREAM_<SECTION>_<FIELD>``.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

# Checks of each section (``problems()``: "field: what is wrong", empty when fine), run in full by
# ``radstream.config.validate`` when a process starts, before it connects to anything.
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def readable_file(name: str, path: str) -> list[str]:
    """A problem if ``path`` is set and is not a readable file."""
    if not path:
        return []
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return [f"{name}: cannot read {path}: {exc.strerror}"]
    return [] if Path(path).is_file() else [f"{name}: {path} is not a file"]


def at_least(name: str, value: float, low: float) -> list[str]:
    return [] if value >= low else [f"{name}: must be at least {low:g}, not {value:g}"]


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    return [] if value in allowed else [f"{name}: must be one of {', '.join(allowed)}, not {value!r}"]


def port(name: str, value: int, zero_ok: bool = False) -> list[str]:
    return [] if (0 if zero_ok else 1) <= value <= 65535 else [f"{name}: not a TCP port: {value}"]


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    partitions: int = 2
    # replicas of each topic we create (ours and the worker's changelogs); 0: 3 when the cluster has
    # at least 3 brokers, else 1. min_insync_replicas: 0: 2 when replicated 3 times or more, else the
    # broker's default. Our producers use acks=all, so a write needs that many replicas.
    replication_factor: int = 0
    min_insync_replicas: int = 0
    retention_ms: int = 7 * 24 * 3600 * 1000
    consumer_group: str = "radstream"
    # security of every client: PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""  # SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)  # never logged; prefer sasl_password_file
    sasl_password_file: str = ""
    ssl_cafile: str = ""  # CA bundle that signed the broker's certificate
    ssl_certfile: str = ""  # client certificate (mutual TLS)
    ssl_keyfile: str = ""

    def password(self) -> str:
        if self.sasl_password_file:
            with open(self.sasl_password_file, encoding="utf-8") as fh:
                return fh.read().strip()
        return self.sasl_password

    def problems(self) -> list[str]:
        out: list[str] = []
        servers = [b.strip() for b in self.bootstrap.split(",") if b.strip()]
        if not servers:
            out.append("bootstrap: empty")
        for server in servers:
            host, _, num = server.rpartition(":")
            if not host or not num.isdigit() or port("", int(num)):
                out.append(f"bootstrap: {server!r} is not host:port")
        out += at_least("partitions", self.partitions, 1)
        out += at_least("replication_factor", self.replication_factor, 0)
        out += at_least("min_insync_replicas", self.min_insync_replicas, 0)
        if self.replication_factor and self.min_insync_replicas > self.replication_factor:
            out.append(f"min_insync_replicas: {self.min_insync_replicas} is more than the "
                       f"replication_factor {self.replication_factor}: no write could succeed")
        if not self.consumer_group.strip():
            out.append("consumer_group: empty")
        out += one_of("security_protocol", self.security_protocol.upper(), SECURITY_PROTOCOLS)
        if self.security_protocol.upper().startswith("SASL"):
            out += one_of("sasl_mechanism", self.sasl_mechanism, SASL_MECHANISMS)
            if not self.sasl_username:
                out.append("sasl_username: empty with a SASL security_protocol")
        out += readable_file("sasl_password_file", self.sasl_password_file)
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            out += readable_file(name, getattr(self, name))
        return out

    def client_conf(self) -> dict[str, str]:
        """librdkafka settings of every confluent-kafka client: the bootstrap servers and the security
        settings that are set (nothing beyond bootstrap for the default PLAINTEXT)."""
        conf = {"bootstrap.servers": self.bootstrap}
        if self.security_protocol.upper() != "PLAINTEXT":
            conf["security.protocol"] = self.security_protocol.upper()
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.password()
        for key, value in (("ssl.ca.location", self.ssl_cafile),
                           ("ssl.certificate.location", self.ssl_certfile),
                           ("ssl.key.location", self.ssl_keyfile)):
            if value:
                conf[key] = value
        return conf


@dataclass(frozen=True)
class TopicsConfig:
    reports: str = "radstream.reports.finalized"
    findings: str = "radstream.reports.findings"
    # the reports as analysts may see them: text de-identified by the NLP agent (the reports topic keeps
    # the original text: processing zone only)
    reports_deidentified: str = "radstream.reports.deidentified"
    retrieval_requests: str = "radstream.retrieval.requested"
    retrieval_status: str = "radstream.retrieval.status"
    received_instances: str = "radstream.dicom.received"
    dead_letter: str = "radstream.deadletter"
    cohort_watches: str = "radstream.cohort.watches"
    projects: str = "radstream.projects"  # compacted: the registered research projects
    # RESTRICTED: originals of de-identified instances (-> deid_map only); keep analysts' clients off it
    received_restricted: str = "radstream.dicom.received.restricted"
    quarantine: str = "radstream.dicom.quarantine"  # RESTRICTED: quarantined/released/purged instances
    audit: str = "radstream.audit"  # who did what (streams.audit.record); the sink stores it in audit_log
    # RESTRICTED, compacted: studies the DICOM worker is moving, with their project (every SCP replays it)
    dicom_expected: str = "radstream.dicom.expected"

    def problems(self) -> list[str]:
        out: list[str] = []
        seen: dict[str, str] = {}
        for name, value in vars(self).items():
            if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
                out.append(f"{name}: {value!r} is not a Kafka topic name (letters, digits, . _ -)")
            elif value in seen:
                out.append(f"{name}: the same topic as {seen[value]} ({value})")
            seen.setdefault(value, name)
        return out


@dataclass(frozen=True)
class IngestConfig:
    site: str = "default"
    accession_field: str = "OBR-3"  # or OBR-18
    pseudonym_key: str = field(default="", repr=False)  # HMAC key for research pseudonyms; never logged
    pseudonym_key_file: str = ""
    timezone: str = ""  # IANA zone of HL7 times without an offset; empty = UTC
    hl7_charset: str = "utf-8"  # when MSH-18 is empty
    # largest MLLP frame (a connection holds a few times this while it reads and parses one). Frames
    # carry embedded attachments (ED/RP OBX: a report PDF with key images; base64 is 4/3 of its size),
    # so 32 MiB admits ~24 MiB of attachment; the event is text only, bounded by the parser and the
    # reports topic (1 MiB), not by this
    mllp_max_bytes: int = 32 * 1024 * 1024
    # resource limits of the MLLP listener against a slow or greedy peer (streams/ingest/mllp.py):
    # connections open at once (one more is closed at once), bytes of unanswered frames held across all
    # connections (over it a frame gets AR "resend" and its connection is closed; at least
    # mllp_max_bytes), and the time from a frame's first byte to its end block (then it is dead-lettered
    # and its connection closed, however live the sender is)
    mllp_max_connections: int = 64
    mllp_max_buffered_bytes: int = 256 * 1024 * 1024
    mllp_frame_deadline_s: float = 300.0

    def problems(self) -> list[str]:
        from zoneinfo import ZoneInfo

        from processors.ingest.pseudonym import PseudonymKeyError, load_key

        out = one_of("accession_field", self.accession_field, ("OBR-3", "OBR-18"))
        if not self.site.strip():
            out.append("site: empty")
        try:
            load_key(self.pseudonym_key, self.pseudonym_key_file)
        except PseudonymKeyError as exc:
            out.append(f"pseudonym_key_file: {exc}")
        if self.pseudonym_key and len(self.pseudonym_key.encode()) < 16:
            out.append("pseudonym_key: shorter than 16 bytes")
        if self.timezone:
            try:
                ZoneInfo(self.timezone)
            except (ValueError, LookupError):  # ZoneInfoNotFoundError is a KeyError
                out.append(f"timezone: {self.timezone!r} is not an IANA time zone")
        try:
            codecs.lookup(self.hl7_charset)
        except LookupError:
            out.append(f"hl7_charset: {self.hl7_charset!r} is not a known character set")
        out += at_least("mllp_max_bytes", self.mllp_max_bytes, 1)
        out += at_least("mllp_max_connections", self.mllp_max_connections, 1)
        if self.mllp_max_buffered_bytes < self.mllp_max_bytes:
            out.append(f"mllp_max_buffered_bytes: must be at least mllp_max_bytes ({self.mllp_max_bytes}), "
                       f"not {self.mllp_max_buffered_bytes}: a frame at the limit could never be read")
        if not self.mllp_frame_deadline_s > 0:
            out.append(f"mllp_frame_deadline_s: must be above 0, not {self.mllp_frame_deadline_s:g}")
        return out


@dataclass(frozen=True)
class WorkerConfig:
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    nlp_processes: int = 1  # NLP in child processes (0: in the worker's event loop)
    nlp_batch: int = 256  # most reports per hand-off to the NLP process (fewer when they trickle in)
    # consumer-group membership of the worker's consumers (the sink's session too): a worker restarted
    # after a crash gets its partitions back at once when it rejoins under the same group.instance.id
    # (static membership); otherwise the group waits for the dead member's session to expire first.
    # instance_id: empty = "<host>-<hash of state_dir>-<slot>", the slot being the lowest free one of
    # this host and state dir (a lock file); "-" = no static membership
    instance_id: str = ""
    session_timeout_s: float = 10.0  # a member that stops heartbeating is out of the group after this
    heartbeat_s: float = 2.0
    # where the agents keep their tables' state (streams/agents/table.py): "disk" = an unlinked SQLite
    # file under <state_dir>/agents (memory bounded by its page cache), "memory" = dicts
    state_store: str = "disk"

    def problems(self) -> list[str]:
        out = port("web_port", self.web_port, zero_ok=True) + at_least("nlp_processes", self.nlp_processes, 0)
        out += at_least("nlp_batch", self.nlp_batch, 1)
        if self.state_store not in ("disk", "memory"):
            out.append(f"state_store: must be 'disk' or 'memory', not {self.state_store!r}")
        # the broker's bounds (group.min/max.session.timeout.ms defaults): outside them no join succeeds
        if not 6.0 <= self.session_timeout_s <= 1800.0:
            out.append(f"session_timeout_s: must be within 6..1800 (the broker's bounds), "
                       f"not {self.session_timeout_s:g}")
        if not 0 < self.heartbeat_s <= self.session_timeout_s / 3:
            out.append(f"heartbeat_s: must be above 0 and at most a third of session_timeout_s, "
                       f"not {self.heartbeat_s:g}")
        return out


@dataclass(frozen=True)
class AuthConfig:
    """Authentication of every HTTP endpoint (SQL page, FHIR server, health): API tokens of
    ``streams.auth``, TLS when a certificate and key are given."""

    token_file: str = ""  # default <state_dir>/auth/tokens.json (0600)
    tls_cert: str = ""  # PEM certificate (chain) of our HTTP endpoints; with tls_key: HTTPS only; clients
    # send a token only to a peer presenting its first (leaf) certificate (streams.peer.Pinned)
    tls_key: str = ""
    audit_log: str = ""  # default <state_dir>/audit.log: the audit events of this host, one JSON a line
    cache_s: float = 60.0  # how long a verified token is trusted without a new argon2 check
    roles_dir: str = ""  # the site's table allowlists, <role>.json each; default sinks/clickhouse/roles
    # whom a token goes to over plain HTTP (streams/peer.py): a local peer runs as this process's user,
    # root, or service_user (name or uid: the services' user, for an analyst's own commands); a peer on
    # another host only with plain_http_remote (anyone on the path reads the token: a trusted network only)
    service_user: str = ""
    plain_http_remote: bool = False

    def problems(self) -> list[str]:
        out = readable_file("tls_cert", self.tls_cert) + readable_file("tls_key", self.tls_key)
        if bool(self.tls_cert) != bool(self.tls_key):
            out.append("tls_cert, tls_key: give both (HTTPS) or neither")
        if self.service_user:
            from streams.peer import uid_of

            try:
                uid_of(self.service_user)
            except ValueError as exc:
                out.append(f"service_user: {exc}")
        if self.roles_dir and not Path(self.roles_dir).is_dir():
            out.append(f"roles_dir: {self.roles_dir} is not a directory")
        return out + at_least("cache_s", self.cache_s, 0)


@dataclass(frozen=True)
class MlConfig:
    # the optional [ml] extra
    torch_threads: int = 1  # intra-op threads: a worker shares the machine with Kafka and the NLP agents
    classifiers: tuple[str, ...] = ()  # site classifier config files (JSON); their findings join the rules'
    embed: bool = False  # the worker also embeds each report (embedding writer -> report_embeddings)

    def problems(self) -> list[str]:
        from processors.ml.classifier import ClassifierConfigError, load_config

        out = at_least("torch_threads", self.torch_threads, 1)
        for path in self.classifiers:
            try:
                config = load_config(path)
            except OSError as exc:
                out.append(f"classifiers: cannot read {path}: {exc.strerror}")
                continue
            except (ValueError, TypeError, AttributeError, ClassifierConfigError) as exc:  # bad JSON, types
                out.append(f"classifiers: {path}: {exc}")
                continue
            if not config.model_dir.is_dir():
                out.append(f"classifiers: {path}: model_dir {config.model_dir} is not a directory")
        return out


@dataclass(frozen=True)
class TextDeidConfig:
    """Report-text de-identification (``processors.textdeid``), applied by the NLP agent and the backfill.

    The key is the ingest pseudonym key; without one, ``radstream`` creates ``<state_dir>/text_deid.key``.
    """

    mode: str = "surrogate"  # surrogate ("hide in plain sight") | tag ([NAME], [MRN], ...)
    institutions: tuple[str, ...] = ()  # the site's own institution names, found besides the rules
    max_chars: int = 200_000  # longer report text is dead-lettered

    def problems(self) -> list[str]:
        return one_of("mode", self.mode, ("surrogate", "tag")) + at_least("max_chars", self.max_chars, 1)


@dataclass(frozen=True)
class MetricsConfig:
    """Where the processes without a web page of their own serve ``/metrics``, ``/health`` and ``/ready``
    (docs/monitoring.md). The worker serves them on its SQL page's port (``worker.web_port``), the FHIR
    endpoint on its own port. A port of 0 picks a free one (printed at start)."""

    host: str = "127.0.0.1"
    hl7_port: int = 9181  # radstream ingest hl7-listener
    dicom_worker_port: int = 9182  # radstream dicom worker
    scp_port: int = 9183  # radstream dicom scp; with N processes, ports scp_port .. scp_port + N - 1
    sink_port: int = 9180  # radstream db sink without its SQL page (a ClickHouse server)

    def problems(self) -> list[str]:
        return [p for name in ("hl7_port", "dicom_worker_port", "scp_port", "sink_port")
                for p in port(name, getattr(self, name), zero_ok=True)]
