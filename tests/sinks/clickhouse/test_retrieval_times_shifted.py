"""The analysts' retrieval times move by the patient's days (ddl/034, sinks.clickhouse.shifts): a standing
cohort asks seconds after its report arrives, so a real request time beside the report's shifted
received_time gave that patient's date shift. Through the NLP agent's research copy, the standing cohort's
decision, real Kafka and the sink (real chDB), every retrieval time an analyst can read lies seconds from
the report's shifted received_time; stewards still read the real times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from processors.cohort.decide import Watch, decide
from processors.cohort.rules import parse_rule
from processors.ingest.model import ReportEvent
from processors.ingest.pseudonym import date_shift_days, pseudonym
from processors.textdeid import TextDeidOptions
from radstream.config import Settings
from sinks.clickhouse.access import policy_for
from sinks.clickhouse.query import Result, run_readonly
from sinks.clickhouse.sink import release_instances, write_records
from streams import serde
from streams.handlers import TextDeid, analyze_and_deidentify

from .factories import registered
from .kafka_helpers import produce_all, sink_knowing, wait_until
from .test_rows import sample_records

pytestmark = pytest.mark.integration

KEY = b"retrieval-times-key-0123456789abcdef"
RECEIVED = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # the report's real arrival
PATIENT = pseudonym(KEY, "north", "MRN-424242")
SHIFT = timedelta(days=date_shift_days(KEY, PATIENT))
TEXT = "EXAM: CT CHEST\nFINDINGS: Small right pneumothorax.\nIMPRESSION: Small right pneumothorax."


def research_records() -> tuple[dict[str, Any], dict[str, Any]]:
    """The analysts' findings and report records of one report, as the NLP agent sends them."""
    ev = ReportEvent(site="north", accession="RAD-000424", report_id="F-1", version=int(RECEIVED.timestamp()),
                     status="final", patient_id="MRN-424242", text=TEXT, source_format="hl7v2",
                     received_time=RECEIVED, status_time=RECEIVED - timedelta(minutes=3),
                     observation_time=RECEIVED - timedelta(hours=1), modality="CT")
    report = serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))
    found, deid = analyze_and_deidentify(dict(report), RECEIVED + timedelta(seconds=1), (),
                                         TextDeid(KEY, TextDeidOptions()))
    assert deid is not None
    return (serde.decode("report_findings", serde.encode("report_findings", found)),
            serde.decode("report_finalized", serde.encode("report_finalized", deid)))


def analyst(ch: Client, sql: str) -> list[tuple[Any, ...]]:
    out = run_readonly(ch, sql, "rows", policy=policy_for(["analyst"]))
    assert isinstance(out, Result)
    return out.rows


def utc(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_a_standing_cohorts_retrieval_times_do_not_give_the_patients_shift(sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    findings, deid = research_records()
    assert findings["patient_id"] == PATIENT and findings.get("study_ref")
    watch = Watch("w1", "P-DE", "RESEARCH", "ana", parse_rule({"name": "all", "modality": ["CT"]}))
    _, requests = decide(findings, [watch], {}, requested_time=RECEIVED + timedelta(seconds=2))
    assert len(requests) == 1
    req = requests[0]
    rid = req["request_id"]
    status = sample_records()["retrieval_status"]
    statuses = [{**status, "request_id": rid, "project_id": "P-DE", "state": state,
                 "time": RECEIVED + timedelta(seconds=sec)}
                for state, sec in (("moving", 4), ("completed", 9))]
    inst = {**sample_records()["received_instance"], "project_id": "P-DE", "patient_id": PATIENT,
            "time": RECEIVED + timedelta(seconds=7)}
    with sink_knowing(s, registered("P-DE"), key=KEY) as sink:  # the key, as the worker passes it
        ch = sink.client
        produce_all(s, [(t.reports_deidentified, "report_finalized", "k", deid),
                        (t.retrieval_requests, "retrieval_requested", rid, req)])
        wait_until(lambda: ch.query("SELECT count() FROM retrieval_requests").result_rows[0][0] == 1,
                   what="the request")
        # a cancel that names the request only (a clinical system may send one): its request's days
        cancel = {"request_id": rid, "action": "cancel", "project_id": "P-DE", "requester": "ana",
                  "destination_ae": "RESEARCH", "requested_time": RECEIVED + timedelta(seconds=30)}
        produce_all(s, [*((t.retrieval_status, "retrieval_status", rid, x) for x in statuses),
                        (t.received_instances, "received_instance", "i", inst),
                        (t.retrieval_requests, "retrieval_requested", rid, cancel)])
        wait_until(lambda: ch.query("SELECT (SELECT count() FROM retrieval_events) + "
                                    "(SELECT count() FROM received_instances) + "
                                    "(SELECT count() FROM retrieval_requests)").result_rows[0][0] == 5,
                   what="the status events, the instance and the cancel")

        [(received,)] = analyst(ch, "SELECT received_time FROM reports_latest")
        assert utc(received) == RECEIVED - SHIFT  # the report's time is shifted (as before)
        seen = [*analyst(ch, "SELECT requested_time FROM retrieval_requests"),
                *analyst(ch, "SELECT time FROM retrieval_events"),
                *analyst(ch, "SELECT time FROM received_instances"),
                *analyst(ch, "SELECT requested_time FROM retrievals_latest"),
                *analyst(ch, "SELECT last_time FROM retrievals_latest")]
        assert len(seen) == 7
        for (when,) in seen:  # seconds from the report, as in reality: no days left to read off
            assert timedelta(0) < utc(when) - utc(received) < timedelta(minutes=1), (when, received)

        # stewards: the real times
        [(real_req, real_last, days)] = ch.query(
            "SELECT requested_time, last_time, shift_days FROM retrievals_latest_real").result_rows
        assert utc(real_req) == RECEIVED + timedelta(seconds=2)
        assert utc(real_last) == RECEIVED + timedelta(seconds=9)
        assert timedelta(days=days) == SHIFT
        # ... which analysts may not read
        for sql in ("SELECT shift_days FROM retrieval_shifts", "SELECT * FROM retrievals_latest_real"):
            with pytest.raises(Exception, match="refused"):
                analyst(ch, sql)


def test_a_request_naming_no_patient_is_hidden_at_1970_and_its_events_follow(ch: Client) -> None:
    """Nothing to be consistent with: never a real date; intervals within the request kept; a cancel
    moves with its request."""
    write_records(ch, "project_registration", [registered("P-7")])
    rec = sample_records()
    when = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    write_records(ch, "retrieval_requested", [{**rec["retrieval_requested"], "requested_time": when}],
                  key=KEY)
    write_records(ch, "retrieval_status", [{**rec["retrieval_status"], "time": when + timedelta(seconds=9),
                                            "state": "waiting_for_window",
                                            "error": "not before 2026-05-07T01:00:00+00:00"}], key=KEY)
    write_records(ch, "retrieval_requested", [{**rec["retrieval_requested"], "action": "cancel",
                                               "requested_time": when + timedelta(days=2)}], key=KEY)
    rows = analyst(ch, "SELECT action, requested_time FROM retrieval_requests ORDER BY action")
    assert [(a, utc(w)) for a, w in rows] == [
        ("cancel", datetime(1970, 1, 3, 7, 8, 9, tzinfo=UTC)),
        ("request", datetime(1970, 1, 1, 7, 8, 9, tzinfo=UTC))]
    [(ev, error)] = analyst(ch, "SELECT time, error FROM retrieval_events")
    assert utc(ev) == datetime(1970, 1, 1, 7, 8, 18, tzinfo=UTC)
    assert error == "not before 1970-01-02T01:00:00+00:00"  # the worker's real dates in its text move too
    [(real,)] = ch.query("SELECT requested_time FROM retrievals_latest_real").result_rows
    assert utc(real) == when


def test_an_instance_held_back_moves_by_its_patients_days_when_released(ch: Client) -> None:
    inst = {**sample_records()["received_instance"], "project_id": "P-LATE", "patient_id": PATIENT,
            "time": RECEIVED}
    write_records(ch, "received_instance", [inst], key=KEY)  # project not known yet: stewards' table
    [(held,)] = ch.query("SELECT time FROM received_instances_identified").result_rows
    assert utc(held) == RECEIVED  # stewards: real
    write_records(ch, "project_registration", [registered("P-LATE")])
    assert release_instances(ch, wait=True) == 1
    [(moved,)] = analyst(ch, "SELECT time FROM received_instances")
    assert utc(moved) == RECEIVED - SHIFT
