"""The streams layer's config sections (composed into the one settings object by ``radstream.config``).

Each field is set from ``[section] field`` in the TOML file or ``RADSTREAM_<SECTION>_<FIELD>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    partitions: int = 2
    replication_factor: int = 1
    retention_ms: int = 7 * 24 * 3600 * 1000
    consumer_group: str = "radstream"
    # security of every client (confluent-kafka and Faust): PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
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
class WorkerConfig:
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    nlp_processes: int = 1  # NLP in child processes (0: in the worker's event loop)
    nlp_batch: int = 256  # most reports per hand-off to the NLP process (fewer when they trickle in)


@dataclass(frozen=True)
class AuthConfig:
    """Authentication of every HTTP endpoint (SQL page, FHIR server, health): API tokens of
    ``streams.auth``, TLS when a certificate and key are given."""

    token_file: str = ""  # default <state_dir>/auth/tokens.json (0600)
    tls_cert: str = ""  # PEM certificate (chain) of our HTTP endpoints; with tls_key: HTTPS only
    tls_key: str = ""
    audit_log: str = ""  # default <state_dir>/audit.log: the audit events of this host, one JSON a line
    cache_s: float = 60.0  # how long a verified token is trusted without a new argon2 check
    roles_dir: str = ""  # the site's table allowlists, <role>.json each; default sinks/clickhouse/roles


@dataclass(frozen=True)
class MlConfig:
    # the optional [ml] extra
    torch_threads: int = 1  # intra-op threads: a worker shares the machine with Kafka and the NLP agents
    classifiers: tuple[str, ...] = ()  # site classifier config files (JSON); their findings join the rules'
    embed: bool = False  # the worker also embeds each report (embedding writer -> report_embeddings)


@dataclass(frozen=True)
class TextDeidConfig:
    """Report-text de-identification (``processors.textdeid``), applied by the NLP agent and the backfill.

    The key is the ingest pseudonym key; without one, ``radstream`` creates ``<state_dir>/text_deid.key``.
    """

    mode: str = "surrogate"  # surrogate ("hide in plain sight") | tag ([NAME], [MRN], ...)
    institutions: tuple[str, ...] = ()  # the site's own institution names, found besides the rules
    max_chars: int = 200_000  # longer report text is dead-lettered


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
