"""Every example query in docs/analysts.md runs against a synthetic data set on a real embedded
ClickHouse, and its answer is checked against a plain-Python reading of the same data set."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import Result, close_readonly_clients, run_readonly
from sinks.clickhouse.sink import write_records

from .factories import finding, findings, registered, report

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "analysts.md"
D = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def examples() -> dict[str, str]:
    blocks = re.findall(r"```sql\n-- example: (\w+)\n(.*?)```", DOC.read_text(), re.S)
    return {name: sql for name, sql in blocks}


class Data:
    """Reports and NLP results built so that each example has rows that qualify and rows that must not."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.nlp: list[dict[str, Any]] = []
        self._nlp_extra: dict[tuple[str, int], dict[str, Any]] = {}

    def add(
        self, acc: str, day: float, *, found: Sequence[dict[str, Any]] = (), version: int = 1, **kw: Any
    ) -> dict[str, Any]:
        rep = report(acc, version, exam_time=D + timedelta(days=day), **kw)
        self.reports.append(rep)
        self.nlp.append(findings(rep, list(found), **self._nlp_extra.pop((acc, version), {})))
        return rep

    def nlp_extra(self, acc: str, version: int = 1, **kw: Any) -> None:
        """NLP extras (assessments, critical results, ...) for the next add() of this version."""
        self._nlp_extra[(acc, version)] = kw

    # the latest version of each accession, as the views define it
    def latest(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        top: dict[str, dict[str, Any]] = {}
        for r in self.reports:
            if r["accession"] not in top or r["version"] > top[r["accession"]]["version"]:
                top[r["accession"]] = r
        reps = [r for r in top.values() if r["status"] not in ("cancelled", "entered_in_error")]
        keep = {(r["accession"], r["version"]) for r in reps}
        nlp = [n for n in self.nlp if (n["accession"], n["report_version"]) in keep]
        return reps, nlp


def build() -> Data:
    d = Data()
    nod = finding("nodule", size_mm=9.0)
    d.add("A100", 4, found=[nod, finding("nodule", size_mm=11.0)], patient_id="P1")  # qualifies (11)
    d.add("A101", 9, found=[finding("nodule", size_mm=12.0)], patient_id="P2")
    d.add("A101", 9, version=2, status="corrected", found=[finding("nodule", size_mm=6.0)], patient_id="P2")
    d.add("A102", 11, found=[finding("nodule", size_mm=10.0, negated=True)], patient_id="P3")
    d.add("A103", 32, found=[finding("nodule", size_mm=10.0)], patient_id="P3")  # April
    d.add("A104", 12, found=[finding("nodule", size_mm=10.0)], modality="MR", patient_id="P4")
    d.add("A105", 19, found=[finding("nodule", size_mm=8.0)], patient_id="P5", procedure="CT thorax chest")
    d.add("A106", 20, found=[finding("nodule", size_mm=14.0, hypothetical=True)], patient_id="P5")
    # mammography
    for acc, cat, day in (("A200", "4", 2), ("A201", "5", 3), ("A202", "2", 4), ("A204", "4B", 6)):
        d.nlp_extra(acc, assessments=[("BI-RADS", cat)])
        d.add(acc, day, modality="MG", body_part="BREAST", procedure="MG mammogram", patient_id="W" + acc)
    d.nlp_extra("A203", assessments=[("BI-RADS", "4")])
    d.add("A203", 5, modality="MG", body_part="BREAST", procedure="MG mammogram", patient_id="W3")
    d.nlp_extra("A203", 2, assessments=[("BI-RADS", "3")])
    d.add(
        "A203",
        5,
        version=2,
        status="corrected",
        modality="MG",
        body_part="BREAST",
        procedure="MG mammogram",
        patient_id="W3",
    )
    # critical results
    d.nlp_extra("A300", critical=["tension_pneumothorax"], communication_after=timedelta(minutes=25))
    d.add("A300", 7, modality="CR", patient_id="C1")
    d.nlp_extra("A301", critical=["pulmonary_embolism"])
    d.add("A301", 8, patient_id="C2")
    d.nlp_extra("A302", critical=["pulmonary_embolism"], communication_after=timedelta(minutes=70))
    d.add("A302", 9, patient_id="C3")
    d.add("A400", 10, modality="US", patient_id="X1")
    d.add("A400", 10, version=2, status="cancelled", modality="US", patient_id="X1", text="")
    # index-date cohort: P9 baseline -40 d, index (inpatient), follow-ups +30 d and +200 d (outside)
    pe = finding("pulmonary_embolism")
    d.add("A500", 20 - 40, patient_id="P9", patient_class="outpatient")
    d.add("A501", 20, found=[pe], patient_id="P9", patient_class="inpatient")
    d.add("A502", 20 + 30, found=[pe], patient_id="P9", patient_class="outpatient")
    d.add("A503", 20 + 200, patient_id="P9")
    d.add("A504", 20 - 120, patient_id="P9")  # baseline too old
    d.add("A510", 25, found=[pe], patient_id="P8", patient_class="outpatient")
    d.add("A511", 35, modality="MR", patient_id="P8", patient_class="outpatient")
    d.add("A520", 15, found=[finding("pulmonary_embolism", negated=True)], patient_id="P7")
    d.add("A521", 16, found=[finding("pulmonary_embolism", uncertain=True)], patient_id="P7")
    return d


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Data]]:
    """One store for the module (the examples only read); closed at the end like every chDB client."""
    settings = Settings(state_dir=str(tmp_path_factory.mktemp("doc"))).replace(clickhouse={"database": "rs"})
    ch = open_client(settings.clickhouse)
    migrate(ch, settings.clickhouse.database)
    try:
        yield _load(ch)
    finally:
        close_readonly_clients()
        ch.close()


def _load(ch: Client) -> tuple[Client, Data]:
    data = build()
    write_records(ch, "report_finalized", data.reports)
    write_records(ch, "report_findings", data.nlp)
    write_records(
        ch,
        "retrieval_requested",
        [
            {
                "request_id": f"q{i}",
                "project_id": "IRB-1" if i < 3 else "IRB-2",
                "requester": "ana",
                "accession": "A100",
                "destination_ae": "RESEARCH",
                "requested_time": D,
            }
            for i in range(4)
        ],
    )
    write_records(ch, "project_registration", [registered("IRB-1"), registered("IRB-2")])
    write_records(
        ch,
        "retrieval_status",
        [
            {
                "request_id": f"q{i}",
                "project_id": "IRB-1" if i < 3 else "IRB-2",
                "state": state,
                "completed": n,
                "time": D + timedelta(seconds=k),
            }
            for i in range(4)
            for k, (state, n) in enumerate([("moving", 0), ("completed" if i % 2 else "failed", 5)])
        ],
    )
    return ch, data


def run(ch: Client, name: str) -> list[dict[str, Any]]:
    res = run_readonly(ch, examples()[name], "rows")
    assert isinstance(res, Result)
    return [dict(zip(res.columns, row, strict=True)) for row in res.rows]


def naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def test_the_doc_has_the_examples_the_tests_expect() -> None:
    assert set(examples()) == {
        "version_history",
        "latest_with_argmax",
        "ct_chest_nodules",
        "birads_4_5",
        "critical_results",
        "critical_summary",
        "counts_by_modality",
        "index_timeline",
        "index_summary",
        "retrievals",
        "omop_note_nlp",
    }


def test_ct_chest_nodules(loaded: tuple[Client, Data]) -> None:
    ch, data = loaded
    reps, nlp = data.latest()
    by_acc = {r["accession"]: r for r in reps}
    want = {}
    for n in nlp:
        r = by_acc[n["accession"]]
        if not (
            r["modality"] == "CT"
            and (r["body_part"] == "CHEST" or "chest" in r["procedure_description"].lower())
            and datetime(2026, 3, 1, tzinfo=UTC) <= r["observation_time"] < datetime(2026, 4, 1, tzinfo=UTC)
        ):
            continue
        sizes = [
            f["size_mm"]
            for f in n["findings"]
            if f["concept"] == "nodule"
            and not f["negated"]
            and not f["hypothetical"]
            and f["experiencer"] == "patient"
            and (f["size_mm"] or 0) >= 8
        ]
        if sizes:
            want[n["accession"]] = max(sizes)
    got = run(ch, "ct_chest_nodules")
    assert {g["accession"]: g["largest_mm"] for g in got} == want
    assert want == {"A100": 11.0, "A105": 8.0}  # the data set exercises what it should


def test_birads_4_5(loaded: tuple[Client, Data]) -> None:
    ch, data = loaded
    _, nlp = data.latest()
    want = sorted(
        n["accession"]
        for n in nlp
        for a in n["assessments"]
        if a["system"] == "BI-RADS" and a["category"][0] in "45"
    )
    got = run(ch, "birads_4_5")
    assert [g["accession"] for g in got] == want
    assert "A203" not in want and len(want) == 3


def test_critical_results_and_time_to_communication(loaded: tuple[Client, Data]) -> None:
    ch, data = loaded
    reps, nlp = data.latest()
    by_acc = {r["accession"]: r for r in reps}
    want = []
    for n in nlp:
        for c in n["critical_results"]:
            comm = n["communication"]
            minutes = (
                None
                if comm is None
                else int((comm["time"] - by_acc[n["accession"]]["status_time"]).total_seconds() // 60)
            )
            want.append((n["accession"], c["concept"], minutes))
    got = run(ch, "critical_results")
    assert sorted((g["accession"], g["concept"], g["minutes_to_communication"]) for g in got) == sorted(want)
    summary = {g["concept"]: g for g in run(ch, "critical_summary")}
    for concept in {w[1] for w in want}:
        mins = [w[2] for w in want if w[1] == concept]
        known = [m for m in mins if m is not None]
        assert summary[concept]["n"] == len(mins)
        assert summary[concept]["not_documented"] == mins.count(None)
        assert summary[concept]["max_minutes"] == (max(known) if known else None)
        if known:
            assert summary[concept]["median_minutes"] == pytest.approx(statistics.median(known))


def test_counts_by_modality(loaded: tuple[Client, Data]) -> None:
    ch, data = loaded
    reps, _ = data.latest()
    want: dict[str, tuple[int, set[str]]] = {}
    for r in reps:
        n, pats = want.get(r["modality"], (0, set()))
        want[r["modality"]] = (n + 1, pats | {r["patient_id"]})
    got = run(ch, "counts_by_modality")
    assert {g["modality"]: (g["reports"], g["patients"]) for g in got} == {
        m: (n, len(p)) for m, (n, p) in want.items()
    }
    assert "US" not in want  # the cancelled report is gone


def _index_oracle(data: Data) -> list[tuple[str, str, str, int, str, str]]:
    reps, nlp = data.latest()
    by_acc = {r["accession"]: r for r in reps}
    index: dict[str, dict[str, Any]] = {}
    for n in nlp:
        if any(
            f["concept"] == "pulmonary_embolism"
            and not (f["negated"] or f["uncertain"] or f["hypothetical"])
            and f["experiencer"] == "patient"
            for f in n["findings"]
        ):
            r = by_acc[n["accession"]]
            if (
                r["patient_id"] not in index
                or r["observation_time"] < index[r["patient_id"]]["observation_time"]
            ):
                index[r["patient_id"]] = r
    rows = []
    for r in sorted(reps, key=lambda x: (x["patient_id"], x["observation_time"])):
        i = index.get(r["patient_id"])
        if i is None or abs(r["observation_time"] - i["observation_time"]) > timedelta(days=90):
            continue
        day = (r["observation_time"] - i["observation_time"]).days
        role = (
            "index"
            if r is i
            else ("baseline" if r["observation_time"] < i["observation_time"] else "follow-up")
        )
        rows.append((r["patient_id"], i["accession"], r["accession"], day, role, r["patient_class"] or ""))
    return rows


def test_index_date_timeline_and_summary(loaded: tuple[Client, Data]) -> None:
    ch, data = loaded
    want = _index_oracle(data)
    got = run(ch, "index_timeline")
    assert [
        (g["patient_id"], g["index_accession"], g["accession"], g["day"], g["role"], g["patient_class"])
        for g in got
    ] == want
    assert {w[0] for w in want} == {"P8", "P9"}  # P7 only has negated / uncertain PE
    summary = {g["patient_id"]: g for g in run(ch, "index_summary")}
    for pid in {w[0] for w in want}:
        rows = [w for w in want if w[0] == pid]
        follow = [w[3] for w in rows if w[4] == "follow-up"]
        assert summary[pid]["index_patient_class"] == next(w[5] for w in rows if w[4] == "index")
        assert bool(summary[pid]["has_baseline"]) == any(w[4] == "baseline" for w in rows)
        assert summary[pid]["followups"] == len(follow)
        assert summary[pid]["first_followup_day"] == min(follow)


def test_versions_retrievals_and_omop_examples(loaded: tuple[Client, Data]) -> None:
    ch, data = loaded
    hist = run(ch, "version_history")
    assert [(h["version"], h["status"]) for h in hist] == [
        (r["version"], r["status"]) for r in data.reports if r["accession"] == "A101"
    ]
    latest = {g["accession"]: g for g in run(ch, "latest_with_argmax")}
    assert latest["A101"]["latest_status"] == "corrected" and latest["A400"]["latest_status"] == "cancelled"
    assert latest["A101"]["latest_version"] == 2
    assert len(latest) == len({r["accession"] for r in data.reports})
    retr = {(g["project_id"], g["state"]): (g["requests"], g["instances"]) for g in run(ch, "retrievals")}
    assert retr == {
        ("IRB-1", "completed"): (1, 5),
        ("IRB-1", "failed"): (2, 10),
        ("IRB-2", "completed"): (1, 5),
    }
    omop = run(ch, "omop_note_nlp")
    _, nlp = data.latest()
    nodules = [(n["accession"], f) for n in nlp for f in n["findings"] if f["concept"] == "nodule"]
    assert len(omop) == len(nodules)
    exists = {
        "Y"
        if not (f["negated"] or f["uncertain"] or f["hypothetical"] or f["experiencer"] != "patient")
        else "N"
        for _, f in nodules
    }
    assert {o["term_exists"] for o in omop} == exists == {"Y", "N"}
