"""Avro single-object encoding of our topics' records.

Wire format (Avro spec, "Single-object encoding"): ``C3 01`` + the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical
Form + the Avro binary body. Any consumer holding the ``schemas/`` files can
find the writer schema by fingerprint and decode; we resolve old writer versions
(``schemas/history``) to the current reader schema.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import HISTORY_DIR, NAMES, SCHEMA_DIR

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class SerdeError(ValueError):
    """Bytes that are not a valid record of the expected contract."""


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    version: int  # 0 = current file
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO


def _load(path: Path, name: str, version: int) -> SchemaVersion:
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(raw, _write_hint=False)
    canonical = to_parsing_canonical_form(parsed)
    # fastavro's hex string is the fingerprint's bytes in little-endian order, as the spec writes them
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return SchemaVersion(name=name, version=version, parsed=fastavro.parse_schema(raw), fingerprint=fp)


@dataclass
class Registry:
    current: dict[str, SchemaVersion]
    by_fingerprint: dict[bytes, SchemaVersion]


@cache
def registry() -> Registry:
    current: dict[str, SchemaVersion] = {}
    by_fp: dict[bytes, SchemaVersion] = {}
    for name in NAMES:
        cur = _load(SCHEMA_DIR / f"{name}.avsc", name, 0)
        current[name] = cur
        for old in sorted(HISTORY_DIR.glob(f"{name}.v*.avsc")):
            v = int(old.stem.rsplit(".v", 1)[1])
            sv = _load(old, name, v)
            by_fp.setdefault(sv.fingerprint, sv)
        by_fp[cur.fingerprint] = cur
    return Registry(current, by_fp)


def schema(name: str) -> Any:
    return registry().current[name].parsed


def encode(name: str, record: dict[str, Any]) -> bytes:
    """Encode ``record`` with the current schema of contract ``name``."""
    sv = registry().current[name]
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(sv.fingerprint)
    try:
        fastavro.schemaless_writer(buf, sv.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SerdeError(f"record does not fit {name}: {exc}") from exc
    return buf.getvalue()


def decode(name: str, data: bytes | None) -> dict[str, Any]:
    """Decode single-object bytes into a dict of the current schema of ``name``."""
    if not data:
        raise SerdeError(f"empty message where a {name} record was expected")
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise SerdeError(f"not Avro single-object encoding (header {data[:2].hex() or 'missing'})")
    reg = registry()
    writer = reg.by_fingerprint.get(bytes(data[2:HEADER_LEN]))
    if writer is None:
        raise SerdeError(f"unknown writer schema fingerprint {data[2:HEADER_LEN].hex()}")
    if writer.name != name:
        raise SerdeError(f"message is a {writer.name} record, expected {name}")
    reader = reg.current[name]
    try:
        rec: Any = fastavro.schemaless_reader(
            io.BytesIO(data[HEADER_LEN:]),
            writer.parsed,
            None if writer is reader else reader.parsed,
        )
    except Exception as exc:  # fastavro raises a zoo of errors on garbage
        raise SerdeError(f"corrupt {name} body: {type(exc).__name__}: {exc}") from exc
    return rec
