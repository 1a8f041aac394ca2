"""Reading report files of every supported format as (where, event-or-reject) pairs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from processors.ingest.model import ReportEvent
from processors.ingest.records import ColumnMapping, Rejected, iter_csv, iter_jsonl, text_lines

Item = ReportEvent | Rejected
FORMATS = ("jsonl", "csv", "hl7", "fhir")


def guess_format(path: Path) -> str:
    """Format from the file name: .csv/.tsv csv; .hl7/.er7 hl7; .json or *fhir* fhir; else jsonl."""
    name = path.name.lower()
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".hl7", ".er7", ".hl7.txt")):
        return "hl7"
    if name.endswith(".json") or "fhir" in name:
        return "fhir"
    return "jsonl"


def iter_file(path: Path, fmt: str, mapping: ColumnMapping, *, site: str, accession_field: str = "OBR-3",
              received_time: datetime | None = None, skip: int = 0) -> Iterator[tuple[int, Item]]:
    """(record number, item) for each record of ``path``; record numbers <= ``skip`` are not parsed."""
    name = path.name
    if fmt == "jsonl":
        with path.open("rb") as fh:
            lines = (b"" if i <= skip else line for i, line in enumerate(fh, 1))
            yield from iter_jsonl(lines, mapping, site=site, name=name, received_time=received_time)
    elif fmt == "csv":
        with path.open("rb") as fh:
            yield from iter_csv(text_lines(fh), mapping, site=site, name=name, received_time=received_time,
                                skip=skip)
    elif fmt == "hl7":
        from processors.ingest.hl7v2 import iter_hl7_batch

        yield from iter_hl7_batch(path.read_bytes(), site=site, accession_field=accession_field, name=name,
                                  received_time=received_time, skip=skip)
    elif fmt == "fhir" and path.suffix.lower() == ".json":  # one resource (pretty-printed) per file
        from processors.ingest.fhir import iter_fhir_ndjson

        if skip < 1:
            yield from iter_fhir_ndjson([path.read_bytes()], site=site, name=name,
                                        received_time=received_time)
    elif fmt == "fhir":
        from processors.ingest.fhir import iter_fhir_ndjson

        with path.open("rb") as fh:
            lines = (b"" if i <= skip else line for i, line in enumerate(fh, 1))
            yield from iter_fhir_ndjson(lines, site=site, name=name, received_time=received_time)
    else:
        raise ValueError(f"unknown format {fmt!r}")
