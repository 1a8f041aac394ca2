"""Shared fixtures: a real Kafka broker per test session (started only if a test asks for it).

``kafka_settings`` (session): Settings whose ``kafka.bootstrap`` is a real single-node KRaft
broker on 127.0.0.1 (free ports, temp state dir), stopped at session end. With
``RADSTREAM_TEST_BOOTSTRAP=host:port`` that broker is used instead and nothing is started.
``topic_settings`` (function): the same with unique topic names (``t<hex>.<name>``), created.
Tests using either fixture are marked ``integration`` automatically (``-m "not integration"``
then never starts a broker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings

KAFKA_FIXTURES = {"kafka_settings", "topic_settings"}


def pytest_configure(config: pytest.Config) -> None:
    # CI runs the property tests on a fixed seed (same examples every run: a red CI is a real regression,
    # not a lucky draw); elsewhere hypothesis explores new random examples each run
    from hypothesis import settings as hypothesis_settings

    hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        hypothesis_settings.load_profile("ci")
    config.addinivalue_line("markers", "integration: needs the real local stack (Kafka, Orthanc, chDB)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if KAFKA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    state_dir = tmp_path_factory.mktemp("stack")
    external = os.environ.get("RADSTREAM_TEST_BOOTSTRAP")
    if external:
        yield Settings(state_dir=str(state_dir)).replace(kafka={"bootstrap": external})
        return
    from radstream.stack import kafka

    kdir = Path(state_dir) / "kafka"
    st = kafka.start_kafka(kdir, tie_to_parent=True)
    try:
        yield Settings(state_dir=str(state_dir)).replace(kafka={"bootstrap": st.bootstrap})
    finally:
        _kill_broker(kdir)


def _kill_broker(kdir: Path) -> None:
    """Stop the session's broker without its graceful shutdown: its data is a temp dir nobody reads
    again, and with the topics a session creates (14 per test: ~730 in the big partition) a graceful
    stop took 19 s, serially at the very end of the run (0.4 s with no topics)."""
    from radstream.stack import kafka

    st = kafka.running(kdir)
    if st is not None and st.pid:
        os.kill(st.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(st.pid, 0)  # our child (start_kafka): reap it
    kafka.stop_kafka(kdir)  # clears the pid file (and stops it the usual way if the kill missed)


@pytest.fixture
def topic_settings(kafka_settings: Settings) -> Settings:
    from streams.topics import create_topics

    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = {f.name: prefix + getattr(kafka_settings.topics, f.name)
              for f in dataclasses.fields(kafka_settings.topics)}
    settings = kafka_settings.replace(topics=topics)
    create_topics(settings.kafka, settings.topics)  # waits until every new topic has a leader
    return settings


def _chdb_engine_open() -> str | None:
    """The error chDB gives when an engine is still open in this process (None: none is).

    chDB hosts one engine path per process and keeps it up while any handle on it is open, so a
    client a test forgot (or one only the garbage collector would close) breaks every later test
    that opens another path."""
    import chdb

    try:
        chdb.connect(":memory:").close()
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module", autouse=True)
def _no_chdb_engine_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test module: close cached read-only clients, collect garbage (clickhouse-connect
    closes unreferenced chDB handles from a finalizer), then fail loudly, naming the module, if an
    engine is still open, instead of letting it break the next module's tests."""
    yield
    import sys

    if "chdb" not in sys.modules:
        return
    import gc

    from sinks.clickhouse.query import close_readonly_clients

    close_readonly_clients()
    if _chdb_engine_open() is None:
        return
    gc.collect()
    left = _chdb_engine_open()
    if left is not None:
        pytest.fail(f"{request.node.nodeid} left a chDB engine open: {left}", pytrace=False)
