"""The DICOM worker's and the storage SCP's config sections (composed by ``radstream.config``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PacsConfig:
    ae_title: str = "ORTHANC"
    host: str = "127.0.0.1"
    port: int = 4242
    http_port: int = 8042
    calling_ae: str = "RADSTREAM"
    max_associations: int = 2
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 2.0
    max_studies_per_hour: float = 0.0  # 0 = no limit
    max_images_per_minute: float = 0.0  # 0 = no limit
    windows: str = ""  # allowed times, e.g. "mon-fri 19:00-07:00; sat-sun 00:00-24:00"; empty = always
    timezone: str = ""  # IANA name for windows; empty = the host's
    pending_event_s: float = 1.0  # min seconds between "moving" status events of one request
    status_linger_ms: float = 30.0  # the worker's producer waits this long to send status events together
    fast_move: bool = True  # C-FIND/C-MOVE directly on the socket (False: all through pynetdicom)


@dataclass(frozen=True)
class ResearchConfig:
    # the storage SCP that receives moved studies
    ae_title: str = "RESEARCH"
    host: str = "127.0.0.1"
    port: int = 11113
    store_dir: str = ""  # radstream.config fills in <state_dir>/research
    allowed_calling_aes: tuple[str, ...] = ("ORTHANC",)
    allowed_destinations: tuple[str, ...] = ("RESEARCH",)
    # instances that cannot be made safe (outside the store); radstream.config fills in <state_dir>/quarantine
    quarantine_dir: str = ""
    # project of studies nobody registered (manual movescu); must be a registered project; empty = refuse
    default_project: str = ""
    min_free_mb: int = 100
    # write-ahead journal per SCP process: an instance is durable before its response (0: fsync each file)
    journal_mb: int = 64
    fast_path: bool = True  # direct C-STORE receive loop (False: every message through pynetdicom)
    processes: int = 1  # SCP processes sharing one listening socket, for parallel associations
    event_batch_ms: float = 200.0  # the SCP's producer sends events together for this long (linger.ms)
    # how the DICOM worker and the SCPs tell each other the expected studies and what was stored:
    # "kafka" (topics; nothing shared, any hosts) or "files" (under store_dir; worker and SCP on one host)
    coordination: str = "kafka"
