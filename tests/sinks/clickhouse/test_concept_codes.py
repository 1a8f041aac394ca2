"""Concept codes: the lexicon's SNOMED CT / RadLex codes (processors/nlp/lexicon/codes.json) and the OMOP
NOTE_NLP concept ids from a site-loaded CONCEPT table (ddl/011_concept_codes.sql), on a real chDB."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.sink import write_records

from .factories import finding, findings, report

pytestmark = pytest.mark.integration

LEXICON = Path(__file__).resolve().parents[3] / "processors" / "nlp" / "lexicon"
CONCEPT_COLUMNS = ["concept_id", "concept_name", "domain_id", "vocabulary_id", "concept_class_id",
                   "standard_concept", "concept_code", "valid_start_date", "valid_end_date", "invalid_reason"]


def q(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def test_the_warehouse_codes_are_the_lexicon_data(ch: Client) -> None:
    codes = json.loads((LEXICON / "codes.json").read_text())["codes"]
    concepts = {c["concept"] for c in json.loads((LEXICON / "concepts.json").read_text())["concepts"]}
    assert set(codes) <= concepts, set(codes) - concepts        # every key is a lexicon concept
    assert all(set(v) <= {"SNOMED", "RadLex"} and v for v in codes.values())
    want = sorted((c, voc, code) for c, v in codes.items() for voc, code in v.items())
    got = q(ch, "SELECT concept, vocabulary_id, concept_code FROM concept_codes ORDER BY ALL")
    assert got == want, "ddl/011_concept_codes.sql concept_codes differs from codes.json: copy the codes over"


def test_note_nlp_takes_concept_ids_from_the_site_concept_table(ch: Client) -> None:
    text = "FINDINGS: Right lower lobe pneumonia. Basilar atelectasis. Small nodule. No pneumothorax."
    rep = report("K1", 1, text=text)
    found = [finding("pneumonia", start=text.index("pneumonia")),
             finding("atelectasis", start=text.index("atelectasis")),
             finding("nodule", start=text.index("nodule")),
             finding("pneumothorax", start=text.index("pneumothorax"), negated=True)]
    write_records(ch, "report_finalized", [rep])
    write_records(ch, "report_findings", [findings(rep, found)])
    sql = ("SELECT rs_concept, note_nlp_concept_id, note_nlp_source_concept_id, rs_source_code, "
           "lexical_variant FROM note_nlp ORDER BY rs_concept")

    # no concept table loaded: ids 0 (CDM: unmapped), the lexicon's code is still named
    assert q(ch, sql) == [("atelectasis", 0, 0, "SNOMED:46621007", "atelectasis"),
                          ("nodule", 0, 0, "", "nodule"),
                          ("pneumonia", 0, 0, "SNOMED:233604007", "pneumonia"),
                          ("pneumothorax", 0, 0, "SNOMED:36118008", "pneumothorax")]

    d0, d1 = date(2000, 1, 1), date(2099, 12, 31)
    tiny = [
        [4001, "Pneumonia", "Condition", "SNOMED", "Clinical Finding", "S", "233604007", d0, d1, None],
        # atelectasis: the SNOMED row is not standard here, the RadLex one is
        [4002, "Atelectasis", "Condition", "SNOMED", "Clinical Finding", None, "46621007", d0, d1, None],
        [9002, "atelectasis", "Observation", "RadLex", "Finding", "S", "RID28493", d0, d1, None],
        # an invalid (deleted) code does not map
        [4003, "Pneumothorax", "Condition", "SNOMED", "Clinical Finding", "S", "36118008", d0, d1, "D"],
        # an unrelated code of the same vocabulary
        [4999, "Fever", "Condition", "SNOMED", "Clinical Finding", "S", "386661006", d0, d1, None],
    ]
    ch.insert("concept", tiny, column_names=CONCEPT_COLUMNS)
    assert q(ch, sql) == [("atelectasis", 9002, 4002, "SNOMED:46621007", "atelectasis"),
                          ("nodule", 0, 0, "", "nodule"),
                          ("pneumonia", 4001, 4001, "SNOMED:233604007", "pneumonia"),
                          ("pneumothorax", 0, 0, "SNOMED:36118008", "pneumothorax")]
    # one row per finding still (the code join does not multiply rows)
    assert q(ch, "SELECT count() FROM note_nlp") == [(4,)]
