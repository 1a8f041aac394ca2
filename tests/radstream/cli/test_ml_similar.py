"""Similar-report search on a real embedded ClickHouse (chDB) with the real MiniLM model.

Demonstrates the negation pitfall and its remedy: by similarity alone "No pulmonary embolism." is one
of the nearest reports to "pulmonary embolism"; ``--require-finding`` (non-negated, non-hypothetical
finding in findings_latest) removes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from tests.helpers_chdb import seed_store_of
from tests.ml_needs import NEEDS_MINILM, NEEDS_ML
from tests.ml_records import finding, nlp_result, report

pytestmark = [
    pytest.mark.ml,
    pytest.mark.integration,
    NEEDS_ML,
    NEEDS_MINILM,
]

PE = "pulmonary embolism"
REPORTS = [
    (report("A1", "FINDINGS:\nFilling defects in the right lower lobe arteries.\n"
                  "IMPRESSION:\nAcute right lower lobe pulmonary embolism."),
     [finding(PE, "pulmonary embolism")]),
    (report("A2", "FINDINGS:\nPulmonary arteries are well opacified.\nIMPRESSION:\nNo pulmonary embolism."),
     [finding(PE, "pulmonary embolism", negated=True)]),
    (report("A3", "IMPRESSION:\nNondisplaced fracture of the left distal radius.", modality="XR",
            body_part="WRIST"), [finding("fracture", "fracture")]),
    (report("A4", "IMPRESSION:\nRule out pulmonary embolism."), [finding(PE, "pulmonary embolism",
                                                                         hypothetical=True)]),
]
CANCELLED = [report("A5", "IMPRESSION:\nPulmonary embolism.", version=1),
             report("A5", "", version=2, status="cancelled")]
CORRECTED = [report("A6", "IMPRESSION:\nPulmonary embolism.", version=1),
             report("A6", "IMPRESSION:\nNormal knee joint.", version=2, modality="MR", body_part="KNEE")]


@pytest.fixture(scope="module")
def embedder() -> Any:
    from processors.ml.embed import Embedder, packaged_model_dir

    return Embedder(packaged_model_dir(), threads=1)


@pytest.fixture
def store(tmp_path: Path, embedder: Any, topic_settings: Settings) -> Iterator[tuple[Settings, Any]]:
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.embeddings import EmbedWorker, clickhouse_writer
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.sink import write_records

    # a real broker and topics: a direct query waits for the audit topic to take its event (10 s without)
    settings = Settings(state_dir=str(tmp_path), kafka=topic_settings.kafka,
                        topics=topic_settings.topics).replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"})
    seed_store_of(settings.clickhouse.url, "rs")  # a migrated copy (tests/helpers_chdb.py)
    client = open_client(settings.clickhouse)
    try:
        migrate(client, settings.clickhouse.database)  # applies nothing; checks the copy is up to date
        worker = EmbedWorker(clickhouse_writer(client, "rs"), embedder)
        worker.process([r for r, _ in REPORTS] + CANCELLED + CORRECTED)
        write_records(client, "report_findings", [nlp_result(r, f) for r, f in REPORTS])
        yield settings, client
    finally:
        close_readonly_clients()
        client.close()


def _search(store: tuple[Settings, Any], embedder: Any, text: str, **kw: Any) -> list[Any]:
    from radstream.cli.similar import find_similar

    settings, client = store
    return find_similar(client, "rs", embedder.embed_one(text).tolist(), **kw)


def test_vector_index_exists_on_chdb(store: tuple[Settings, Any]) -> None:
    from sinks.clickhouse.embeddings import ensure_table

    assert ensure_table(store[1], "rs") is True


def test_negated_report_is_near_by_similarity_alone(store: tuple[Settings, Any], embedder: Any) -> None:
    hits = _search(store, embedder, "pulmonary embolism", k=10)
    ranked = [h.accession for h in hits]
    assert ranked.index("A2") < ranked.index("A3")          # "No PE" beats an unrelated positive report
    assert ranked.index("A2") <= 2
    by_acc = {h.accession: h for h in hits}
    assert by_acc["A2"].score > 0.7 and by_acc["A2"].text == "No pulmonary embolism."
    assert by_acc["A1"].unit == "impression"
    assert "A5" not in by_acc                               # cancelled: gone
    assert by_acc["A6"].report_version == 2 and by_acc["A6"].text == "Normal knee joint."  # latest only
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_require_finding_removes_negated_and_hypothetical(store: tuple[Settings, Any], embedder: Any) -> None:
    hits = _search(store, embedder, "pulmonary embolism", k=10, require_findings=["Pulmonary Embolism"])
    assert [h.accession for h in hits] == ["A1"]
    assert _search(store, embedder, "pulmonary embolism", require_findings=[PE, "fracture"]) == []


def test_where_filters_on_report_columns(store: tuple[Settings, Any], embedder: Any) -> None:
    hits = _search(store, embedder, "pulmonary embolism", where="modality = 'XR'")
    assert [h.accession for h in hits] == ["A3"]
    assert len(_search(store, embedder, "pulmonary embolism", k=2)) == 2


def test_cli_json_output(store: tuple[Settings, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from radstream.cli import main

    settings, _ = store
    env = {"RADSTREAM_CLICKHOUSE_URL": settings.clickhouse_url, "RADSTREAM_CLICKHOUSE_DATABASE": "rs",
           "RADSTREAM_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
           "RADSTREAM_TOPICS_AUDIT": settings.topics.audit,
           "RADSTREAM_STATE_DIR": settings.state_dir}
    res = CliRunner().invoke(main, ["similar", "clot in the pulmonary arteries", "--k", "3",
                                    "--require-finding", PE, "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert not res.stderr.strip(), res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["accession"] for r in rows] == ["A1"]
    bad = CliRunner().invoke(main, ["similar", "x", "--where", "1; DROP TABLE rs.findings"], env=env)
    assert bad.exit_code != 0
    ro = CliRunner().invoke(main, ["similar", "x", "--where", "(SELECT count() FROM rs.findings) >= 0 "
                                   "AND throwIf(1, 'stop')=0"], env=env)
    assert ro.exit_code != 0 and "stop" in ro.output


def test_python_call_without_a_client_searches_the_store_directly(store: tuple[Settings, Any],
                                                                  embedder: Any) -> None:
    """No worker serves this store: ``similar_reports`` / ``search_vector`` open it read-only here. The
    SQL with the values written in (the form the worker's /sql page gets) finds what the bound query
    finds."""
    from radstream.cli.similar import search_vector, similar_reports, similar_sql_text

    settings, _ = store
    vector = embedder.embed_one("pulmonary embolism").tolist()
    for kw in ({"k": 10}, {"k": 10, "require_findings": ["pulmonary_embolism"]},
               {"where": "modality = 'XR'"}):
        bound = _search(store, embedder, "pulmonary embolism", **kw)
        assert search_vector(settings, vector, **kw) == bound
        assert search_vector(settings, vector, direct=True, **kw) == bound
    assert [h.accession for h in similar_reports(settings, "pulmonary embolism",
                                                 require_findings=[PE])] == ["A1"]
    # read-only: the condition holds only under readonly=1 (the bound query on the caller's client is not)
    assert len(search_vector(settings, vector, where="getSetting('readonly') = 1")) == 5
    assert _search(store, embedder, "pulmonary embolism", where="getSetting('readonly') = 1") == []
    sql = similar_sql_text("rs", vector, k=3, require_findings=["it's"])
    assert "{" not in sql and "'it\\'s'" in sql
