"""Orthanc for the DICOM tests: one real instance per session (``radstream.stack.orthanc``), seeded
once with small synthetic studies; each test gets its own research store and state dir."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings
from sinks.dicom.synth import StudySpec

# Seeded once: A1..A4 (3 images), B1 (40 images: long enough to interrupt), C1..C3 (3 images),
# D1: one accession with two studies (two patients, 2 images each).
SMALL = 3
BIG = 40


@pytest.fixture(scope="session")
def orthanc_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    from radstream.stack import orthanc
    from sinks.dicom.seed import seed, upload

    state_dir = tmp_path_factory.mktemp("orthanc")
    base = Settings(state_dir=str(state_dir))
    overrides = orthanc.start(base, state_dir)
    settings = base.replace(**overrides)
    try:
        seed(settings.pacs, 4, SMALL, rows=16)
        seed(settings.pacs, 1, BIG, rows=16, prefix="B")
        seed(settings.pacs, 3, SMALL, rows=16, prefix="C")
        upload(settings.pacs.host, settings.pacs.http_port, two_studies_one_accession())
        yield settings, state_dir
    finally:
        orthanc.stop(state_dir)


@pytest.fixture
def pacs_settings(orthanc_state: tuple[Settings, Path], tmp_path: Path) -> Settings:
    """Orthanc settings with a fresh research store (no Kafka); worker and SCP share it (files)."""
    settings, _ = orthanc_state
    return settings.replace(state_dir=str(tmp_path), research={"store_dir": str(tmp_path / "store"),
                                                               "coordination": "files"})


@pytest.fixture
def dicom_settings(topic_settings: Settings, orthanc_state: tuple[Settings, Path],
                   tmp_path: Path) -> Settings:
    """Kafka topics of this test + Orthanc + a fresh research store and worker state, fast retries;
    the test projects (``helpers.TEST_PROJECTS``) registered on its projects topic. Worker and SCP
    coordinate through files in the store (one host); ``test_dicom_shared_nothing`` uses the topics."""
    from .helpers import register_projects

    o, _ = orthanc_state
    settings = topic_settings.replace(
        state_dir=str(tmp_path), pacs={"port": o.pacs.port, "http_port": o.pacs.http_port,
                                       "max_attempts": 3, "backoff_s": 0.2, "max_associations": 1},
        research={"port": o.research.port, "store_dir": str(tmp_path / "store"),
                  "allowed_destinations": ("RESEARCH", "ELSEWHERE"), "coordination": "files"},
        kafka={"consumer_group": f"test-{uuid.uuid4().hex[:8]}"},
    )
    register_projects(settings)
    return settings


def spec(prefix: str, k: int, images: int = SMALL) -> StudySpec:
    from sinks.dicom.synth import specs

    return specs(1, images, rows=16, cols=16, first=k, prefix=prefix)[0]


def two_studies_one_accession() -> list[StudySpec]:
    return [StudySpec("D1", "PATD1", "TEST^D1", "20240301", 2, rows=16, cols=16),
            StudySpec("D1", "PATD2", "TEST^D2", "20240302", 2, rows=16, cols=16)]
