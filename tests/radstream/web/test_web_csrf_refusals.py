"""A post refused for its CSRF token is audited and counted in ``radstream_auth_failures_total`` as the
token and role refusals are: on a page and on the sign-in form (real app, Kafka and chDB as in
test_web_app)."""

from __future__ import annotations

from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from tests.radstream.web.test_web_app import (  # noqa: F401 - web: the fixture
    PROJECT,
    App,
    audit_events,
    csrf_of,
    save,
    signed_in,
    web,
)


def refusals() -> float:
    labels = {"service": "web", "status": "403"}
    return REGISTRY.get_sample_value("radstream_auth_failures_total", labels) or 0


def test_csrf_refusals_are_audited_and_counted(web: App) -> None:  # noqa: F811
    before = refusals()
    stranger = TestClient(web.app, follow_redirects=False)
    csrf_of(stranger.get("/login").text)  # a session with a CSRF token; the post sends another
    r = stranger.post("/login", data={"csrf": "forged", "token": web.tokens["analyst"], "next": "/"})
    assert r.status_code == 403
    rita, csrf = signed_in(web, "analyst")
    cid = save(rita, csrf, "nodules", finding="nodule", finding_state="present")
    r = rita.post(f"/cohorts/{cid}/subscribe", data={"project": PROJECT, "destination": "RESEARCH"})
    assert r.status_code == 403
    assert refusals() == before + 2
    refused = [(e["actor"], e["action"]) for e in audit_events(web) if not e["allowed"]]
    assert refused == [("", "http.request"), ("rita", "http.request")]
