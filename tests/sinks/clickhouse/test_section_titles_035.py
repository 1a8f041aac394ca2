"""ddl/035: section titles written before the titles came from the de-identified text (streams/handlers.py,
section_title) lose what a qualified header carried ("ADDENDUM (01/17/2024 by Dr. X)" -> "addendum"); bare
header words stay. The rows are written as the old code wrote them: the real NLP's sections (titles as in
the original text) through the sink's mapping into a store migrated up to 034."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from processors.nlp.matching import normalize
from processors.nlp.sections import default_splitter
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import DDL_DIR, migrate, migrations, statements
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.sink import write_records
from streams.handlers import analyze_report

from .factories import ddl_until, findings, report

pytestmark = pytest.mark.integration

ROLES = Path(__file__).resolve().parents[3] / "sinks" / "clickhouse" / "roles" / "analyst.json"
NAME, DATE = "Quillfeather", "01/17/2024"
ORIGINAL = (f"EXAM: CT chest\nClinical  History: cough\nFINDINGS: 4 mm nodule.\nIMPRESSION: stable.\n"
            f"ADDENDUM ({DATE} by Dr. {NAME}): discussed.\nADDENDUM #2: more.\n***Addendum 03/04/2024***\n"
            "none.\n")
# the de-identified text the sink stored for this report (surrogate name, shifted dates)
DEIDENTIFIED = (ORIGINAL.replace(NAME, "Marlow").replace(DATE, "12/02/2023")
                .replace("03/04/2024", "02/18/2024"))
KEPT = ["EXAM", "Clinical  History", "FINDINGS", "IMPRESSION"]
# titles of other shapes, (title, section name): whether each is kept is what the Python rule says
ODD = [("Findings", "findings"), ("impression", "impression"), ("PAST MEDICAL\tHISTORY", "past_history"),
       ("FOLLOW-UP", "recommendation"), ("Follow - up", "recommendation"), ("IMPRESSION", "findings"),
       ("FİNDINGS", "findings"), ("ﬁndings", "findings"), ("FINDINGS\u00a0", "findings"),
       ("ADDENDUM 2", "addendum"), ("Addendum (Marlow)", "addendum"), ("addendum", "addendum"),
       ("Clinical History\x0b", "history"), ("Clinical’s", "history"), ("", "other"), ("other", "other")]


def python_keeps(title: str, name: str) -> bool:
    """streams.handlers.section_title's rule on the header vocabulary (its de-identified-slice check
    needs the text, which a stored row no longer has)."""
    return not title or title == name or default_splitter().name_of.get(normalize(title)) == name


def old_records(accession: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The de-identified report and its findings record with the sections the NLP found in the original
    text: before section_title, the titles went to the findings topic (and the sink) as they were."""
    rep = report(accession, text=DEIDENTIFIED)
    nlp = findings(rep)
    nlp["sections"] = analyze_report(report(accession, text=ORIGINAL))["sections"]
    return rep, nlp


def titles(client: Client, table: str = "sections") -> list[tuple[str, str]]:
    return [(str(n), str(t)) for n, t in client.query(
        f"SELECT name, title FROM {table} ORDER BY accession, section_idx").result_rows]


def analyst_objects(client: Client) -> list[str]:
    have = {str(r[0]) for r in
            client.query("SELECT name FROM system.tables WHERE database = 'rs'").result_rows}
    return [t for t in json.loads(ROLES.read_text())["tables"] if t in have]


def holding(client: Client, needles: tuple[str, ...]) -> dict[str, list[str]]:
    """Every analyst-readable table and view whose rows show one of ``needles``."""
    found: dict[str, list[str]] = {}
    for name in analyst_objects(client):
        cols = [str(c[0]) for c in client.query(f"DESCRIBE TABLE rs.{name}").result_rows]
        for row in client.query(f"SELECT {', '.join(f'`{c}`' for c in cols)} FROM rs.{name}").result_rows:
            hits = [n for n in needles if n in repr(row)]
            if hits:
                found.setdefault(name, []).extend(hits)
    return found


@pytest.fixture
def old_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A store migrated up to 034 holding rows as the sink wrote them then (it wrote titles as they came:
    today's sink makes a qualified title the section's name itself, ``rows.section_title_for_row``)."""
    from sinks.clickhouse import rows

    monkeypatch.setattr(rows, "section_title_for_row", lambda title, name: title)
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 34))
        rep, nlp = old_records("A1")
        write_records(client, "report_finalized", [rep])
        write_records(client, "report_findings", [nlp])
        odd = [["default", "A2", 1, nlp["processed_time"], "test-1", i, name, title, 0, 1]
               for i, (title, name) in enumerate(ODD)]
        client.insert("sections", odd, column_names=["site", "accession", "report_version", "processed_time",
                                                     "nlp_version", "section_idx", "name", "title", "start",
                                                     "end"])
        yield client
    finally:
        close_readonly_clients()
        client.close()


def test_the_old_rows_hold_the_real_name_and_date(old_store: Client) -> None:
    """What the migration is for (and what this store would keep without it)."""
    assert set(holding(old_store, (NAME, DATE))) == {"sections", "sections_latest"}


def test_no_analyst_table_or_view_holds_a_qualified_title_after_the_migration(old_store: Client) -> None:
    applied = migrate(old_store, "rs")
    assert holding(old_store, (NAME, DATE, "03/04/2024")) == {}
    assert applied[0] == "035_section_titles_deidentified"  # and the later ones
    want = [("exam", "EXAM"), ("history", "Clinical  History"), ("findings", "FINDINGS"),
            ("impression", "IMPRESSION"), ("addendum", "addendum"), ("addendum", "addendum"),
            ("addendum", "addendum")]
    assert titles(old_store, "sections_latest") == want
    assert [t for _, t in want if t in KEPT] == KEPT


def test_the_migration_keeps_a_title_only_where_the_python_rule_keeps_it(old_store: Client) -> None:
    migrate(old_store, "rs")
    after = [str(r[0]) for r in old_store.query(
        "SELECT title FROM sections WHERE accession = 'A2' ORDER BY section_idx").result_rows]
    assert len(after) == len(ODD)
    for i, (title, name) in enumerate(ODD):
        if not python_keeps(title, name):
            assert after[i] == name, (title, after[i])  # never kept where Python replaces
        elif title.isascii() and "\x0b" not in title:
            assert after[i] == title, (title, after[i])  # ASCII: the same rule
        else:
            assert after[i] in (title, name), (title, after[i])  # else replaced at worst
    assert after[ODD.index(("FOLLOW-UP", "recommendation"))] == "FOLLOW-UP"
    assert after[ODD.index(("FİNDINGS", "findings"))] == "findings"  # lower() would give "i̇": not a header
    assert after[ODD.index(("IMPRESSION", "findings"))] == "findings"  # a header word of another section


def test_the_migration_is_idempotent_and_waits_for_its_mutation(old_store: Client) -> None:
    migrate(old_store, "rs")
    first = titles(old_store)
    # mutations_sync = 2: nothing left to do once the migration returned
    assert old_store.query("SELECT count() FROM system.mutations WHERE database = 'rs' "
                           "AND table = 'sections' AND NOT is_done").result_rows == [(0,)]
    (mig,) = [m for m in migrations(DDL_DIR) if m.version == 35]
    for stmt in statements(mig.text, "rs"):
        old_store.command(stmt)
    assert titles(old_store) == first
    assert migrate(old_store, "rs") == []


@pytest.fixture(scope="module")
def cluster_form() -> list[str]:
    """035's cluster form, as ``db migrate --cluster`` runs it (made before a store of a test is open: chDB
    hosts one engine per process)."""
    from sinks.clickhouse.cluster_migrate import plan_cluster

    return plan_cluster("rs", "warehouse", upto=35).upgrades[35]


def test_the_cluster_form_parses_and_cleans_the_local_table(cluster_form: list[str],
                                                          old_store: Client) -> None:
    """On a running cluster the statement runs on sections_local ON CLUSTER; checked with chDB's parser,
    and run on one node (no ON CLUSTER: that needs Keeper) against a sections_local of the old rows."""
    (stmt,) = cluster_form
    assert stmt.startswith("ALTER TABLE rs.sections_local ON CLUSTER warehouse\nUPDATE title = name")
    text = str(old_store.query("SELECT formatQuery({q:String})", parameters={"q": stmt}).result_rows[0][0])
    assert "ON CLUSTER warehouse" in text and "mutations_sync = 2" in text
    assert str(old_store.command(f"EXPLAIN AST {stmt}")).startswith("AlterQuery")
    old_store.command("CREATE TABLE rs.sections_local AS rs.sections")
    old_store.command("INSERT INTO rs.sections_local SELECT * FROM rs.sections")
    old_store.command(stmt.replace(" ON CLUSTER warehouse", ""))
    migrate(old_store, "rs")
    assert titles(old_store, "sections_local") == titles(old_store)


def test_on_random_titles_sql_never_keeps_what_python_replaces(old_store: Client) -> None:
    """Titles built from the header vocabulary (any case, blanks, hyphens, signs, qualifiers; another
    section's name at times): where the SQL keeps a title, the Python rule keeps it too, and on ASCII titles
    (but \\v and \\x1c, blanks to Python only) the two agree."""
    name_of = default_splitter().name_of
    names, keys, rng = sorted(set(name_of.values())), sorted(name_of), random.Random(7)
    seps = [" ", "  ", "\t", "\n", "-", " - ", "\x0b", "\x1c", "_", ".", "'", "\u2019", "\u00a0"]
    rows: list[tuple[str, str]] = []
    for _ in range(2000):
        key = rng.choice(keys)
        title = rng.choice(seps[:3] if rng.random() < 0.7 else seps).join(key.split(" "))
        title = "".join(c.upper() if rng.random() < 0.5 else c for c in title)
        title += rng.choice(["", "", " #2", " (x)", ":", " ", "1"])
        rows.append((title, name_of[key] if rng.random() < 0.8 else rng.choice(names)))
    (mig,) = [m for m in migrations(DDL_DIR) if m.version == 35]
    (stmt,) = statements(mig.text, "rs")
    where = stmt.split("\nWHERE ", 1)[1].rsplit("\nSETTINGS ", 1)[0]
    old_store.command("CREATE TABLE rs.titles (i UInt32, title String, name String) ENGINE = Memory")
    old_store.insert("rs.titles", [[i, t, n] for i, (t, n) in enumerate(rows)],
                     column_names=["i", "title", "name"])
    replaced = {int(r[0]) for r in old_store.query(f"SELECT i FROM rs.titles WHERE {where}").result_rows}
    assert 0 < len(replaced) < len(rows)
    for i, (title, name) in enumerate(rows):
        if not python_keeps(title, name):
            assert i in replaced, (title, name)
        elif title.replace("\u2019", "'").isascii() and not {"\x0b", "\x1c"} & set(title):
            assert i not in replaced, (title, name)
