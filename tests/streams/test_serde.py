"""Avro single-object encoding of every contract: round trip, header, errors, and interoperability
with the Apache ``avro`` reference library (so any consumer holding ``schemas/`` can decode)."""

from __future__ import annotations

import io
import json
import random
import struct
from datetime import UTC, datetime
from typing import Any

import avro.io
import avro.schema
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form
from fastavro.utils import generate_many

from schemas import NAMES, SCHEMA_DIR
from streams import serde

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- an independent CRC-64-AVRO (Avro spec, "Schema Fingerprints") -------------------------------
_EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_independent_crc_matches_the_spec_test_vector() -> None:
    # share/test/data/schema-tests.txt of the Avro project: fingerprint of "null"
    assert crc64_avro(b'"null"') == 7195948357588979594


# --- helpers ---------------------------------------------------------------------------------------

def _samples(name: str, count: int = 5) -> list[dict[str, Any]]:
    random.seed(f"{name}-samples")
    return list(generate_many(serde.schema(name), count))


def _plain(value: Any) -> Any:
    """Decoded logical types back to their wire values (timestamp-micros -> int)."""
    if isinstance(value, datetime):
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _avro_reference_schema(name: str) -> avro.schema.Schema:
    return avro.schema.parse((SCHEMA_DIR / f"{name}.avsc").read_text())


def _reference_canonical_form(name: str) -> str:
    raw = json.loads(_avro_reference_schema(name).canonical_form)
    return json.dumps(_collapse_primitive_objects(raw), separators=(",", ":"))


def _collapse_primitive_objects(node: Any) -> Any:
    """avro-python 1.12 keeps ``{"type":"long"}`` after dropping a logicalType; the spec's canonical
    form (and Java's SchemaNormalization) writes the primitive name alone."""
    primitives = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
    if isinstance(node, dict):
        if set(node) == {"type"} and node["type"] in primitives:
            return node["type"]
        return {k: _collapse_primitive_objects(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_collapse_primitive_objects(v) for v in node]
    return node


# --- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    for record in _samples(name):
        data = serde.encode(name, record)
        decoded = serde.decode(name, data)
        assert _plain(decoded) == _plain(record)
        assert serde.encode(name, decoded) == data


@pytest.mark.parametrize("name", NAMES)
def test_canonical_form_agrees_with_the_reference_library(name: str) -> None:
    ours = to_parsing_canonical_form(parse_schema(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text()),
                                                  _write_hint=False))
    assert ours == _reference_canonical_form(name)


@pytest.mark.parametrize("name", NAMES)
def test_header_is_magic_plus_little_endian_crc64_of_canonical_form(name: str) -> None:
    record = _samples(name, 1)[0]
    data = serde.encode(name, record)
    canonical = _reference_canonical_form(name)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == struct.pack("<Q", crc64_avro(canonical.encode()))


@pytest.mark.parametrize("name", NAMES)
def test_reference_library_decodes_our_body(name: str) -> None:
    writer = _avro_reference_schema(name)
    reader = avro.io.DatumReader(writer, writer)
    for record in _samples(name):
        data = serde.encode(name, record)
        body = io.BytesIO(data[serde.HEADER_LEN:])
        theirs = reader.read(avro.io.BinaryDecoder(body))
        assert body.read() == b""  # the whole body was one record
        assert _plain(theirs) == _plain(serde.decode(name, data))


def _dead_letter() -> dict[str, Any]:
    return {"stage": "test", "original_topic": "t", "partition": 0, "offset": 5, "key": b"k",
            "value": b"some original bytes " * 4, "error_type": "ValueError", "error": "bad input " * 5,
            "time": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)}


@pytest.mark.parametrize("data", [b"", b"garbage that is not avro", b"\xc3\x01\x00",
                                  b"\x00\x01" + b"\x00" * 20])
def test_garbage_is_a_serde_error(data: bytes) -> None:
    with pytest.raises(serde.SerdeError):
        serde.decode("dead_letter", data)


def test_unknown_fingerprint_is_a_serde_error() -> None:
    data = serde.encode("dead_letter", _dead_letter())
    with pytest.raises(serde.SerdeError, match="fingerprint"):
        serde.decode("dead_letter", data[:2] + bytes(8) + data[10:])


def test_wrong_contract_is_a_serde_error() -> None:
    data = serde.encode("dead_letter", _dead_letter())
    with pytest.raises(serde.SerdeError, match="dead_letter"):
        serde.decode("report_finalized", data)


@pytest.mark.parametrize("cut", [serde.HEADER_LEN + 3, serde.HEADER_LEN + 40, -1])
def test_truncated_body_is_a_serde_error(cut: int) -> None:
    data = serde.encode("dead_letter", _dead_letter())
    with pytest.raises(serde.SerdeError):
        serde.decode("dead_letter", data[:cut])


def test_record_not_fitting_the_contract_is_a_serde_error() -> None:
    record = _dead_letter()
    del record["stage"]
    with pytest.raises(serde.SerdeError):
        serde.encode("dead_letter", record)
