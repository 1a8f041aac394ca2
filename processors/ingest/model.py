"""The report event that every ingest parser produces, and the rules shared by all parsers.

A report is identified by ``site`` + ``accession``. Each status it reaches (preliminary,
final, corrected, addendum, cancelled, entered_in_error) is one *version* whose ordering key
``version`` is the status-change time in microseconds since the epoch, so an older event that
arrives late never supersedes a newer one downstream. ``event_id`` is derived from the content
of the message only (never from the arrival), so the same message delivered twice has the same id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from importlib import resources
from typing import Any

STATUSES = ("preliminary", "final", "corrected", "addendum", "cancelled", "entered_in_error")
RETRACTING = frozenset({"cancelled", "entered_in_error"})
SOURCE_FORMATS = ("hl7v2", "fhir", "json", "csv")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ParseError(ValueError):
    """Input that is not a usable report. ``reason`` is short and safe to show to the sender.

    ``code`` says how an HL7 sender should be answered: ``AE`` (application error: the message is
    understood but its content is not acceptable) or ``AR`` (application reject: the message
    itself is unusable: not HL7, wrong type, wrong encoding).
    """

    def __init__(self, reason: str, *, code: str = "AE", field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.field = field


class NoReport(ParseError):
    """A well-formed result whose status carries no report (scheduled, in progress, ...)."""


@cache
def status_map() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("processors.ingest").joinpath("status_map.json").read_text("utf-8"))
    return data


def map_status(table: str, code: str | None) -> str:
    """Map a source status code (``table`` = hl7_0123, hl7_0085, fhir or text) to ours."""
    data = status_map()
    raw = (code or "").strip()
    key = raw.upper() if table.startswith("hl7") else raw.lower()
    mapping: dict[str, str | None] = data[table]
    if key not in mapping:
        raise ParseError(f"unknown report status {raw!r} ({table})", field="status")
    status = mapping[key]
    if status is None:
        why = data["no_report"].get(key, "status carries no report")
        raise NoReport(f"status {raw!r} carries no report: {why}", field="status")
    return status


def status_rank(status: str) -> int:
    rank: dict[str, int] = status_map()["rank"]
    return rank[status]


def to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_time(value: str | None, default_tz: tzinfo = UTC) -> datetime | None:
    """Parse an HL7 TS (``YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]``) or ISO 8601 time (aware, UTC).

    Raises ParseError on a value that is neither; returns None for empty input.
    """
    if value is None:
        return None
    s = value.strip()
    if not s:
        return None
    if "-" in s[:8] or "T" in s:  # ISO 8601 (FHIR, JSON, CSV)
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ParseError(f"invalid time {s!r}", field="time") from exc
        return _in_utc(dt if dt.tzinfo else dt.replace(tzinfo=default_tz), value)
    tz: tzinfo = default_tz
    for sign in ("+", "-"):
        if sign in s:
            s, off = s.split(sign, 1)
            if len(off) != 4 or not off.isdigit():
                raise ParseError(f"invalid time zone offset in {value!r}", field="time")
            minutes = int(off[:2]) * 60 + int(off[2:])
            if minutes >= 24 * 60:  # timezone() would raise ValueError, not ParseError
                raise ParseError(f"invalid time zone offset in {value!r}", field="time")
            tz = timezone(timedelta(minutes=minutes if sign == "+" else -minutes))
            break
    frac = ""
    if "." in s:
        s, frac = s.split(".", 1)
    if not s.isdigit() or len(s) not in (4, 6, 8, 10, 12, 14) or (frac and not frac.isdigit()):
        raise ParseError(f"invalid HL7 time {value!r}", field="time")
    micro = int((frac + "000000")[:6]) if frac else 0
    try:
        dt = datetime(int(s[0:4]), int(s[4:6] or 1), int(s[6:8] or 1), int(s[8:10] or 0), int(s[10:12] or 0),
                      int(s[12:14] or 0), micro, tzinfo=tz)
    except ValueError as exc:
        raise ParseError(f"invalid HL7 time {value!r}: {exc}", field="time") from exc
    return _in_utc(dt, value)


def _in_utc(dt: datetime, value: str) -> datetime:
    """``dt`` in UTC. A time at the edge of the calendar (year 1 ahead of UTC, year 9999 behind it) has
    no UTC datetime: OverflowError, which the front doors would not take for bad input."""
    try:
        return dt.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ParseError(f"time {value!r} is out of range in UTC", field="time") from exc


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derive_event_id(site: str, accession: str, status: str, version: int, text: str,
                    source_format: str) -> str:
    """Idempotency key: a hash of what identifies this report version, independent of the transport.

    It hashes site, accession, status, version, text and source format, nothing of the transport (control
    id, arrival time). So a message sent twice gives the same id as long as the parser derives the same
    version from it: HL7 takes the version from OBR-22, else from MSH-7, else from OBR-7 and the status
    (``hl7v2._version``), never from the arrival. A resend of the same message (same MSH-7) is the same
    event; without OBR-22, a message created again with a new MSH-7 is a new version. A new status, a
    new status time or new text gives a new id.
    """
    h = hashlib.sha256()
    for part in (site, accession, status, str(version), text_digest(text), source_format):
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]


def derive_version(status: str, status_time: datetime | None, message_time: datetime | None,
                   observation_time: datetime | None = None) -> int:
    """Version = status-change time in microseconds (message time when the source has none).

    Without any time, the status rank (1..6) keeps the lifecycle order within one source; any
    timed version supersedes it.
    """
    for t in (status_time, message_time):
        if t is not None:
            return to_micros(t)
    if observation_time is not None:
        return to_micros(observation_time) + status_rank(status)
    return status_rank(status)


def report_key(site: str | None, accession: str) -> str:
    """The partition key of a report's events (reports and findings topics): every version of one
    report goes to one partition, so versions stay in order."""
    return f"{site or 'default'}|{accession}"


@dataclass(frozen=True)
class ReportEvent:
    site: str
    accession: str
    report_id: str
    version: int
    status: str
    patient_id: str
    text: str
    source_format: str
    received_time: datetime
    event_id: str = ""
    patient_id_is_pseudonym: bool = False
    visit_number: str | None = None
    patient_class: str | None = None
    modality: str | None = None
    procedure_code: str | None = None
    procedure_description: str | None = None
    body_part: str | None = None
    study_instance_uid: str | None = None
    observation_time: datetime | None = None
    status_time: datetime | None = None
    author: str | None = None
    source_message_id: str | None = None
    placer_order_number: str | None = None
    filler_order_number: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ParseError(f"unknown report status {self.status!r}", field="status")
        if self.source_format not in SOURCE_FORMATS:
            raise ValueError(f"unknown source format {self.source_format!r}")
        if not self.accession.strip():
            raise ParseError("no accession number", field="accession")
        if not self.text.strip() and self.status not in RETRACTING:
            raise ParseError(f"empty report text for accession {self.accession}", field="text")
        if not self.event_id:
            object.__setattr__(self, "event_id", derive_event_id(
                self.site, self.accession, self.status, self.version, self.text, self.source_format))

    @property
    def key(self) -> str:
        """Kafka key: all versions of one report go to one partition, in order."""
        return report_key(self.site, self.accession)

    @property
    def retracts(self) -> bool:
        return self.status in RETRACTING

    def replace(self, **changes: Any) -> ReportEvent:
        return dataclasses.replace(self, **changes)

    def to_avro(self) -> dict[str, Any]:
        """A dict of ``schemas/report_finalized.avsc``."""
        return {
            "event_id": self.event_id,
            "site": self.site,
            "accession": self.accession,
            "report_id": self.report_id,
            "placer_order_number": self.placer_order_number,
            "filler_order_number": self.filler_order_number,
            "version": self.version,
            "status": self.status,
            "patient_id": self.patient_id,
            "patient_id_is_pseudonym": self.patient_id_is_pseudonym,
            "visit_number": self.visit_number,
            "patient_class": self.patient_class,
            "modality": self.modality,
            "procedure_code": self.procedure_code,
            "procedure_description": self.procedure_description,
            "body_part": self.body_part,
            "study_instance_uid": self.study_instance_uid,
            "observation_time": self.observation_time,
            "status_time": self.status_time,
            "received_time": self.received_time,
            "author": self.author,
            "source_format": self.source_format,
            "source_message_id": self.source_message_id,
            "text": self.text,
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> ReportEvent:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in rec.items() if k in names})


def now_utc() -> datetime:
    return datetime.now(UTC)
