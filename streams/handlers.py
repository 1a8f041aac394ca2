"""Per-event logic of the stream agents, free of Kafka so it can be tested and reused (backfill)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from processors.ingest.model import report_key
from processors.ingest.research import research_findings, research_patient, research_report
from processors.textdeid import DeidText, TextDeidOptions, deidentify
from streams import serde
from streams.config import TextDeidConfig

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


@dataclass(frozen=True)
class TextDeid:
    """What the NLP agent needs to de-identify report text (picklable: it goes to the NLP process)."""

    key: bytes = field(repr=False)  # the pseudonym key: never in a repr, a log or a traceback
    options: TextDeidOptions = TextDeidOptions()

    @classmethod
    def of(cls, key: bytes, cfg: TextDeidConfig) -> TextDeid:
        if cfg.mode not in ("surrogate", "tag"):
            raise ValueError(f"text_deid.mode must be surrogate or tag, not {cfg.mode!r}")
        return cls(key, TextDeidOptions(mode=cfg.mode, institutions=tuple(cfg.institutions),  # type: ignore[arg-type]
                                        max_chars=cfg.max_chars))


def deidentify_report(report: Mapping[str, Any], deid: TextDeid) -> tuple[dict[str, Any], DeidText]:
    """The analysts' ReportFinalized record (text de-identified, identifiers keyed, times shifted, the
    encrypted study reference: ``processors.ingest.research``) and the text's de-identification result."""
    result = deidentify(report.get("text") or "", key=deid.key, patient=research_patient(report, deid.key),
                        options=deid.options)
    return {**research_report(report, deid.key), "text": result.text}, result


# ReportFindings arrays whose items point into the report text (start/end; ``text`` a slice of it)
_OFFSET_FIELDS = ("sections", "findings", "measurements", "recommendations", "assessments",
                  "critical_results")


def map_to_deidentified(record: dict[str, Any], original: str, deid: DeidText, redo: TextDeid,
                        patient: str) -> dict[str, Any]:
    """Point the offsets of a ReportFindings record (computed on ``original``) into the de-identified text,
    and take every string copied from the original text from the de-identified text instead: the items'
    ``text``, the communication's text, recipient and time, and the section titles (``section_title``).
    The record's other strings are the NLP's own vocabulary (concepts, categories, section names, ...)."""

    def snippet(text: str | None, start: int | None = None, lo: int = 0, hi: int | None = None,
                ) -> str | None:
        if not text:
            return text
        if start is not None and original.startswith(text, start):
            at = start
        else:  # within [lo, hi) first (a recipient inside its statement), else anywhere
            at = original.find(text, lo, len(original) if hi is None else hi)
            at = original.find(text) if at < 0 else at
        if at >= 0:
            s, e = deid.offsets.map_span(at, at + len(text))
            return deid.text[s:e]
        # not a slice of the report: de-identify it on its own (surrogates are keyed on the value)
        return deidentify(text, key=redo.key, patient=patient, options=redo.options).text

    for name in _OFFSET_FIELDS:
        items = []
        for item in record.get(name) or []:
            item = dict(item)
            start, end = int(item["start"]), int(item["end"])
            if "text" in item:
                item["text"] = snippet(item["text"], start)
            if name == "sections":
                item["title"] = section_title(item, original, deid)
            item["start"], item["end"] = deid.offsets.map_span(start, end)
            items.append(item)
        record[name] = items
    comm = record.get("communication")
    if comm:
        text = comm.get("text") or ""
        at = original.find(text) if text else -1
        lo, hi = (at, at + len(text)) if at >= 0 else (0, None)
        record["communication"] = {**comm, "text": snippet(comm.get("text")),
                                   "recipient": snippet(comm.get("recipient"), None, lo, hi),
                                   "time_text": snippet(comm.get("time_text"), None, lo, hi)}
    return record


def section_title(section: Mapping[str, Any], original: str, deid: DeidText) -> str:
    """The analysts' title of a section (offsets into ``original``): the header as the de-identified text
    has it when the header is a bare title of the NLP's header vocabulary ("FINDINGS", "Impression"), else
    the section's name ("addendum"). A qualified header ("ADDENDUM (01/17/2024 by Dr. A)", "ADDENDUM #2")
    carries dates and names, and the de-identification's recall is not total: none of it is kept. Never
    the original text."""
    title, name = str(section.get("title") or ""), str(section["name"])
    if not title:
        return title
    from processors.nlp.sections import is_bare_title

    if not is_bare_title(title, name):
        return name
    start = int(section["start"])
    # the title starts at the section's start, or after the asterisks of "***ADDENDUM***"
    at = start if original.startswith(title, start) else original.find(title, start, int(section["end"]))
    if at < 0:
        return name
    s, e = deid.offsets.map_span(at, at + len(title))
    # the de-identified slice, if the de-identification left it as it was (else it saw PHI there)
    return deid.text[s:e] if deid.text[s:e] == title else name


def analyze_report(report: dict[str, Any], now: datetime | None = None,
                   classifiers: Sequence[Any] = (), deid: TextDeid | None = None) -> dict[str, Any]:
    """A decoded ReportFinalized record -> the ReportFindings record for the same version.

    A cancelled / entered-in-error version carries no findings: it retracts the report's
    earlier versions in the latest views. ``classifiers``: site models (``processors.ml``) whose
    findings (``source = "model:<name>"``) are added next to the rule findings. With ``deid``, the NLP
    still runs on the original text, and the offsets and snippets of the record point into the
    de-identified text (``deidentify_report`` of the same report, which the caller emits).
    """
    return analyze_and_deidentify(report, now, classifiers, deid)[0]


def analyze_and_deidentify(report: dict[str, Any], now: datetime | None = None,
                           classifiers: Sequence[Any] = (), deid: TextDeid | None = None,
                           ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The ReportFindings record and (with ``deid``) the ReportFinalized record with de-identified text;
    the findings' offsets and snippets point into that text."""
    record = _analyze(report, now, classifiers)
    if deid is None:
        return record, None
    deid_report, result = deidentify_report(report, deid)
    record = map_to_deidentified(record, report.get("text") or "", result, deid,
                                 research_patient(report, deid.key))
    return research_findings(record, deid_report, deid.key), deid_report


def _analyze(report: dict[str, Any], now: datetime | None, classifiers: Sequence[Any]) -> dict[str, Any]:
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
    deidentified: bytes | None = None  # the ReportFinalized with de-identified text (same key)


_classifiers: dict[tuple[tuple[str, ...], int], list[Any]] = {}


def site_classifiers(paths: tuple[str, ...], threads: int) -> list[Any]:
    if not paths:
        return []
    if (paths, threads) not in _classifiers:  # loaded once per process
        from processors.ml.classifier import load_site_classifiers

        _classifiers[(paths, threads)] = load_site_classifiers(paths, threads)
    return _classifiers[(paths, threads)]


def warm_up(classifier_paths: tuple[str, ...] = (), threads: int = 1) -> bool:
    """Build the NLP engine and load the site classifiers in this process, before the first batch needs
    them (a new NLP process otherwise spends its first batch importing and building: seconds)."""
    from processors.nlp import get_engine

    get_engine()
    site_classifiers(classifier_paths, threads)
    return True


def analyze_batch(values: list[bytes | None], classifier_paths: tuple[str, ...] = (),
                  threads: int = 1, deid: TextDeid | None = None,
                  texts: Sequence[str | None] = ()) -> list[Outcome]:
    """ReportFinalized messages -> ReportFindings messages (decode, NLP, encode), in order; with ``deid``
    also the de-identified ReportFinalized, and findings offsets into its text. ``texts``: per message,
    the whole text of its version (``processors.ingest.versions``: the report and its addenda), which
    replaces the message's own text; None (or a short list) keeps the message's text.

    Runs in the worker's NLP process (picklable arguments and results); a message that cannot be
    decoded, de-identified or analysed yields an Outcome with the error instead, and the batch goes on.
    """
    classifiers = site_classifiers(classifier_paths, threads)
    out: list[Outcome] = []
    for i, value in enumerate(values):
        try:
            report = serde.decode("report_finalized", value)
            whole = texts[i] if i < len(texts) else None
            if whole is not None:
                report["text"] = whole
            record, deid_report = analyze_and_deidentify(report, None, classifiers, deid)
            deidentified = None if deid_report is None else serde.encode("report_finalized", deid_report)
            # keyed like the records: the analysts' topics carry no clinical accession, not even in keys
            out.append(Outcome(findings_key(deid_report or report), serde.encode("report_findings", record),
                               deidentified=deidentified))
        except Exception as exc:  # bad input must not stop the stream
            out.append(Outcome(error_type=type(exc).__name__, error=str(exc) or repr(exc)))
    return out


def _exam_of(report: dict[str, Any]) -> str | None:
    parts = [p for p in (report.get("modality"), report.get("procedure_description")) if p]
    return " ".join(parts) or None
