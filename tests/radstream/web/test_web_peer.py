"""The web app sends the signed-in user's token, and their queries, only to processes that are ours: with
the embedded store a search goes to the worker's /sql page, the pipeline page scrapes the worker's and
the other processes' /metrics. Another OS user's listener on one of those ports (uid 65534, a real
process: tests/streams/test_auth_peer.py) is sent nothing and its answer is not shown; the page says why.
Our own processes (an OpsServer of this process's user) are scraped as before."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.testclient import TestClient

from radstream import access
from radstream.config import Settings
from radstream.web.app import create_app
from streams.ops import Ops, OpsServer
from tests.radstream.web.test_web_app import csrf_of
from tests.streams.helpers import free_port
from tests.streams.test_auth_peer import NOBODY, listener, state_with_users


def test_searches_and_scrapes_go_to_no_other_users_process(tmp_path: Path) -> None:
    s = Settings(state_dir=str(tmp_path / "state")).replace(
        worker={"web_port": free_port()},
        metrics={"dicom_worker_port": free_port(), "scp_port": free_port(), "hl7_port": free_port()})
    tokens = state_with_users(s, rita="analyst", sam="steward")
    app = create_app(s)
    ours = OpsServer(Ops(), "127.0.0.1", s.metrics.hl7_port, gate=access.gate(s, "hl7")).start()
    try:
        with listener(tmp_path, s.worker.web_port) as worker_port, \
                listener(tmp_path, s.metrics.dicom_worker_port) as metrics_port:
            pages = {}
            for role in ("analyst", "steward"):
                client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
                r = client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                                "token": tokens[role], "next": "/search"})
                assert r.status_code == 303, r.text
                pages[role, "search"] = client.get("/search", params={"modality": "CT"})
                pages[role, "pipeline"] = client.get("/pipeline")
            got = worker_port.received() + "\n" + metrics_port.received()
    finally:
        ours.stop()
        app.state.stop_registries()
    # nothing of any user reached the other user's listeners: no token, no query
    assert "Authorization" not in got and "SELECT" not in got, got
    assert all(t not in got for t in tokens.values())

    refusal = f"refusing to send a token to 127.0.0.1:{s.worker.web_port}"
    for role in ("analyst", "steward"):
        search = pages[role, "search"]
        assert search.status_code == 503 and refusal in search.text, search.text  # not its forged answer
        assert f"uid {NOBODY} (nobody)" in search.text
    steward_pipeline = pages["steward", "pipeline"]  # its warehouse query went nowhere either
    assert steward_pipeline.status_code == 503 and refusal in steward_pipeline.text
    page = pages["analyst", "pipeline"].text  # an analyst's pipeline page: the scrapes only
    assert pages["analyst", "pipeline"].status_code == 200
    dicom_row = re.search(r'data-process="dicom worker">.*?</tr>', page, re.S)
    assert dicom_row and f"127.0.0.1:{s.metrics.dicom_worker_port}" in dicom_row.group(0)
    assert f"runs as uid {NOBODY}" in dicom_row.group(0), dicom_row.group(0)
    # our own process (this uid) on the HL7 listener's metrics port: scraped with the user's token
    assert re.search(r'data-process="hl7 listener">.*?class="ok">\d+ samples', page, re.S), page


def test_ready_says_the_warehouse_is_not_ours_while_another_user_holds_its_port(tmp_path: Path) -> None:
    s = Settings(state_dir=str(tmp_path / "state")).replace(worker={"web_port": free_port()})
    token = state_with_users(s, ada="admin")["admin"]
    app = create_app(s)
    try:
        with listener(tmp_path, s.worker.web_port):
            r = TestClient(app).get("/ready", headers={"Authorization": f"Bearer {token}"})
    finally:
        app.state.stop_registries()
    assert r.status_code == 503
    assert r.json()["checks"]["warehouse"].startswith("error: PeerRefused: refusing to send a token"), r.text
