"""``radstream sql`` while a real worker owns the embedded store: the query goes to the worker's read-only
/sql page (the store itself cannot be opened by a second process), writes are refused, and a worker that
serves another store is not used."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings, settings_env
from tests.helpers_chdb import seed_store_of
from tests.streams.helpers import free_port, research_accession, worker_process

from .factories import report
from .kafka_helpers import produce_all, wait_until

ROOT = Path(__file__).resolve().parents[3]


def sql(settings: Settings, query: str, *args: str,
        token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    env.pop("RADSTREAM_TOKEN", None)
    if token is not None:
        env["RADSTREAM_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "radstream", "sql", query, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def worker(topic_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = topic_settings.replace(
        state_dir=str(tmp_path / "state"),
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()},
        clickhouse={"url": "", "database": "radstream"},
    )
    Path(settings.state_dir).mkdir(parents=True)  # the worker does not create it
    log_path = tmp_path / "worker.log"
    with worker_process(settings, log_path) as proc:
        yield settings
        assert proc.poll() is None, log_path.read_text()[-3000:]


def test_sql_goes_through_the_worker_that_owns_the_store(worker: Settings, tmp_path: Path) -> None:
    s = worker
    reps = [report(f"S{i}", text="FINDINGS: 9 mm nodule in the right upper lobe.") for i in range(3)]
    produce_all(s, [(s.topics.reports, "report_finalized", f"default|{r['accession']}", r) for r in reps])

    def stored() -> bool:
        out = sql(s, "SELECT count() AS n FROM reports_latest", "--format", "csv")
        return out.returncode == 0 and out.stdout.splitlines()[-1:] == ["3"]

    wait_until(stored, timeout=120, every=1.0, what="3 reports through the worker")
    table = sql(s, "SELECT accession, modality FROM reports_latest ORDER BY accession")
    assert table.returncode == 0 and research_accession(s, "S0") in table.stdout and "3 rows" in table.stdout
    rows = json.loads(sql(s, "SELECT accession FROM findings_latest", "--format", "json").stdout)["data"]
    # the worker's NLP ran, the sink stored it
    assert {r["accession"] for r in rows} == {research_accession(s, a) for a in ("S0", "S1", "S2")}
    refused = sql(s, "DROP TABLE reports")
    assert refused.returncode != 0 and "only one SELECT may run here (got DropQuery" in refused.stderr
    # the store really is the worker's: opening it directly from here fails
    direct = sql(s, "SELECT 1", "--direct")
    assert direct.returncode != 0 and "cannot open" in direct.stderr
    # a client with no store where it runs (an analyst's own directory) is answered by the worker, with
    # its token, and creates nothing there (review r16: it made an empty store, called the token invalid)
    other = s.replace(state_dir=str(tmp_path / "other"))
    token = (Path(s.auth.token_file).parent / "local.token").read_text().strip()
    theirs = sql(other, "SELECT count() AS n FROM reports_latest", "--format", "csv", token=token)
    assert theirs.returncode == 0 and theirs.stdout.splitlines()[-1:] == ["3"], theirs.stderr
    assert not Path(other.state_dir).exists()
    # a client with a store of its own (another deployment's state directory) does not take the worker's
    # answer: the worker serves another store; it opens its own
    Path(other.state_dir).mkdir()
    env = {**os.environ, **settings_env(other), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "radstream", "db", "migrate"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    mine = sql(other, "SELECT count() AS n FROM reports_latest", "--format", "csv")
    assert mine.returncode == 0 and mine.stdout.splitlines()[-1:] == ["0"], mine.stdout + mine.stderr


def test_worker_waits_for_a_store_another_process_holds_then_loads(topic_settings: Settings,
                                                                   tmp_path: Path) -> None:
    """The embedded store held by someone else (an analyst's direct query) while the worker starts:
    its sink retries, and once the store is free it loads what arrived meanwhile."""
    settings = topic_settings.replace(
        state_dir=str(tmp_path / "state"), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()}, clickhouse={"url": "", "database": "radstream"})
    Path(settings.state_dir).mkdir(parents=True)
    # a migrated copy (tests/helpers_chdb.py) before the holder opens the path: once it is free, the worker's
    # migrate applies nothing
    seed_store_of(settings.clickhouse.url, "radstream")
    # the holder keeps the store until the test closes its stdin: only once the worker has said that it
    # waits (a fixed hold time raced a worker that a loaded host started more slowly than the hold)
    hold = ("import sys, chdb; c = chdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read(); c.close()")
    holder = subprocess.Popen([sys.executable, "-c", hold, settings.clickhouse_url.removeprefix("chdb://")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    log_path = tmp_path / "worker.log"
    with worker_process(settings, log_path) as proc, holder:
        reps = [report(f"H{i}", text="IMPRESSION: Small pneumothorax.") for i in range(2)]
        produce_all(settings, [(settings.topics.reports, "report_finalized", f"default|{r['accession']}", r)
                               for r in reps])
        wait_until(lambda: "cannot open ClickHouse yet" in log_path.read_text(), timeout=120, every=0.5,
                   what="the worker to find the store held")

        def stored() -> bool:
            out = sql(settings, "SELECT count() AS n FROM reports_latest", "--format", "csv")
            return out.returncode == 0 and out.stdout.splitlines()[-1:] == ["2"]

        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(30) == 0
        wait_until(stored, timeout=120, every=1.0, what="2 reports after the store was released")
        assert proc.poll() is None


def test_nlp_worker_and_sink_in_separate_processes_analysts_query_the_sink(topic_settings: Settings,
                                                                          tmp_path: Path) -> None:
    """``radstream worker --no-sink`` + ``radstream db sink``: NLP and loading in two processes; the
    sink owns the embedded store and serves the read-only /sql page that ``radstream sql`` uses."""
    settings = topic_settings.replace(
        state_dir=str(tmp_path / "state"), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()}, clickhouse={"url": "", "database": "radstream"})
    Path(settings.state_dir).mkdir(parents=True)
    nlp_settings = settings.replace(worker={"web_port": free_port()})  # its own page, no store
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    seed_store_of(settings.clickhouse.url, "radstream")  # the sink's migrate finds a migrated copy
    with (tmp_path / "sink.log").open("wb") as log, \
            worker_process(nlp_settings, tmp_path / "worker.log", "--no-sink"):
        sink = subprocess.Popen([sys.executable, "-m", "radstream", "db", "sink"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            reps = [report(f"Q{i}", text="IMPRESSION: 7 mm nodule, right lower lobe.") for i in range(3)]
            topic = settings.topics.reports
            produce_all(settings, [(topic, "report_finalized", f"default|{r['accession']}", r) for r in reps])

            def loaded() -> bool:
                out = sql(settings, "SELECT count() AS n FROM findings_latest WHERE concept = 'nodule'",
                          "--format", "csv")
                return out.returncode == 0 and out.stdout.splitlines()[-1:] == ["3"]

            wait_until(loaded, timeout=120, every=1.0, what="3 reports' findings through the split stack")
            assert sql(settings, "DROP TABLE reports").returncode != 0  # read-only there too
        finally:
            sink.send_signal(signal.SIGTERM)
            assert sink.wait(60) == 0, (tmp_path / "sink.log").read_text()[-3000:]
