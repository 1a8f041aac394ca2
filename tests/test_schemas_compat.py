"""Each contract is released (current == newest schemas/history/<name>.vN.avsc) and reads every release."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many

from schemas import HISTORY_DIR, NAMES, SCHEMA_DIR
from streams import serde

HISTORY = sorted((name, path) for name in NAMES for path in HISTORY_DIR.glob(f"{name}.v*.avsc"))


def _version(path: Path) -> int:
    match = re.fullmatch(r".+\.v(\d+)", path.stem)
    assert match, f"history file name without .vN: {path.name}"
    return int(match.group(1))


def test_every_history_file_belongs_to_a_contract() -> None:
    known = {path for _, path in HISTORY}
    assert set(HISTORY_DIR.glob("*.avsc")) == known


@pytest.mark.parametrize("name", NAMES)
def test_history_versions_are_contiguous_from_v1(name: str) -> None:
    versions = sorted(_version(path) for n, path in HISTORY if n == name)
    assert versions == list(range(1, len(versions) + 1)), f"{name}: {versions}"
    assert versions, f"{name} has no released version in schemas/history"


@pytest.mark.parametrize(("name", "path"), HISTORY, ids=[p.name for _, p in HISTORY])
def test_reference_checker_says_current_reads_history(name: str, path: Path) -> None:
    reader = avro.schema.parse((SCHEMA_DIR / f"{name}.avsc").read_text())
    writer = avro.schema.parse(path.read_text())
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    assert result.compatibility is SchemaCompatibilityType.compatible, result.messages


@pytest.mark.parametrize(("name", "path"), HISTORY, ids=[p.name for _, p in HISTORY])
def test_current_decodes_records_written_with_history(name: str, path: Path) -> None:
    writer_raw = json.loads(path.read_text())
    writer = fastavro.parse_schema(writer_raw)
    reader_fields = {f["name"]: f for f in json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["fields"]}
    writer_fields = {f["name"] for f in writer_raw["fields"]}
    canonical = to_parsing_canonical_form(writer)
    fingerprint = next(sv.fingerprint for sv in serde.registry().by_fingerprint.values()
                       if sv.name == name and to_parsing_canonical_form(sv.parsed) == canonical)
    random.seed(path.name)
    for record in generate_many(writer, 5):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, writer, record)
        decoded: dict[str, Any] = serde.decode(name, serde.MAGIC + fingerprint + body.getvalue())
        assert set(decoded) == set(reader_fields)
        for field, spec in reader_fields.items():
            if field not in writer_fields:
                assert decoded[field] == spec["default"], field


def _releases(name: str) -> list[Path]:
    return sorted((path for n, path in HISTORY if n == name), key=_version)


def _newest(name: str) -> Path:
    releases = _releases(name)
    assert releases, f"{name} has no released version in schemas/history"
    return releases[-1]


@pytest.mark.parametrize("name", NAMES)
def test_current_schema_is_released(name: str) -> None:
    """An edit of schemas/<name>.avsc fails here until it is released as the next history version."""
    newest = _newest(name)
    current = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    released = json.loads(newest.read_text())
    assert current == released, (
        f"schemas/{name}.avsc differs from its newest release {newest.name}: copy it to "
        f"schemas/history/{name}.v{_version(newest) + 1}.avsc (after checking it is backward compatible)"
    )


CONSECUTIVE = [
    (name, releases[i - 1], releases[i])
    for name in NAMES
    for releases in [_releases(name)]
    for i in range(1, len(releases))
]


@pytest.mark.parametrize(("name", "older", "newer"), CONSECUTIVE, ids=[n.name for _, _, n in CONSECUTIVE])
def test_each_release_reads_the_previous_one(name: str, older: Path, newer: Path) -> None:
    reader = avro.schema.parse(newer.read_text())
    writer = avro.schema.parse(older.read_text())
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    assert result.compatibility is SchemaCompatibilityType.compatible, (name, result.messages)
