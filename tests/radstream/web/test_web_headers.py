"""Every response of the web app carries the security headers (radstream/web/headers.py), and every one
but the static files says ``Cache-Control: no-store``: the real app on a real embedded store (the
role-checked read path, ``CheckedStore``), with a signed-in user's report page and cohort manifest. The
Content-Security-Policy allows scripts from the app's origin only, so no template may hold an inline
script (the browser test, test_web_browser.py, runs the pages under it in chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from radstream.config import Settings
from radstream.web.app import HERE, create_app
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.query import close_readonly_clients
from sinks.dicom.projects import StaticProjects
from tests.helpers_chdb import migrated_store
from tests.radstream.web.test_web_app import CheckedStore, csrf_of
from tests.streams.helpers import free_port
from tests.streams.test_auth_peer import state_with_users

SECURITY = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    s = Settings(state_dir=str(tmp_path / "state")).replace(worker={"web_port": free_port()})
    token = state_with_users(s, rita="analyst")["analyst"]
    ch = open_client(ClickHouseConfig(url=f"chdb://{migrated_store(tmp_path / 'chdb', 'radstream')}",
                                      database="radstream"))
    for table in ("reports", "report_versions", "report_search"):
        ch.command(f"INSERT INTO radstream.{table} (site, accession, version, status, modality, exam_time, "
                   "text, study_ref) VALUES ('default', 'A1', 1, 'final', 'CT', '2025-01-10 09:00:00', "
                   "'A 7 mm nodule.', 'sr.A1')")
    ch.command("INSERT INTO radstream.report_current (site, accession, report_version, status) "
               "VALUES ('default', 'A1', 1, 'final')")
    app = create_app(s, warehouse=CheckedStore(s, ch), projects=StaticProjects([]))
    c = TestClient(app, follow_redirects=False)
    r = c.post("/login", data={"csrf": csrf_of(c.get("/login").text), "token": token, "next": "/search"})
    assert r.status_code == 303, r.text
    try:
        yield c
    finally:
        app.state.stop_registries()
        close_readonly_clients()
        ch.close()


def test_every_response_has_the_security_headers_and_authenticated_ones_no_store(client: TestClient) -> None:
    csrf = csrf_of(client.get("/cohorts").text)
    r = client.post("/cohorts", data={"csrf": csrf, "name": "nodules", "modality": "CT"})
    assert r.status_code == 303, r.text
    cohort = str(r.headers["location"])
    pages = {path: client.get(path) for path in (
        "/login", "/search?modality=CT", "/report/default/A1", cohort, cohort + "/manifest.csv", "/pipeline",
        "/steward/audit")}  # the last: a 403 page
    assert "A 7 mm nodule" in pages["/report/default/A1"].text
    assert pages[cohort + "/manifest.csv"].text.startswith("accession,")
    assert pages["/steward/audit"].status_code == 403
    pages["POST /cohorts (redirect)"] = r
    for what, resp in pages.items():
        for name, value in SECURITY.items():
            assert resp.headers.get(name) == value, (what, name, dict(resp.headers))
        csp = resp.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, (what, csp)
        assert resp.headers.get_list("cache-control") == ["no-store"], (what, dict(resp.headers))
    static = client.get("/static/htmx-2.0.11.min.js")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
    assert "no-store" not in static.headers.get("cache-control", "")  # the vendored files may be cached


def test_no_template_has_an_inline_script() -> None:
    # script-src 'self': an inline script would not run; JSON data islands are not scripts
    for tpl in (HERE / "templates").glob("*.html"):
        for tag in re.findall(r"<script\b[^>]*>", tpl.read_text()):
            assert "src=" in tag or 'type="application/json"' in tag, (tpl.name, tag)
        assert not re.search(r"\son[a-z]+=", tpl.read_text()), tpl.name  # no inline event handlers
        assert "[" not in "".join(re.findall(r'hx-trigger="([^"]*)"', tpl.read_text())), tpl.name  # eval
