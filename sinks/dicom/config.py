"""The DICOM worker's and the storage SCP's config sections (composed by ``radstream.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.config import at_least, port


def ae_title(name: str, value: str) -> list[str]:
    """A problem if ``value`` is not a DICOM AE title (pynetdicom's rules: 1-16 characters, not only
    spaces, no backslash or control characters)."""
    import logging

    from pynetdicom.utils import set_ae

    said = logging.getLogger("pynetdicom.utils")
    quiet, said.disabled = said.disabled, True  # it logs what it raises: the problem would be told twice
    try:
        set_ae(value, name, allow_empty=False, allow_none=False)
    except ValueError as exc:
        return [f"{name}: {exc}"]
    finally:
        said.disabled = quiet
    return []


def time_zone(name: str, value: str) -> list[str]:
    from zoneinfo import ZoneInfo

    if not value:
        return []
    try:
        ZoneInfo(value)
    except (ValueError, LookupError):
        return [f"{name}: {value!r} is not an IANA time zone"]
    return []


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

    def problems(self) -> list[str]:
        from sinks.dicom.schedule import parse_windows

        out = ae_title("ae_title", self.ae_title) + ae_title("calling_ae", self.calling_ae)
        out += port("port", self.port) + port("http_port", self.http_port)
        out += at_least("max_associations", self.max_associations, 1)
        out += at_least("max_attempts", self.max_attempts, 1)
        for name in ("acse_timeout_s", "dimse_timeout_s", "backoff_s", "max_studies_per_hour",
                     "max_images_per_minute", "pending_event_s", "status_linger_ms"):
            out += at_least(name, getattr(self, name), 0)
        try:
            parse_windows(self.windows)
        except (ValueError, KeyError, IndexError) as exc:
            out.append(f"windows: {self.windows!r}: {exc}")
        return out + time_zone("timezone", self.timezone)


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
    # the SCP's producer sends events together for this long (linger.ms). The worker waits for a study's
    # last events after its C-MOVE, but those leave when the PACS ends the association (the SCP's
    # ``kick``), not after the linger; a longer linger means fewer produce requests and fewer fetches of
    # every reader of the topic: with 20 ms the broker spent 0.6-1.4 ms CPU per image of the bench, as
    # much as the SCP's de-identification (bench/dicom_move.py: 250 ms, about 40 % less broker CPU)
    event_batch_ms: float = 250.0
    # how the DICOM worker and the SCPs tell each other the expected studies and what was stored:
    # "kafka" (topics; nothing shared, any hosts) or "files" (under store_dir; worker and SCP on one host)
    coordination: str = "kafka"

    def problems(self) -> list[str]:
        import os
        from pathlib import Path

        out = ae_title("ae_title", self.ae_title) + port("port", self.port)
        if not self.allowed_calling_aes:
            # pynetdicom reads an empty require_calling_aet as "check nothing": every caller would be let in
            out.append("allowed_calling_aes: empty, which would accept every calling AE; list the PACS "
                       "AE titles that may send (e.g. ORTHANC)")
        for name in ("allowed_calling_aes", "allowed_destinations"):
            for title in getattr(self, name):
                out += ae_title(name, title)
        for name in ("store_dir", "quarantine_dir"):
            path = Path(getattr(self, name))
            existing = next((p for p in (path, *path.parents) if p.exists()), None)
            if path.exists() and not path.is_dir():
                out.append(f"{name}: {path} is not a directory")
            elif existing is None or not os.access(existing, os.W_OK | os.X_OK):
                out.append(f"{name}: {path} cannot be created or written (no write access to {existing})")
        if self.store_dir and Path(self.store_dir).resolve() == Path(self.quarantine_dir).resolve():
            out.append("quarantine_dir: must not be the store_dir")
        out += at_least("min_free_mb", self.min_free_mb, 0) + at_least("journal_mb", self.journal_mb, 0)
        out += at_least("processes", self.processes, 1)
        if self.coordination not in ("kafka", "files"):
            out.append(f"coordination: {self.coordination!r} is not kafka or files")
        return out + at_least("event_batch_ms", self.event_batch_ms, 0)
