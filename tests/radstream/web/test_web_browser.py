"""The web app in a real browser (Debian's chromium, driven by Playwright) against a real stack: Kafka,
a worker process that runs the NLP and owns the embedded warehouse (its /sql page is the query layer),
Orthanc seeded with studies, a DICOM worker and our research SCP as processes, and `radstream web`.

One flow, as a researcher does it: sign in, search "nodule >= 6 mm, not negated", open a report, save the
cohort, send it to retrieval, watch the progress bars reach 100%; then an analyst is refused the steward
pages (403, audited); then an analyst subscribes a cohort for a second project with the keyboard, a new
matching report arrives, the worker's standing-cohort agent requests its study and the dashboard shows
it complete by server-sent events (no polling), and the pipeline page shows the worker's metrics.
A screenshot of each page is kept under the test's tmp dir (and docs/web/ when
RADSTREAM_WEB_SCREENSHOTS=docs)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from sinks.dicom.projects import Project, publish
from streams.auth import TokenStore
from tests.sinks.clickhouse.factories import report
from tests.sinks.clickhouse.kafka_helpers import produce_all, wait_until
from tests.sinks.dicom.conftest import SMALL, orthanc_state, spec  # noqa: F401 - the session's Orthanc
from tests.streams.helpers import free_port, radstream_process, worker_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PROJECT = "PWEB"
WATCH_PROJECT = "PWATCH"  # the standing cohort's project
KEY = "web-browser-test-key-0123456789abcdef"
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
# seeded studies A1..A4 of the DICOM tests' Orthanc; texts chosen so that "nodule >= 6 mm, present"
# matches A1 and A4 (v2) only: A2 negates it, A3 is 3 mm, A4's first version had none
TEXTS = {
    1: "EXAM: CT CHEST\nFINDINGS: 8 mm nodule in the right upper lobe. No pleural effusion.\n"
       "IMPRESSION: Pulmonary nodule. Follow-up CT in 6 months.",
    2: "EXAM: CT CHEST\nFINDINGS: No pulmonary nodule. No pleural effusion.\nIMPRESSION: Normal chest.",
    3: "EXAM: CT CHEST\nFINDINGS: 3 mm nodule in the left lower lobe.\nIMPRESSION: Tiny nodule.",
    4: "EXAM: CT CHEST\nFINDINGS: Mild atelectasis.\nIMPRESSION: No acute finding.",
}
CORRECTED_A4 = ("EXAM: CT CHEST\nFINDINGS: Mild atelectasis. 7 mm nodule in the left upper lobe.\n"
                "IMPRESSION: Pulmonary nodule; follow-up CT in 3 months.")


def ensure_chromium() -> None:
    """Debian's chromium, installed with apt-get when missing (as the stack installs Orthanc)."""
    if Path(CHROMIUM).exists():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    assert Path(CHROMIUM).exists(), "apt-get did not install chromium"


def process(settings: Settings, log: Path, *args: str) -> Any:
    """``radstream [args]`` as a real process (``radstream_process``)."""
    return radstream_process(settings, log, *args)


def worker_sql(settings: Settings, token: str, sql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.worker.web_port}/sql?format=jsonl"
    req = urllib.request.Request(url, data=sql.encode(), headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return [json.loads(x) for x in resp.read().decode().splitlines() if x.strip()]
    except OSError:
        return []


@dataclasses.dataclass
class Stack:
    settings: Settings
    url: str
    tokens: dict[str, str]
    shots: Path


@pytest.fixture(scope="module")
def stack(kafka_settings: Settings, orthanc_state: tuple[Settings, Path],  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from streams.topics import create_topics

    ensure_chromium()
    tmp = tmp_path_factory.mktemp("web")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = {f.name: prefix + getattr(kafka_settings.topics, f.name)
              for f in dataclasses.fields(kafka_settings.topics)}
    o, _ = orthanc_state
    web_port = free_port()
    settings = kafka_settings.replace(
        state_dir=str(tmp / "state"), topics=topics, kafka={"consumer_group": f"web-{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()}, clickhouse={"url": "", "database": "radstream"},
        pacs={"port": o.pacs.port, "http_port": o.pacs.http_port, "backoff_s": 0.2, "max_associations": 1},
        research={"port": o.research.port, "store_dir": str(tmp / "store"),
                  "allowed_destinations": ("RESEARCH",)},
        ingest={"pseudonym_key": KEY})
    Path(settings.state_dir).mkdir(parents=True)
    create_topics(settings.kafka, settings.topics)
    publish(settings.kafka, settings.topics, Project(PROJECT, "RESEARCH", "pytest", "pytest", identified=True,
                                                     irb_reference="IRB-WEB-TEST"))
    publish(settings.kafka, settings.topics, Project(WATCH_PROJECT, "RESEARCH", "pytest", "pytest",
                                                     irb_reference="IRB-WEB-WATCH"))
    store = TokenStore(settings.auth.token_file)
    tokens = {}
    for user, role in (("rita", "analyst"), ("sam", "steward")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    reps = []
    for k, text in TEXTS.items():
        st = spec("A", k)
        reps.append(report(st.accession, text=text, patient_id=st.patient_id, study_instance_uid=st.study_uid,
                           exam_time=T0 + timedelta(days=31 * k)))
    st4 = spec("A", 4)
    reps.append(report(st4.accession, 2, status="corrected", text=CORRECTED_A4, patient_id=st4.patient_id,
                       study_instance_uid=st4.study_uid, exam_time=T0 + timedelta(days=124)))
    shots = tmp / "screenshots"
    shots.mkdir()
    with ExitStack() as es:
        es.enter_context(worker_process(settings, tmp / "worker.log"))
        es.enter_context(process(settings, tmp / "scp.log", "dicom", "scp"))
        es.enter_context(process(settings, tmp / "dicom-worker.log", "dicom", "worker"))
        es.enter_context(process(settings, tmp / "web.log", "web", "--port", str(web_port)))
        produce_all(settings, [(settings.topics.reports, "report_finalized", f"default|{r['accession']}", r)
                               for r in reps])
        wait_until(lambda: [int(r["n"]) for r in worker_sql(
                       settings, tokens["steward"], "SELECT count() AS n FROM findings_latest "
                       "WHERE concept = 'nodule' AND size_mm >= 6")] == [2],
                   timeout=180, every=1.0, what="the reports' findings in the warehouse")
        wait_until(lambda: _answers(f"http://127.0.0.1:{web_port}/login"), timeout=60, every=0.5,
                   what="radstream web")
        yield Stack(settings, f"http://127.0.0.1:{web_port}", tokens, shots)
    if os.environ.get("RADSTREAM_WEB_SCREENSHOTS") == "docs":
        for p in shots.glob("*.png"):
            shutil.copy(p, ROOT / "docs" / "web" / p.name)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# what the browser refused under the app's Content-Security-Policy (radstream/web/headers.py): an inline
# script, an eval (htmx trigger filters), a style or connection it does not allow; each test ends with none
CSP_REFUSED: list[str] = []


def context(browser: Any, **kw: Any) -> Any:
    ctx = browser.new_context(**kw)
    ctx.on("console", lambda m: CSP_REFUSED.append(m.text) if "Content Security Policy" in m.text else None)
    return ctx


def sign_in(browser: Any, stack: Stack, role: str) -> Any:
    page = context(browser, viewport={"width": 1366, "height": 900}).new_page()
    page.goto(stack.url + "/search")
    assert page.url.startswith(stack.url + "/login")
    page.get_by_label("Access token").fill(stack.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(stack.url + "/search")
    return page


def shot(page: Any, stack: Stack, name: str) -> None:
    page.screenshot(path=str(stack.shots / f"{name}.png"), full_page=True)


def audit_events(stack: Stack) -> list[dict[str, Any]]:
    path = Path(stack.settings.auth.audit_log)
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_search_cohort_retrieval_flow(browser: Any, stack: Stack) -> None:
    # a wrong token first: refused and audited as a login failure
    page = context(browser).new_page()
    page.goto(stack.url + "/login")
    shot(page, stack, "01-sign-in")
    page.get_by_label("Access token").fill("rst_nope_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "invalid, revoked or unknown token" in page.locator(".error").inner_text()
    assert any(e["action"] == "login.failure" and not e["allowed"] for e in audit_events(stack))

    page = sign_in(browser, stack, "steward")
    page.get_by_label("Finding", exact=True).fill("nodule")
    page.get_by_label("Finding is").select_option("present")
    page.get_by_label("Size ≥ (mm)").fill("6")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("#total")
    assert page.locator("#total").inner_text() == "2"
    hits = page.locator("li.hit")
    assert hits.count() == 2
    # A2's negated nodule and A3's 3 mm one are not among the results; the 8 mm one is marked present
    assert page.locator("mark.f-present", has_text="nodule").count() >= 2
    assert "No pulmonary nodule" not in page.locator(".hits").inner_text()
    assert page.locator(".histogram .bar-row").count() == 2
    shot(page, stack, "02-search")

    # the same search without the size: A2's negated nodule is marked as negated
    page.goto(stack.url + "/search?finding=nodule&finding_state=negated")
    assert page.locator("#total").inner_text() == "1"
    assert page.locator(".hits mark.f-negated", has_text="nodule").count() == 1
    assert page.locator(".hits mark.f-present", has_text="nodule").count() == 0

    page.go_back()
    page.wait_for_selector("#total")
    first = page.locator("li.hit a.acc").first
    acc = first.inner_text()
    assert acc.startswith("ACC-")  # research identifiers only
    # the corrected report (A4) has two versions: open it
    accs = set(page.locator("li.hit a.acc").all_inner_texts())
    page.locator("li.hit").filter(has_text="7 mm nodule").locator("a.acc").click()
    page.wait_for_selector("table.findings")
    assert "Report ACC-" in page.locator("h1").inner_text()
    assert "nodule" in page.locator("table.findings").inner_text()
    assert "+FINDINGS: Mild atelectasis. 7 mm nodule" in page.locator("pre.diff").inner_text()
    shot(page, stack, "03-report")

    page.go_back()
    page.wait_for_selector("#total")
    page.get_by_label("Save as cohort").fill("nodules 6 mm+")
    page.get_by_role("button", name="Save cohort").click()
    page.wait_for_selector("#cohort-size")
    assert page.locator("#cohort-size").inner_text() == "2"
    shot(page, stack, "04-cohort")
    manifest = page.request.get(page.url + "/manifest.csv").text().splitlines()
    assert manifest[0] == "accession,study_ref,modality,exam_time" and len(manifest) == 3
    assert {line.split(",")[0] for line in manifest[1:]} == accs

    page.locator("form[action$='/retrieve']").get_by_label("Project").select_option(PROJECT)
    page.get_by_role("button", name="Send to retrieval").click()
    page.wait_for_url("**/retrievals?project=" + PROJECT)
    # the table refreshes itself (htmx polling): no reload from here on
    page.wait_for_function(
        "() => { const r = document.querySelectorAll('tr.req'); return r.length === 2 && "
        "[...r].every(x => x.dataset.state === 'completed'); }", timeout=150_000)
    pcts = page.locator("tr.req .pct").all_inner_texts()
    assert pcts == ["100%", "100%"]
    values = page.locator("tr.req progress").evaluate_all("ps => ps.map(p => p.value)")
    assert [int(v) for v in values] == [100, 100]
    assert "3/3" in page.locator("tr.req").first.inner_text()
    shot(page, stack, "05-retrievals")
    page.locator("tr.req a").first.click()
    page.wait_for_selector("h1")
    states = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert states[0] == "queued" and states[-1] == "completed" and "moving" in states
    shot(page, stack, "06-retrieval-timeline")
    # files arrived in the project's tree of our research store
    stored = list((Path(stack.settings.research.store_dir) / PROJECT).rglob("*.dcm"))
    assert len(stored) == 6

    page.goto(stack.url + "/steward/audit")
    assert page.locator("h1").inner_text() == "Audit trail"
    shot(page, stack, "07-audit")
    actions = {(e["actor"], e["action"]) for e in audit_events(stack)}
    assert {("sam", "web.login"), ("sam", "web.search"), ("sam", "cohort.save"),
            ("sam", "web.retrieve")} <= actions
    assert CSP_REFUSED == []


def test_analyst_is_refused_the_steward_pages(browser: Any, stack: Stack) -> None:
    page = sign_in(browser, stack, "analyst")
    assert page.locator("a[href='/steward/audit']").count() == 0  # not offered either
    for path in ("/steward/audit", "/steward/quarantine"):
        resp = page.goto(stack.url + path)
        assert resp is not None and resp.status == 403
        assert "lacks the role steward" in page.locator(".error").inner_text()
    shot(page, stack, "08-analyst-refused")
    refused = [e for e in audit_events(stack) if e["actor"] == "rita" and e["action"] == "http.request"]
    assert {json.loads(e["detail"])["endpoint"] for e in refused if not e["allowed"]} == {
        "/steward/audit", "/steward/quarantine"}
    # a POST without the CSRF token is refused too
    resp = page.request.post(stack.url + "/cohorts", form={"finding": "nodule", "name": "x"})
    assert resp.status == 403
    assert CSP_REFUSED == []


def test_standing_cohort_live_dashboard_and_pipeline(browser: Any, stack: Stack) -> None:
    page = sign_in(browser, stack, "analyst")
    page.goto(stack.url + "/search?finding=nodule&finding_state=present&min_size_mm=6")
    page.get_by_label("Save as cohort").fill("standing nodules")
    page.get_by_role("button", name="Save cohort").click()
    page.wait_for_selector("#cohort-size")
    cohort_url = page.url
    assert '"min_size_mm": 6.0' in page.locator("#rule").text_content()
    page.locator("form[action$='/subscribe']").get_by_label("Subscribe project").select_option(WATCH_PROJECT)
    # keyboard only from here: Tab to the button, Enter
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Subscribe":
            break
    else:
        pytest.fail("the Subscribe button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"tr.watch[data-project='{WATCH_PROJECT}']")
    shot(page, stack, "09-standing-cohort")

    # the dashboard of the project, live by server-sent events; polling counted (it should not happen)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/retrievals/table" in r.url else None)
    page.goto(stack.url + f"/retrievals?project={WATCH_PROJECT}")
    page.wait_for_function("() => document.getElementById('live').dataset.sse === 'open'", timeout=30_000)
    assert page.locator("tr.req").count() == 0

    # a new report of study C1 with a 9 mm nodule: the worker's standing-cohort agent requests it. The watch
    # reaches the worker asynchronously (its registry reads the watch topic): a version that came before it
    # is not requested, so a new version follows until one is.
    st = spec("C", 1)
    text = "EXAM: CT CHEST\nFINDINGS: 9 mm nodule in the right middle lobe.\nIMPRESSION: Pulmonary nodule."
    requested = f"SELECT count() AS n FROM retrieval_requests WHERE project_id = '{WATCH_PROJECT}'"
    for version in range(1, 6):
        rep = report(st.accession, version, text=text, patient_id=st.patient_id,
                     study_instance_uid=st.study_uid, exam_time=T0 + timedelta(days=200))
        produce_all(stack.settings, [(stack.settings.topics.reports, "report_finalized",
                                      f"default|{st.accession}", rep)])
        try:
            wait_until(lambda: [int(r["n"]) >= 1 for r in worker_sql(stack.settings, stack.tokens["steward"],
                                                                      requested)] == [True],
                       timeout=20, every=1.0, what="the standing cohort's retrieval request")
            break
        except AssertionError:
            continue
    else:
        pytest.fail("the standing cohort never requested the new report's study")
    page.wait_for_function(
        "() => { const r = document.querySelectorAll('tr.req'); return r.length === 1 && "
        "r[0].dataset.state === 'completed'; }", timeout=150_000)
    assert page.locator("tr.req .pct").inner_text() == "100%"
    assert page.evaluate("document.getElementById('live').dataset.sse") == "open"
    assert polls == []  # every update came by the event stream
    assert "always open" in page.locator("#window").inner_text()
    assert page.locator(f"tr[data-project='{WATCH_PROJECT}'] td.waiting").inner_text() == "0"
    page.wait_for_selector(".chart canvas")  # uPlot drew the throughput
    row = page.locator("table.throughput tr").filter(has_text=WATCH_PROJECT)
    assert row.locator("td").last.text_content() == str(SMALL)  # C1's instances, all this hour
    shot(page, stack, "10-retrievals-live")

    page.goto(cohort_url)
    page.get_by_role("button", name=f"Unsubscribe {WATCH_PROJECT}").click()
    page.wait_for_selector("#not-subscribed")
    actions = [e["action"] for e in audit_events(stack) if e["actor"] == "rita"]
    assert "cohort.watch" in actions and "cohort.unwatch" in actions

    page.goto(stack.url + "/pipeline")
    assert page.locator("tr[data-process='worker'] td.ok").count() == 1
    assert int(page.locator("#nlp-reports").inner_text()) >= 6  # 5 reports of the stack and C1's
    assert int(page.locator("#nlp-count").inner_text()) >= 6
    # reports stored per hour count by inserted_at, which analysts may not read: a steward's chart
    assert page.locator("table.hours").count() == 0
    assert "Reports stored per hour are for stewards" in page.locator("main").inner_text()
    assert "is for stewards" in page.locator("main").inner_text()
    spage = sign_in(browser, stack, "steward")
    spage.goto(stack.url + "/pipeline")
    # every report version of the stack was stored this hour (or the one before, if the test spans it)
    assert sum(int(x) for x in spage.locator("table.hours td.received").all_text_contents()) >= 6
    spage.wait_for_selector(".chart canvas")
    shot(spage, stack, "11-pipeline")
    spage.context.close()

    # a browser without EventSource (or a proxy that cuts the stream): the dashboard polls instead
    ctx = page.context
    ctx.add_init_script("delete window.EventSource;")
    old = ctx.new_page()
    with old.expect_request(lambda r: "/retrievals/table" in r.url, timeout=15_000):
        old.goto(stack.url + f"/retrievals?project={WATCH_PROJECT}")
    assert old.locator("tr.req").first.get_attribute("data-state") == "completed"
    assert CSP_REFUSED == []
