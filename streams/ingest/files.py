"""Reading report files of every supported format as (where, event-or-reject) pairs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from processors.ingest.model import ReportEvent
from processors.ingest.records import ColumnMapping, Rejected, iter_csv, iter_jsonl

Item = ReportEvent | Rejected


def iter_file(path: Path, fmt: str, mapping: ColumnMapping, *, site: str, accession_field: str = "OBR-3",
              received_time: datetime | None = None, skip: int = 0) -> Iterator[tuple[int, Item]]:
    """(record number, item) for each record of ``path``; record numbers <= ``skip`` are not parsed."""
    name = path.name
    if fmt == "jsonl":
        with path.open("rb") as fh:
            lines = (b"" if i <= skip else line for i, line in enumerate(fh, 1))
            yield from iter_jsonl(lines, mapping, site=site, name=name, received_time=received_time)
    elif fmt == "csv":
        with path.open("r", encoding="utf-8-sig", errors="strict", newline="") as fh:
            try:
                yield from iter_csv(fh, mapping, site=site, name=name, received_time=received_time, skip=skip)
            except UnicodeDecodeError as exc:
                yield -1, Rejected(f"{name}", f"file is not UTF-8 ({exc.reason} at byte {exc.start}); "
                                   "rows after this point were not read", b"")
    elif fmt == "hl7":
        from processors.ingest.hl7v2 import iter_hl7_batch

        yield from iter_hl7_batch(path.read_bytes(), site=site, accession_field=accession_field, name=name,
                                  received_time=received_time, skip=skip)
    elif fmt == "fhir":
        from processors.ingest.fhir import iter_fhir_ndjson

        with path.open("rb") as fh:
            lines = (b"" if i <= skip else line for i, line in enumerate(fh, 1))
            yield from iter_fhir_ndjson(lines, site=site, name=name, received_time=received_time)
    else:
        raise ValueError(f"unknown format {fmt!r}")
