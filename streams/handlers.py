"""Per-event logic of the stream agents, free of Faust so it can be tested and reused (backfill)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.ingest.model import report_key
from streams import serde

RETRACTED = frozenset({"cancelled", "entered_in_error"})

# Kafka header of a derived message (ReportFindings): when its source message (the ReportFinalized)
# was produced, epoch milliseconds as ASCII digits. The ClickHouse sink counts its flush deadline from
# there, so the NLP step's time comes out of the flush interval's budget instead of adding to it.
ORIGIN_HEADER = "radstream-origin-ms"

# ReportFinalized fields copied onto ReportFindings
_CARRIED = ("event_id", "site", "accession", "status", "patient_id")


def findings_key(report: Mapping[str, Any]) -> bytes:
    """Kafka key of both report topics: one partition per report, so versions stay in order."""
    return report_key(report.get("site"), report["accession"]).encode()


Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes]


def origin_headers(source_timestamp_s: float | None,
                   source_headers: Headers | None = None) -> list[tuple[str, bytes]]:
    """Headers for a message derived from a source message: the source's own origin if it has one
    (a chain of derived messages keeps the first producer's time), else the source's timestamp."""
    origin = origin_ms(source_headers)
    if origin is None:
        if not source_timestamp_s or source_timestamp_s <= 0:
            return []
        origin = int(source_timestamp_s * 1000)
    return [(ORIGIN_HEADER, str(origin).encode())]


def origin_ms(headers: Sequence[tuple[str, Any]] | Mapping[str, Any] | None) -> int | None:
    """The origin time a message carries (``ORIGIN_HEADER``), or None (absent or malformed)."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in items:
        if name == ORIGIN_HEADER and value:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def analyze_report(report: dict[str, Any], now: datetime | None = None,
                   classifiers: Sequence[Any] = ()) -> dict[str, Any]:
    """A decoded ReportFinalized record -> the ReportFindings record for the same version.

    A cancelled / entered-in-error version carries no findings: it retracts the report's
    earlier versions in the latest views. ``classifiers``: site models (``processors.ml``) whose
    findings (``source = "model:<name>"``) are added next to the rule findings.
    """
    from processors.nlp import NLP_VERSION, analyze
    from streams.findings_avro import analysis_to_avro

    record: dict[str, Any] = {k: report[k] for k in _CARRIED}
    record["report_version"] = report["version"]
    record["processed_time"] = now or datetime.now(UTC)
    if report["status"] in RETRACTED or not report["text"].strip():
        record.update(modality=report.get("modality"), nlp_version=NLP_VERSION)
        return record
    analysis = analyze(report["text"], exam=_exam_of(report))
    record.update(analysis_to_avro(analysis))
    if classifiers:
        from processors.ml.classifier import model_findings

        record["findings"] = record["findings"] + model_findings(report["text"], classifiers)
    if not record.get("modality"):
        record["modality"] = report.get("modality")
    return record


@dataclass(frozen=True)
class Outcome:
    """One input message's result: the findings message, or why it was rejected."""

    key: bytes | None = None
    value: bytes | None = None
    error_type: str | None = None
    error: str | None = None


_classifiers: dict[tuple[tuple[str, ...], int], list[Any]] = {}


def site_classifiers(paths: tuple[str, ...], threads: int) -> list[Any]:
    if not paths:
        return []
    if (paths, threads) not in _classifiers:  # loaded once per process
        from processors.ml.classifier import load_site_classifiers

        _classifiers[(paths, threads)] = load_site_classifiers(paths, threads)
    return _classifiers[(paths, threads)]


def analyze_batch(values: list[bytes | None], classifier_paths: tuple[str, ...] = (),
                  threads: int = 1) -> list[Outcome]:
    """ReportFinalized messages -> ReportFindings messages (decode, NLP, encode), in order.

    Runs in the worker's NLP process (picklable arguments and results); a message that cannot be
    decoded or analysed yields an Outcome with the error instead, and the batch goes on.
    """
    classifiers = site_classifiers(classifier_paths, threads)
    out: list[Outcome] = []
    for value in values:
        try:
            report = serde.decode("report_finalized", value)
            record = analyze_report(report, classifiers=classifiers)
            out.append(Outcome(findings_key(report), serde.encode("report_findings", record)))
        except Exception as exc:  # bad input must not stop the stream
            out.append(Outcome(error_type=type(exc).__name__, error=str(exc) or repr(exc)))
    return out


def _exam_of(report: dict[str, Any]) -> str | None:
    parts = [p for p in (report.get("modality"), report.get("procedure_description")) if p]
    return " ".join(parts) or None
