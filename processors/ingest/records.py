"""Flat records (JSON Lines, CSV) -> report events, with a column mapping.

The mapping tells which source column fills which event field (``--map col=field``). Without a
mapping a column named like a field (or one of its usual aliases, ``aliases.json``) fills it.
Several columns mapped to ``text`` are joined in the given order as labelled sections
(``FINDINGS: ...``), which is how section-per-column exports (e.g. Open-i) become one report.
A row without a status is ``final``; without a time its version is the status rank. A row needs an
accession (or report id), a patient id and text (except a retraction); otherwise it is a reject.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from processors.ingest.model import (
    ParseError,
    ReportEvent,
    derive_version,
    map_status,
    now_utc,
    parse_time,
)

FIELDS = (
    "site", "accession", "report_id", "version", "status", "patient_id", "patient_id_is_pseudonym",
    "visit_number", "patient_class", "modality", "procedure_code", "procedure_description", "body_part",
    "study_instance_uid", "observation_time", "status_time", "author", "source_message_id", "text",
    "placer_order_number", "filler_order_number",
)
TIME_FIELDS = ("observation_time", "status_time")
MAX_FIELD_CHARS = 1_000_000
csv.field_size_limit(MAX_FIELD_CHARS * 4)


@cache
def aliases() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(
        resources.files("processors.ingest").joinpath("aliases.json").read_text("utf-8"))["fields"]
    return data


@dataclass(frozen=True)
class ColumnMapping:
    """target field -> source columns (in order). Unmapped fields fall back to same-named columns."""

    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Sequence[str]) -> ColumnMapping:
        """From ``col=field`` strings (several columns may map to ``text``)."""
        cols: dict[str, list[str]] = {}
        for spec in specs:
            col, sep, target = spec.partition("=")
            col, target = col.strip(), target.strip()
            if not sep or not col or not target:
                raise ValueError(f"bad mapping {spec!r}: expected column=field")
            if target not in FIELDS:
                raise ValueError(f"bad mapping {spec!r}: unknown field {target!r} "
                                 f"(one of {', '.join(FIELDS)})")
            if target != "text" and target in cols:
                raise ValueError(f"field {target!r} mapped twice")
            cols.setdefault(target, []).append(col)
        return cls({k: tuple(v) for k, v in cols.items()})

    def sources(self, target: str, row: Mapping[str, Any]) -> tuple[str, ...]:
        if target in self.columns:
            return self.columns[target]
        if target in row:
            return (target,)
        for alias in aliases().get(target, ()):
            if alias in row:
                return (alias,)
        return ()


@dataclass(frozen=True)
class Rejected:
    """A record that did not become an event (the backfill/ingest reject line)."""

    where: str  # file:line
    reason: str
    raw: bytes

    def line(self) -> str:
        return f"{self.where}\t{self.reason}"


def _value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        raise ParseError(f"nested value {json.dumps(v)[:40]} where text was expected")
    return str(v).strip()


def _opt(v: str) -> str | None:
    return v or None


def record_to_event(row: Mapping[str, Any], mapping: ColumnMapping, *, site: str, source_format: str,
                    received_time: datetime | None = None) -> ReportEvent:
    """One flat record -> one ReportEvent (raises ParseError with a reason)."""
    vals: dict[str, str] = {}
    for target in FIELDS:
        cols = mapping.sources(target, row)
        if target == "text" and len(cols) > 1:
            parts = []
            for c in cols:
                v = _value(row.get(c))
                if v:
                    parts.append(f"{c.replace('_', ' ').upper()}: {v}")
            vals[target] = "\n\n".join(parts)
        elif cols:
            vals[target] = _value(row.get(cols[0]))
        else:
            vals[target] = ""
    text = vals["text"]
    if len(text) > MAX_FIELD_CHARS:
        raise ParseError(f"report text longer than {MAX_FIELD_CHARS} characters", field="text")
    accession = vals["accession"] or vals["report_id"]
    if not accession:
        raise ParseError("no accession (map a column to 'accession' or 'report_id')", field="accession")
    if not vals["patient_id"]:
        # HL7 (PID-3) and FHIR (subject) refuse a report without a patient too: a report nobody can
        # link to a patient would sit in the warehouse under an empty patient id
        raise ParseError("no patient id (map a column to 'patient_id')", field="patient_id")
    status = map_status("text", vals["status"]) if vals["status"] else "final"
    obs = parse_time(vals["observation_time"])
    st = parse_time(vals["status_time"])
    if vals["version"]:
        try:
            version = int(vals["version"])
        except ValueError:
            raise ParseError(f"version {vals['version']!r} is not an integer", field="version") from None
    else:
        version = derive_version(status, st, None, obs)
    return ReportEvent(
        site=vals["site"] or site,
        accession=accession,
        report_id=vals["report_id"] or accession,
        version=version,
        status=status,
        patient_id=vals["patient_id"],
        patient_id_is_pseudonym=vals["patient_id_is_pseudonym"].lower() in ("true", "1", "yes"),
        text=text,
        source_format=source_format,
        received_time=received_time or now_utc(),
        visit_number=_opt(vals["visit_number"]),
        patient_class=_opt(vals["patient_class"].lower()),
        modality=_opt(vals["modality"].upper()),
        procedure_code=_opt(vals["procedure_code"]),
        procedure_description=_opt(vals["procedure_description"]),
        body_part=_opt(vals["body_part"]),
        study_instance_uid=_opt(vals["study_instance_uid"]),
        observation_time=obs,
        status_time=st,
        author=_opt(vals["author"]),
        source_message_id=_opt(vals["source_message_id"]),
        placer_order_number=_opt(vals["placer_order_number"]),
        filler_order_number=_opt(vals["filler_order_number"]),
    )


def parse_jsonl_line(raw: bytes, mapping: ColumnMapping, *, site: str,
                     received_time: datetime | None = None) -> ReportEvent:
    """One JSON Lines record -> event (raises ParseError)."""
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ParseError(f"a JSON object per line expected, got {type(obj).__name__}")
    return record_to_event(obj, mapping, site=site, source_format="json", received_time=received_time)


def parse_csv_row(header: Sequence[str], cells: Sequence[str], mapping: ColumnMapping, *, site: str,
                  received_time: datetime | None = None) -> ReportEvent:
    """One CSV data row -> event (raises ParseError).

    Cells read with ``errors="surrogateescape"`` (see :func:`text_lines`) keep undecodable bytes as
    lone surrogates: such a row is rejected as not UTF-8 (the other rows of the file still load).
    """
    for cell in cells:
        bad = next((ch for ch in cell if "\udc80" <= ch <= "\udcff"), None)
        if bad is not None:
            raise ParseError(f"row is not UTF-8 (byte 0x{ord(bad) - 0xDC00:02X})")
    if len(cells) != len(header):
        raise ParseError(f"row has {len(cells)} cells, header has {len(header)}")
    return record_to_event(dict(zip(header, cells, strict=True)), mapping, site=site, source_format="csv",
                           received_time=received_time)


def iter_jsonl(lines: Iterable[bytes], mapping: ColumnMapping, *, site: str, name: str = "<jsonl>",
               received_time: datetime | None = None, start_line: int = 1
               ) -> Iterator[tuple[int, ReportEvent | Rejected]]:
    """(line number, event or reject) for each non-blank line of a JSON Lines stream."""
    for no, raw in enumerate(lines, start_line):
        if not raw.strip():
            continue
        try:
            yield no, parse_jsonl_line(raw, mapping, site=site, received_time=received_time)
        except ParseError as exc:
            yield no, Rejected(f"{name}:{no}", exc.reason, bytes(raw))


def iter_csv(stream: Iterable[str], mapping: ColumnMapping, *, site: str, name: str = "<csv>",
             received_time: datetime | None = None, skip: int = 0
             ) -> Iterator[tuple[int, ReportEvent | Rejected]]:
    """(record number, event or reject) for each data row of a CSV with a header line.

    Record numbers count data rows from 1 (a quoted field may span lines). ``skip`` rows are
    read but not parsed (resuming).
    """
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield 0, Rejected(f"{name}:header", f"unreadable CSV header: {exc}", b"")
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    no = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            no += 1
            yield no, Rejected(f"{name}:{no}", f"unreadable CSV row: {exc}", b"")
            continue
        no += 1
        if no <= skip or not any(c.strip() for c in cells):
            continue
        try:
            yield no, parse_csv_row(header, cells, mapping, site=site, received_time=received_time)
        except ParseError as exc:
            yield no, Rejected(f"{name}:{no}", exc.reason, csv_line(cells))


def csv_line(cells: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue().encode("utf-8", errors="surrogateescape")


def text_lines(lines: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 text lines for the csv module, one undecodable row never stopping the file.

    A UTF-8 byte-order mark is dropped; invalid bytes become lone surrogates that
    :func:`parse_csv_row` rejects row by row.
    """
    first = True
    for line in lines:
        if first and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        first = False
        yield line.decode("utf-8", errors="surrogateescape")
