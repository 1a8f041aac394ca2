"""The web app's standing cohorts, pipeline page and event stream, with Starlette's TestClient against real
components: Kafka (the watch topic, read back by the worker's own WatchRegistry), an embedded chDB store
read through the role-checked path (``run_readonly`` with the user's policy), and a real ``/metrics``
page (``streams.ops.OpsServer`` behind the token gate) for the pipeline page's scrape."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from radstream.config import Settings
from radstream.web import pipeline as pl
from radstream.web import standing
from radstream.web.app import create_app
from radstream.web.data import Warehouse
from radstream.web.standing import NotExpressible, rule_of
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.dicom.projects import Project, StaticProjects
from streams.auth import TokenStore
from streams.cohort import WatchRegistry
from tests.helpers_chdb import migrated_store
from tests.ml_needs import NEEDS_MINILM, NEEDS_ML
from tests.streams.helpers import free_port
from tests.streams.test_auth_peer import state_with_users

PROJECT = "PSTAND"
IDENTIFIED = "PIDENT"  # registered as identified (IRB): a steward's


# --- the rule translation (no I/O) ----------------------------------------------------------------------

def test_a_search_becomes_the_rule_that_selects_the_same_reports() -> None:
    rule = rule_of({"finding": "nodule", "finding_state": "present", "min_size_mm": "6", "modality": "CT",
                    "date_from": "2025-01-01", "date_to": "2025-12-31"}, "c1")
    assert rule == {"name": "c1", "finding": {"concept": "nodule", "min_size_mm": 6.0}, "modality": ["CT"],
                    "after": "2025-01-01", "before": "2025-12-31"}
    birads = rule_of({"assessment_system": "BI-RADS", "min_category": "4"}, "c2")["assessment"]
    assert birads["system"] == "BI-RADS"
    assert {"4", "4A", "4B", "4C", "5", "6"} <= set(birads["categories"])
    assert not {"0", "1", "2", "3", "3S"} & set(birads["categories"])
    assert rule_of({"assessment_system": "BI-RADS", "min_category": "0"}, "c3")["assessment"] == {
        "system": "BI-RADS"}


@pytest.mark.parametrize(("search", "says"), [
    ({"text": "effusion", "modality": "CT"}, "full text"),
    ({"finding": "nodule", "finding_state": "present", "critical": "1"}, "critical result"),
    ({"finding": "nodule"}, "of any state"),
    ({"finding": "nodule", "finding_state": "negated"}, "not negated"),
    ({"min_size_mm": "6"}, "needs the finding"),
    ({"min_category": "4"}, "needs the assessment system"),
    ({"assessment_system": "NOPE-RADS", "min_category": "4"}, "unknown assessment system"),
    ({"date_from": "2025-01-01"}, "dates alone"),
    ({"modality": "CT", "body_region": "chest"}, "body region"),
])
def test_what_the_rule_language_cannot_say_is_refused(search: dict[str, str], says: str) -> None:
    with pytest.raises(NotExpressible, match=says):
        rule_of(search, "c")


def test_quantile_interpolates_as_prometheus() -> None:
    # 10 observations: 4 <= 0.1 s, 8 <= 0.5 s, 10 <= 1 s
    buckets = {0.1: 4.0, 0.5: 8.0, 1.0: 10.0, float("inf"): 10.0}
    assert pl.quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (1 / 4))
    assert pl.quantile(0.95, buckets) == pytest.approx(0.5 + 0.5 * (1.5 / 2))
    assert pl.quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert pl.quantile(0.99, {0.1: 1.0, float("inf"): 2.0}) == 0.1  # in +Inf: the highest finite bound


def test_window_state_says_when_the_pacs_window_opens() -> None:
    from datetime import UTC, datetime

    wed_noon = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
    assert pl.window_state("mon-fri 19:00-07:00", "UTC", wed_noon) == {
        "spec": "mon-fri 19:00-07:00", "open": False, "next": "2025-03-05T19:00+00:00"}
    assert pl.window_state("", "UTC", wed_noon)["open"] is True


# --- the app against Kafka and chDB ----------------------------------------------------------------------

class CheckedStore(Warehouse):
    """The role-checked read path of a ClickHouse server (``run_readonly`` with the user's policy), here
    on an embedded chDB store instead of the worker's /sql page."""

    def __init__(self, settings: Settings, client: Client) -> None:
        super().__init__(settings)
        self._client = client

    def rows(self, principal: Any, token: str, sql: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self._direct(principal, sql).splitlines() if x.strip()]

    def close(self) -> None:
        pass


@dataclass
class App:
    settings: Settings
    ch: Client
    tokens: dict[str, str]
    app: Any


@pytest.fixture
def web(topic_settings: Settings, tmp_path: Path) -> Iterator[App]:
    settings = topic_settings.replace(
        state_dir=str(tmp_path / "state"), worker={"web_port": free_port()},
        metrics={"dicom_worker_port": free_port(), "scp_port": free_port(), "hl7_port": free_port()},
        research={"allowed_destinations": ("RESEARCH",)})
    tokens = state_with_users(settings, rita="analyst", sam="steward")
    # a copy of a migrated store (tests/helpers_chdb.py): migrate checks it and applies nothing
    chdb = migrated_store(tmp_path / "chdb", "radstream")
    ch = open_client(ClickHouseConfig(url=f"chdb://{chdb}", database="radstream"))
    migrate(ch, "radstream")
    for table in ("reports", "report_versions"):  # the sink writes both
        ch.command(f"INSERT INTO radstream.{table} (site, accession, version, status, modality, exam_time, "
                   "received_time, text, study_ref) VALUES ('default', 'A1', 1, 'final', 'CT', "
                   "'2025-01-10 09:00:00', now64(6), '8 mm nodule.', 'sr.A1'), ('default', 'A2', 1, 'final', "
                   "'CT', '2025-02-10 09:00:00', now64(6), 'No nodule.', 'sr.A2')")
    # and the search's table (ddl/018) and the current version of each (ddl/014), as the sink does
    ch.command("INSERT INTO radstream.report_search (site, accession, version, status, modality, exam_time, "
               "text, study_ref) SELECT site, accession, version, status, modality, exam_time, text, "
               "study_ref FROM radstream.report_versions")
    ch.command("INSERT INTO radstream.report_current (site, accession, report_version, status) "
               "SELECT site, accession, version, status FROM radstream.report_versions")
    app = create_app(settings, warehouse=CheckedStore(settings, ch), sse_max_s=3.0,
                     projects=StaticProjects([Project(PROJECT, "RESEARCH", "pytest", "pytest"),
                                              Project(IDENTIFIED, "RESEARCH", "pytest", "pytest",
                                                      identified=True, irb_reference="IRB-2026-7")]))
    try:
        yield App(settings, ch, tokens, app)
    finally:
        app.state.stop_registries()  # a cohort page started it; under a server the lifespan stops it
        close_readonly_clients()
        ch.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def signed_in(w: App, role: str) -> tuple[TestClient, str]:
    client = TestClient(w.app, follow_redirects=False)
    csrf = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"csrf": csrf, "token": w.tokens[role], "next": "/cohorts"})
    assert r.status_code == 303, r.text
    return client, csrf_of(client.get("/cohorts").text)


def audit_events(w: App) -> list[dict[str, Any]]:
    path = Path(w.settings.auth.audit_log)
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def watches_on_topic(settings: Settings) -> dict[str, Any]:
    """The active watches as every worker sees them: the whole compacted topic, read by WatchRegistry."""
    registry = WatchRegistry(settings.kafka, settings.topics)
    registry.start()
    try:
        assert registry.loaded.wait(30), "the watch topic was not read"
        return {w.watch_id: w for w in registry.current()}
    finally:
        registry.stop()


def save(client: TestClient, csrf: str, name: str, **search: str) -> str:
    r = client.post("/cohorts", data={"csrf": csrf, "name": name, **search})
    assert r.status_code == 303, r.text
    return str(r.headers["location"]).rsplit("/", 1)[1]


def test_subscribe_and_unsubscribe_a_cohort_on_the_watch_topic(web: App) -> None:
    client, csrf = signed_in(web, "analyst")
    cid = save(client, csrf, "nodules", finding="nodule", finding_state="present", min_size_mm="6")
    page = client.get(f"/cohorts/{cid}").text
    assert '"min_size_mm": 6.0' in html.unescape(page) and "Not subscribed" in page

    r = client.post(f"/cohorts/{cid}/subscribe", data={"csrf": csrf, "project": PROJECT,
                                                       "destination": "RESEARCH"})
    assert r.status_code == 303, r.text
    on_topic = watches_on_topic(web.settings)
    wid = f"{PROJECT}:web-cohort-{cid}"
    assert list(on_topic) == [wid]
    w = on_topic[wid]
    assert (w.project_id, w.destination_ae, w.requester) == (PROJECT, "RESEARCH", "rita")
    assert w.rule.finding is not None and w.rule.finding.concepts == {"nodule"}
    assert w.rule.finding.min_size_mm == 6.0
    page = client.get(f"/cohorts/{cid}").text
    assert f'<tr class="watch" data-project="{PROJECT}">' in page
    assert f"<td>{PROJECT}</td></tr>" in client.get("/cohorts").text  # the list says it is standing

    # without the CSRF token: refused, nothing published
    assert client.post(f"/cohorts/{cid}/unsubscribe", data={"project": PROJECT}).status_code == 403
    assert list(watches_on_topic(web.settings)) == [wid]

    r = client.post(f"/cohorts/{cid}/unsubscribe", data={"csrf": csrf, "project": PROJECT})
    assert r.status_code == 303, r.text
    assert watches_on_topic(web.settings) == {}
    assert "Not subscribed" in client.get(f"/cohorts/{cid}").text
    got = [(e["action"], e["allowed"]) for e in audit_events(web) if e["actor"] == "rita"
           and e["action"].startswith("cohort.")]
    assert got == [("cohort.save", True), ("cohort.watch", True), ("cohort.unwatch", True)]


def test_a_search_the_rule_cannot_say_is_refused_and_audited(web: App) -> None:
    client, csrf = signed_in(web, "analyst")
    cid = save(client, csrf, "text", text="nodule", modality="CT")
    assert "cannot filter on full text" in client.get(f"/cohorts/{cid}").text
    r = client.post(f"/cohorts/{cid}/subscribe", data={"csrf": csrf, "project": PROJECT,
                                                       "destination": "RESEARCH"})
    assert r.status_code == 400 and "cannot filter on full text" in r.text
    # a destination off the allow-list is refused too
    cid2 = save(client, csrf, "ct", modality="CT")
    r = client.post(f"/cohorts/{cid2}/subscribe", data={"csrf": csrf, "project": PROJECT,
                                                        "destination": "ELSEWHERE"})
    assert r.status_code == 400 and "delivers to 'RESEARCH'" in html.unescape(r.text)
    assert watches_on_topic(web.settings) == {}
    refused = [e for e in audit_events(web) if e["action"] == "cohort.watch"]
    assert [e["allowed"] for e in refused] == [False, False]


def test_the_event_stream_sends_the_table_when_it_changes(web: App) -> None:
    client, _ = signed_in(web, "analyst")

    def later() -> None:
        time.sleep(1.2)
        web.ch.command("INSERT INTO radstream.retrieval_requests (request_id, action, project_id, "
                       "requester, accession, destination_ae, requested_time) VALUES ('r-late', 'request', "
                       f"'{PROJECT}', 'rita', 'ACC-LATE', 'RESEARCH', now64(6))")

    t = threading.Thread(target=later)
    t.start()
    started = time.monotonic()
    r = client.get("/retrievals/events")  # the app ends the stream after sse_max_s (3 s) here
    t.join()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert time.monotonic() - started >= 2.5
    events = [e for e in r.text.split("\n\n") if e.startswith("event: retrievals")]
    html = ["\n".join(x[6:] for x in e.splitlines() if x.startswith("data: ")) for e in events]
    # the table at once, then again only when it changed (a render may fall between the insert's
    # appearance in one query and the next: each event still differs from the one before)
    assert 2 <= len(html) <= 3 and all(a != b for a, b in zip(html, html[1:], strict=False))
    assert "No requests." in html[0] and "ACC-LATE" not in html[0]
    assert "ACC-LATE" in html[-1] and 'data-state="requested"' in html[-1]
    assert f'<tr data-project="{PROJECT}">' in html[-1]
    # a request whose latest state is waiting_for_window is counted for its project
    web.ch.command("INSERT INTO radstream.retrieval_events (request_id, project_id, state, time) VALUES "
                   f"('r-late', '{PROJECT}', 'queued', now64(6) - 1), "
                   f"('r-late', '{PROJECT}', 'waiting_for_window', now64(6))")
    table = client.get(f"/retrievals/table?project={PROJECT}").text
    assert re.search(rf'<tr data-project="{PROJECT}">.*?<td class="waiting">1</td>', table, re.S)
    # signed out: no stream
    assert TestClient(web.app, follow_redirects=False).get("/retrievals/events").status_code == 303


def test_pipeline_page_from_a_real_scrape_and_the_warehouse(web: App) -> None:
    from radstream import access
    from streams.metrics import DEAD_LETTERS, NLP_LATENCY, dead_letter
    from streams.ops import Ops, OpsServer

    for v in (0.02, 0.03, 0.2, 0.4):
        NLP_LATENCY.observe(v)
    dead_letter("webtest", "WebTestError")
    dead_letter("webtest", "WebTestError")
    web.ch.command("INSERT INTO radstream.dead_letters (stage, error_type, error, time) VALUES "
                   "('webtest-stored', 'BadRecord', 'x', now64(6))")
    server = OpsServer(Ops(), "127.0.0.1", web.settings.worker.web_port,
                       gate=access.gate(web.settings, "worker")).start()
    try:
        client, _ = signed_in(web, "analyst")
        page = client.get("/pipeline").text
        steward, _ = signed_in(web, "steward")
        spage = steward.get("/pipeline").text
    finally:
        server.stop()
        DEAD_LETTERS.remove("webtest", "WebTestError")
    # the worker's /metrics answered (with the user's token); the other processes do not run here
    assert re.search(r'data-process="worker">.*?class="ok">\d+ samples', page, re.S)
    assert re.search(r'data-process="dicom scp">.*?class="error">', page, re.S)
    assert "<td>webtest</td><td>WebTestError</td><td>2</td>" in page
    count = int(re.search(r'id="nlp-count">(\d+)<', page).group(1))  # type: ignore[union-attr]
    assert count >= 4  # this process's histogram: others tests may have observed too
    # the fixture stored two report versions just now: this hour's row, counted by inserted_at, which is a
    # steward's (the real storing time against shifted report times would give the date shift)
    assert re.search(r'class="received">2<', spage)
    assert 'class="received"' not in page and "Reports stored per hour are for stewards" in page
    # the stored dead letters are a steward's: refused to the analyst by the page, shown to the steward
    assert "BadRecord" not in page and "is for stewards" in page
    assert "<td>webtest-stored</td><td>BadRecord</td><td>1</td>" in spage


@NEEDS_ML
@NEEDS_MINILM
@pytest.mark.ml
def test_search_by_meaning_ranks_the_reports_the_filters_select(web: App) -> None:
    """The text ranks by meaning (MiniLM vectors in report_embeddings, as the worker writes them with
    ml.embed) among the reports the structured filters select; full text does not find these words."""
    from sinks.clickhouse.embeddings import EmbedWorker, clickhouse_writer

    web.ch.command("INSERT INTO radstream.reports (site, accession, version, status, modality, exam_time, "
                   "received_time, text, study_ref) VALUES ('default', 'A3', 1, 'final', 'MR', "
                   "'2025-03-10 09:00:00', now64(6), 'Small left pleural effusion.', 'sr.A3')")
    texts = {"A1": "8 mm nodule.", "A2": "No nodule.", "A3": "Small left pleural effusion."}
    EmbedWorker(clickhouse_writer(web.ch, "radstream")).process(
        [{"site": "default", "accession": a, "version": 1, "status": "final", "modality": "MR" if a == "A3"
          else "CT", "text": t} for a, t in texts.items()])
    client, _ = signed_in(web, "analyst")

    page = client.get("/search", params={"text": "fluid around the lung", "semantic": "1"}).text
    hits = re.findall(r'<a class="acc" href="/report/default/(A\d)">', page)
    assert hits and hits[0] == "A3", hits  # the effusion first, though no word of the query is in it
    assert 'name="semantic" value="1" checked' in page

    only_ct = client.get("/search", params={"text": "fluid around the lung", "semantic": "1",
                                             "modality": "CT"}).text
    assert set(re.findall(r'<a class="acc" href="/report/default/(A\d)">', only_ct)) <= {"A1", "A2"}
    assert "among the 2 that the filters select" in only_ct

    plain = client.get("/search", params={"text": "fluid around the lung"}).text
    assert '<span id="total">0</span>' in plain  # full text: none of these words
    searches = [e for e in audit_events(web) if e.get("action") == "web.search"]
    assert any(json.loads(e["detail"])["search"].get("semantic") == "1" for e in searches), searches[-1:]


def test_a_session_ends_when_its_token_is_revoked(web: App) -> None:
    client, _ = signed_in(web, "analyst")
    assert client.get("/search").status_code == 200
    time.sleep(0.01)  # a new mtime for the token file: the servers re-read it
    tid = web.tokens["analyst"].split("_")[1]
    assert TokenStore(web.settings.auth.token_file).revoke(tid) == [tid]
    r = client.get("/search")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert client.get("/cohorts").status_code == 303  # the session is gone, not just this request
    ends = [e for e in audit_events(web) if e["action"] == "web.logout"]
    assert ends and json.loads(ends[-1]["detail"])["reason"] == "token revoked or expired"


def test_a_watch_withdrawn_elsewhere_is_no_longer_shown_as_subscribed(web: App) -> None:
    client, csrf = signed_in(web, "analyst")
    cid = save(client, csrf, "nodules", finding="nodule", finding_state="present")
    subscribe = {"csrf": csrf, "project": PROJECT, "destination": "RESEARCH"}
    row = f'<tr class="watch" data-project="{PROJECT}">'
    assert client.post(f"/cohorts/{cid}/subscribe", data=subscribe).status_code == 303
    assert row in client.get(f"/cohorts/{cid}").text
    time.sleep(1.1)  # the withdrawal comes a second later (the cohort file keeps whole seconds)
    standing.unsubscribe(web.settings, f"{PROJECT}:web-cohort-{cid}")  # as `radstream cohort unwatch`
    deadline = time.monotonic() + 30
    while row in client.get(f"/cohorts/{cid}").text:
        assert time.monotonic() < deadline, "the page still shows the withdrawn watch"
        time.sleep(0.5)
    assert "Not subscribed" in client.get(f"/cohorts/{cid}").text
    assert f"<td>{PROJECT}</td></tr>" not in client.get("/cohorts").text
    # subscribing again after the withdrawal is shown at once, and stays
    time.sleep(1.1)
    assert client.post(f"/cohorts/{cid}/subscribe", data=subscribe).status_code == 303
    for _ in range(4):
        assert row in client.get(f"/cohorts/{cid}").text
        time.sleep(0.5)


def test_the_registries_a_page_starts_stop_with_the_app(web: App) -> None:
    """Without a given project list the cohort page starts the projects and watches registries (consumers
    of their topics); the app's shutdown stops both, so no consumer outlives the app."""
    app = create_app(web.settings, warehouse=CheckedStore(web.settings, web.ch), sse_max_s=3.0)
    with TestClient(app, follow_redirects=False) as client:  # runs the app's lifespan
        csrf = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"csrf": csrf, "token": web.tokens["analyst"], "next": "/cohorts"})
        assert r.status_code == 303, r.text
        cid = save(client, csrf_of(client.get("/cohorts").text), "nodules", finding="nodule")
        assert client.get(f"/cohorts/{cid}").status_code == 200
        running = {t.name for t in threading.enumerate() if t.is_alive()}
        assert {"projects", "cohort-watches"} <= running, running
    running = {t.name for t in threading.enumerate() if t.is_alive()}
    assert not {"projects", "cohort-watches"} & running, running


def test_only_a_steward_sends_a_cohort_to_an_identified_project(web: App) -> None:
    client, csrf = signed_in(web, "analyst")
    cid = save(client, csrf, "nodules", finding="nodule", finding_state="present")
    page = client.get(f"/cohorts/{cid}").text
    assert f'value="{PROJECT}"' in page and IDENTIFIED not in page  # not offered to an analyst
    form = {"csrf": csrf, "project": IDENTIFIED, "destination": "RESEARCH"}
    for action in ("retrieve", "subscribe"):  # nor taken when posted anyway
        r = client.post(f"/cohorts/{cid}/{action}", data=form)
        assert r.status_code == 400 and "only a steward" in r.text, (action, r.text)
    assert watches_on_topic(web.settings) == {}
    refused = [(e["action"], e["allowed"]) for e in audit_events(web) if e["actor"] == "rita"
               and e["action"] in ("web.retrieve", "cohort.watch")]
    assert refused == [("web.retrieve", False), ("cohort.watch", False)]
    steward, scsrf = signed_in(web, "steward")
    assert f'value="{IDENTIFIED}"' in steward.get(f"/cohorts/{cid}").text
    r = steward.post(f"/cohorts/{cid}/subscribe", data={**form, "csrf": scsrf})
    assert r.status_code == 303, r.text
    assert [w.project_id for w in watches_on_topic(web.settings).values()] == [IDENTIFIED]


def test_metrics_health_and_ready_need_a_token_like_every_endpoint(web: App) -> None:
    client = TestClient(web.app, follow_redirects=False)
    for path in ("/metrics", "/health", "/ready"):
        assert client.get(path).status_code == 401  # no session cookie counts here: a bearer token only
    bearer = {"Authorization": f"Bearer {web.tokens['analyst']}"}
    metrics = client.get("/metrics", headers=bearer)
    assert metrics.status_code == 200
    assert 'radstream_auth_failures_total{service="web",status="401"}' in metrics.text  # the refusals above
    health = client.get("/health", headers=bearer).json()
    assert health["ok"] is True and health["service"] == "web"
    ready = client.get("/ready", headers=bearer)
    checks = ready.json()["checks"]
    assert checks["kafka"] == "ok" and set(checks) == {"kafka", "warehouse"}
    # no worker serves this test's embedded store: not ready, and it says which dependency
    assert ready.status_code == 503 and checks["warehouse"].startswith("error: ConnectionRefusedError")
    login_failures = [e for e in audit_events(web) if e["action"] == "login.failure"]
    assert len(login_failures) == 3


def test_a_steward_sees_an_identified_projects_status_whole_an_analyst_without_uids(web: App) -> None:
    """The sink keeps an identified project's status events from analysts (retrieval_events without UIDs
    and error text, the whole row in the steward-only retrieval_events_identified): the request's page
    shows a steward the whole row, an analyst the analysts' copy."""
    for table, error in (("retrieval_events", ""), ("retrieval_events_identified", "1.2.840.9.1 missing")):
        web.ch.command(f"INSERT INTO radstream.{table} (request_id, project_id, state, missing, error, time) "
                       f"VALUES ('r-id', '{IDENTIFIED}', 'partial', 1, '{error}', now64(6))")
    steward, _ = signed_in(web, "steward")
    page = steward.get("/retrievals/r-id")
    assert page.status_code == 200 and "1.2.840.9.1 missing" in page.text
    analyst, _ = signed_in(web, "analyst")
    page = analyst.get("/retrievals/r-id")
    assert page.status_code == 200 and "partial" in page.text and "1.2.840.9.1" not in page.text


def test_a_demoted_steward_loses_the_stewards_actions_at_the_next_request(web: App) -> None:
    """The session works with the roles the token store gives its user now, not those of the sign-in:
    `radstream auth add-user sam --role analyst` between two requests, and the next one is an analyst's
    (the pages, the identified project, and the warehouse queries of the role-checked read path)."""
    web.ch.command("INSERT INTO radstream.retrieval_events_identified (request_id, project_id, state, "
                   f"missing, error, time) VALUES ('r-id', '{IDENTIFIED}', 'partial', 1, "
                   "'1.2.840.9.1 missing', now64(6))")
    steward, csrf = signed_in(web, "steward")
    cid = save(steward, csrf, "nodules", finding="nodule", finding_state="present")
    assert steward.get("/steward/audit").status_code == 200
    assert f'value="{IDENTIFIED}"' in steward.get(f"/cohorts/{cid}").text
    assert "1.2.840.9.1 missing" in steward.get("/retrievals/r-id").text

    time.sleep(0.01)  # a new mtime for the token file: the app re-reads it
    TokenStore(web.settings.auth.token_file).add_user("sam", ["analyst"])  # as `radstream auth add-user`
    assert steward.get("/steward/audit").status_code == 403
    assert IDENTIFIED not in steward.get(f"/cohorts/{cid}").text
    form = {"csrf": csrf, "project": IDENTIFIED, "destination": "RESEARCH"}
    for action in ("retrieve", "subscribe"):
        r = steward.post(f"/cohorts/{cid}/{action}", data=form)
        assert r.status_code == 400 and "only a steward" in r.text, (action, r.text)
    assert watches_on_topic(web.settings) == {}
    page = steward.get("/retrievals/r-id")  # the query layer now reads the analysts' copy
    assert page.status_code == 200 and "1.2.840.9.1" not in page.text
    refused = [(e["action"], e["allowed"]) for e in audit_events(web) if e["actor"] == "sam"
               and not e["allowed"]]
    assert refused == [("http.request", False), ("web.retrieve", False), ("cohort.watch", False)]


def test_only_its_subscriber_or_a_steward_ends_a_standing_watch(web: App) -> None:
    """Cohorts are shared, their watches are not: an analyst cannot end a steward's watch of an identified
    project, nor another analyst's; the refusals are audited and the watches stay on the topic."""
    store = TokenStore(web.settings.auth.token_file)
    store.add_user("ann", ["analyst"])
    web.tokens["ann"] = store.add_token("ann")
    steward, scsrf = signed_in(web, "steward")
    cid = save(steward, scsrf, "nodules", finding="nodule", finding_state="present")
    r = steward.post(f"/cohorts/{cid}/subscribe", data={"csrf": scsrf, "project": IDENTIFIED,
                                                        "destination": "RESEARCH"})
    assert r.status_code == 303, r.text
    rita, csrf = signed_in(web, "analyst")
    r = rita.post(f"/cohorts/{cid}/subscribe", data={"csrf": csrf, "project": PROJECT,
                                                     "destination": "RESEARCH"})
    assert r.status_code == 303, r.text
    page = rita.get(f"/cohorts/{cid}").text
    assert f'aria-label="Unsubscribe {PROJECT}"' in page  # her own: offered
    assert f'aria-label="Unsubscribe {IDENTIFIED}"' not in page  # the steward's: not offered
    r = rita.post(f"/cohorts/{cid}/unsubscribe", data={"csrf": csrf, "project": IDENTIFIED})
    assert r.status_code == 403 and "only a steward" in r.text, r.text
    ann, acsrf = signed_in(web, "ann")
    assert 'aria-label="Unsubscribe' not in ann.get(f"/cohorts/{cid}").text
    r = ann.post(f"/cohorts/{cid}/unsubscribe", data={"csrf": acsrf, "project": PROJECT})
    assert r.status_code == 403 and "subscribed by &#39;rita&#39;" in r.text, r.text
    assert sorted(w.project_id for w in watches_on_topic(web.settings).values()) == [IDENTIFIED, PROJECT]
    refused = [(e["actor"], e["project"]) for e in audit_events(web)
               if e["action"] == "cohort.unwatch" and not e["allowed"]]
    assert refused == [("rita", IDENTIFIED), ("ann", PROJECT)]
    # a steward ends either
    for project in (IDENTIFIED, PROJECT):
        r = steward.post(f"/cohorts/{cid}/unsubscribe", data={"csrf": scsrf, "project": project})
        assert r.status_code == 303, r.text
    assert watches_on_topic(web.settings) == {}
