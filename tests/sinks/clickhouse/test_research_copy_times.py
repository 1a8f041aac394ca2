"""The research copy of a report's NLP results (streams.handlers.analyze_and_deidentify ->
processors.ingest.research.research_findings), through the warehouse (real chDB): every time an analyst
sees is moved back by the patient's days, the event id is keyed, and the latest views still pick a
report's newest NLP run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from processors.ingest.model import ReportEvent
from processors.ingest.pseudonym import date_shift_days, pseudonym
from processors.ingest.research import keyed_event_id
from processors.textdeid import TextDeidOptions
from sinks.clickhouse.rows import avro_time
from sinks.clickhouse.sink import write_records
from streams import serde
from streams.handlers import TextDeid, analyze_and_deidentify

pytestmark = pytest.mark.integration

KEY = b"research-times-key-0123456789abcdef"
DEID = TextDeid(KEY, TextDeidOptions())
SIGNED = datetime(2026, 3, 4, 9, 50, tzinfo=UTC)
TEXT = ("EXAM: CT CHEST WITH CONTRAST\nFINDINGS: Small right pneumothorax.\n"
        "IMPRESSION: Small right pneumothorax.\n"
        "Findings discussed with Dr. Jones by telephone at 10:15 on 3/4/2026.")


def clinical(received: datetime) -> dict[str, Any]:
    """A ReportFinalized record as the reports topic carries it (Avro round trip: times as the NLP
    agent's process sees them)."""
    ev = ReportEvent(site="north", accession="RAD2026-000777", report_id="F-1",
                     version=int(SIGNED.timestamp() * 1e6), status="final", patient_id="MRN-998877",
                     text=TEXT, source_format="hl7v2",
                     received_time=received, status_time=SIGNED, observation_time=SIGNED - timedelta(hours=1),
                     modality="CT")
    return serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))


def research(report: dict[str, Any], now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The analysts' findings and report records of one NLP run at ``now``, as they leave the agent."""
    found, deid_report = analyze_and_deidentify(dict(report), now, (), DEID)
    assert deid_report is not None
    return (serde.decode("report_findings", serde.encode("report_findings", found)),
            serde.decode("report_finalized", serde.encode("report_finalized", deid_report)))


def shift() -> timedelta:
    return timedelta(days=date_shift_days(KEY, pseudonym(KEY, "north", "MRN-998877")))


def t(value: Any) -> datetime:
    """An Avro time of a record as an aware datetime (it must be there)."""
    out = avro_time(value)
    assert out is not None
    return out


def q(ch: Client, sql: str) -> list[tuple[Any, ...]]:
    """Rows, with times as aware UTC datetimes (chDB gives naive ones)."""
    return [tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v for v in r)
            for r in ch.query(sql).result_rows]


def test_the_communication_time_moves_with_the_patients_days() -> None:
    """It is parsed from the original text; the analysts' copy must not carry the real date."""
    report = clinical(SIGNED + timedelta(seconds=5))
    found, deid_report = research(report, SIGNED + timedelta(minutes=1))
    real = avro_time(analyze_and_deidentify(dict(report), SIGNED, (), None)[0]["communication"]["time"])
    assert real is not None and real.date() == SIGNED.date()  # the NLP found the call's time
    assert avro_time(found["communication"]["time"]) == real - shift()
    # the interval to the (shifted) signing time holds
    assert t(found["communication"]["time"]) - t(deid_report["status_time"]) == real - SIGNED


def test_processed_time_moves_with_the_patients_days_so_it_does_not_reveal_the_shift() -> None:
    """A backfill's received_time is the run's time: against a real processed_time, the difference of
    the two research columns would be exactly the patient's shift."""
    run = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    found, deid_report = research(clinical(run), run)
    assert avro_time(found["processed_time"]) == run - shift()
    assert t(found["processed_time"]) - t(deid_report["received_time"]) == timedelta(0)


def test_the_event_id_is_keyed_and_deterministic() -> None:
    report = clinical(SIGNED + timedelta(seconds=5))
    a, rep_a = research(report, SIGNED)
    b, rep_b = research(report, SIGNED + timedelta(hours=1))
    assert report["event_id"] not in (a["event_id"], rep_a["event_id"])
    assert a["event_id"] == rep_a["event_id"] == keyed_event_id(KEY, report["event_id"])
    assert b["event_id"] == a["event_id"] and rep_b["event_id"] == rep_a["event_id"]  # replays dedupe
    other = research(clinical(SIGNED + timedelta(seconds=5)), SIGNED)[0]["event_id"]
    assert other == a["event_id"]
    assert keyed_event_id(b"another installation's key 0000", report["event_id"]) != a["event_id"]


def test_the_warehouse_holds_shifted_times_and_the_newest_run(ch: Client) -> None:
    received = SIGNED + timedelta(seconds=5)
    report = clinical(received)
    first = SIGNED + timedelta(minutes=2)
    second = SIGNED + timedelta(days=3)  # a re-run of the same version, e.g. a new NLP release's replay
    old, deid_report = research(report, first)
    new, _ = research(report, second)
    write_records(ch, "report_finalized", [deid_report])
    write_records(ch, "report_findings", [old, new])
    ch.command("OPTIMIZE TABLE report_current FINAL")
    real_call = avro_time(analyze_and_deidentify(dict(report), SIGNED, (), None)[0]["communication"]["time"])
    assert real_call is not None
    acc = deid_report["accession"]

    # one row per report version: the newest run replaces the older one
    nlp = q(ch, f"SELECT processed_time, communication_time, event_id FROM report_nlp FINAL "
                f"WHERE accession = '{acc}'")
    assert [r[0] for r in nlp] == [second - shift()]
    assert {r[1] for r in nlp} == {real_call - shift()}
    assert {r[2] for r in nlp} == {keyed_event_id(KEY, report["event_id"])}
    (ev,) = q(ch, f"SELECT event_id FROM report_versions WHERE accession = '{acc}'")
    assert ev == (keyed_event_id(KEY, report["event_id"]),)

    # the newest run is the current one, and each table's latest view shows that run's rows only
    (cur,) = q(ch, f"SELECT processed_time FROM report_current FINAL WHERE accession = '{acc}' AND has_nlp")
    assert cur == (second - shift(),)
    crit = q(ch, "SELECT processed_time, communication_time, minutes_to_communication "
                 f"FROM critical_results_latest WHERE accession = '{acc}'")
    assert crit and {r[0] for r in crit} == {second - shift()}
    assert {r[1] for r in crit} == {real_call - shift()}
    assert {r[2] for r in crit} == {int((real_call - SIGNED).total_seconds() // 60)}
    # no time in the analysts' tables is the real one
    (gap,) = q(ch, f"SELECT dateDiff('second', r.received_time, n.processed_time) FROM report_nlp AS n FINAL "
                   f"JOIN report_versions AS r ON r.accession = n.accession WHERE n.accession = '{acc}'")
    assert gap == (int((second - received).total_seconds()),)
