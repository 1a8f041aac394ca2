"""Analysts' queries at warehouse scale: load N varied synthetic reports through the real backfill, time
every documented query, the cohort SQL paths and the web app's searches.

    PYTHONPATH=. python bench/warehouse_scale.py --reports 100000 [--runs 7] [--base-tree /tmp/rs-base]
    PYTHONPATH=. python bench/warehouse_scale.py --reports 1000000 --load-only   # in the background
    PYTHONPATH=. python bench/warehouse_scale.py --reports 1000000 --tag ours --maintained-copy opt

1. Load (once per N and tree; skipped when the store is there): N reports written as JSONL by
   ``generate`` (seeded: modalities, body regions, findings with negation / uncertainty, sizes,
   BI-RADS, critical results with communication, exam dates over 7 years, ~4 reports per patient,
   ~6% corrected and ~2% addenda as later versions, ~0.5% cancelled), loaded by ``radstream.backfill``
   (parse, pseudonymise, NLP, text de-identification, the sink's row mapping and writer) into a chDB
   store under ``~/.cache/radstream/bench/warehouse-<N>-<tree>``. The loader runs as a child process
   so its memory peak (ru_maxrss of the loader and, separately, of its pool workers) is its own.
   With ``--base-tree`` (a checkout of main, e.g. ``git worktree add --detach /tmp/rs-base main``) the
   store is loaded by that tree's code and schema, and "ours" is a copy of it migrated by this tree's
   migrations: the same rows, and the path an existing warehouse takes.
2. Time (child process per store: chDB hosts one store per process): each query ``--runs`` times
   after one warm-up, through ``run_readonly`` (the read path of ``radstream sql``: ``final=1``,
   ``readonly=1``); p50 / p95 of wall time; disk bytes per report from ``system.parts``. Rows read:
   chDB keeps no ``system.query_log`` and its result statistics count the rows returned, so the table
   gives ``EXPLAIN ESTIMATE`` (rows the primary keys select in the tables of the main query; tables
   read only inside IN / JOIN subqueries are not counted).

Queries: every ``-- example:`` block of docs/analysts.md (of the tree being timed), the cohort
paths (``radstream cohort retrieve --sql``: the study_ref look-up of 1,000 research accessions, the
done-accessions query; the retrieval queue's pending query), and the web app's searches
(``radstream.web.queries``: results, count, modality facet, finding facet, histogram per search;
the search's time is the sum of its five queries, as one page load runs them; "web3:" is the same page
in three queries, ``results``, ``summary`` and ``finding_facets``, where the tree has ``summary``;
"web1:" the page in one query, ``page``, as the app runs it, where the tree has it), run
through the analyst's role check as the web app runs them. ``--base-tag``/``--tag`` name the base store
and its migrated copy (e.g. ``--base-tag ours --tag 015``: main's store as it is, and that store after
this tree's migrations).

``--compare-tree <checkout>`` times the search page of that tree's ``radstream/web/queries.py`` and this
tree's on the one ``--tag`` store (migrated by this tree first), alternating run by run, and checks that
both pages return the same rows (``compare_here``):

    PYTHONPATH=. python bench/warehouse_scale.py --reports 1000000 --tag w2 --compare-tree /tmp/rs-base
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("RADSTREAM_BENCH_DIR", Path.home() / ".cache" / "radstream" / "bench"))
DB = "bench"

# --- synthetic reports ---------------------------------------------------------------------------

EXAMS = [  # modality, body part, procedure, weight
    ("CR", "CHEST", "XR CHEST 2 VIEWS", 30),
    ("CT", "CHEST", "CT CHEST W CONTRAST", 14),
    ("CT", "CHEST", "CT ANGIOGRAPHY CHEST PE PROTOCOL", 5),
    ("CT", "ABDOMEN", "CT ABDOMEN PELVIS W CONTRAST", 12),
    ("CT", "HEAD", "CT HEAD WO CONTRAST", 9),
    ("MR", "BRAIN", "MRI BRAIN W WO CONTRAST", 6),
    ("MR", "SPINE", "MRI LUMBAR SPINE WO CONTRAST", 4),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE", 7),
    ("MG", "BREAST", "MAMMO SCREENING BILATERAL", 8),
    ("DX", "EXTREMITY", "XR WRIST 3 VIEWS", 5),
]
CLASSES = ["outpatient", "inpatient", "emergency"]
FINDINGS = {  # body part -> (positive sentence, negated sentence, uncertain sentence) templates
    "CHEST": [
        (
            "A {s} mm nodule is seen in the {lobe}.",
            "No pulmonary nodule.",
            "Possible {s} mm nodule in the {lobe}.",
        ),
        (
            "There is a small {side} pleural effusion.",
            "No pleural effusion.",
            "Trace {side} pleural effusion cannot be excluded.",
        ),
        (
            "Patchy {side} basilar opacity.",
            "No focal consolidation.",
            "Findings may represent early pneumonia.",
        ),
        ("Heart size is mildly enlarged.", "Heart size is normal.", "Borderline cardiomegaly."),
        ("Mild emphysema.", "No pneumothorax.", "Possible small pneumothorax."),
        ("Bibasilar atelectasis.", "No atelectasis.", "Probable subsegmental atelectasis."),
        ("Mild diffuse bronchial wall thickening.", "No bronchiectasis.", "Questionable bronchiectasis."),
        (
            "Calcified granuloma in the {lobe}.",
            "No mediastinal lymphadenopathy.",
            "Possible hilar lymphadenopathy.",
        ),
    ],
    "ABDOMEN": [
        ("{s} mm cyst in the {side} kidney.", "No hydronephrosis.", "Possible {s} mm renal cyst."),
        ("Cholelithiasis without cholecystitis.", "No cholelithiasis.", "Possible gallstones."),
        ("A {s} mm hypodense lesion in the liver.", "No free air.", "Indeterminate {s} mm liver lesion."),
        ("Small bowel obstruction.", "No bowel obstruction.", "Possible early bowel obstruction."),
        (
            "Atherosclerosis of the abdominal aorta.",
            "No abdominal aortic aneurysm.",
            "Possible mild fatty liver.",
        ),
    ],
    "HEAD": [
        (
            "Chronic small vessel ischemic change.",
            "No intracranial hemorrhage.",
            "Possible acute infarct in the {side} frontal lobe.",
        ),
        (
            "Old lacunar infarct in the {side} basal ganglia.",
            "No midline shift.",
            "Questionable subtle hemorrhage.",
        ),
        ("Mild generalized volume loss.", "No mass effect.", "Possible small mass."),
    ],
    "BRAIN": [
        (
            "A {s} mm enhancing mass in the {side} parietal lobe.",
            "No acute infarct.",
            "Possible {s} mm lesion.",
        ),
        (
            "Scattered white matter hyperintensities.",
            "No intracranial hemorrhage.",
            "Probable chronic infarct.",
        ),
    ],
    "SPINE": [
        ("Degenerative changes of the lumbar spine.", "No fracture.", "Possible compression fracture of L1."),
        ("Mild scoliosis.", "No spinal canal stenosis.", "Possible disc herniation at L4-5."),
    ],
    "BREAST": [
        (
            "A {s} mm mass in the {side} breast.",
            "No suspicious mass.",
            "Possible {s} mm mass in the {side} breast.",
        ),
        (
            "Scattered benign calcifications.",
            "No suspicious calcifications.",
            "Possible architectural distortion.",
        ),
    ],
    "EXTREMITY": [
        ("Nondisplaced fracture of the distal {side} radius.", "No fracture.", "Possible subtle fracture."),
        ("Soft tissue swelling.", "No dislocation.", "Possible small joint effusion."),
    ],
}
NORMAL = [
    "The examination is otherwise unremarkable.",
    "No acute osseous abnormality.",
    "Postoperative changes are noted.",
    "Comparison is made with the prior examination.",
    "Degenerative changes are present.",
    "Findings are stable since the prior study.",
]
CRITICAL = [  # (finding sentence, weight): these make critical results
    ("Acute pulmonary embolism in the {side} lower lobe pulmonary arteries.", "CHEST"),
    ("Large {side} pneumothorax.", "CHEST"),
    ("Acute intracranial hemorrhage.", "HEAD"),
    ("Free intraperitoneal air.", "ABDOMEN"),
]
LOBES = ["right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe"]
SIDES = ["left", "right"]
BIRADS = ["1", "2", "2", "1", "3", "0", "4", "4A", "4B", "5"]
START = datetime(2021, 1, 1, tzinfo=UTC)  # main fails beyond 100 months per insert (below)
SPAN_S = int((datetime(2026, 11, 1, tzinfo=UTC) - START).total_seconds())


def _report_text(rnd: random.Random, part: str, modality: str, when: datetime) -> str:
    lines = [
        f"EXAM: {modality} {part.lower()}.",
        "INDICATION: "
        + rnd.choice(["Cough.", "Follow-up.", "Pain.", "Shortness of breath.", "Screening.", "Trauma."]),
    ]
    pool = FINDINGS[part]
    body: list[str] = []
    for tmpl in rnd.sample(pool, k=min(len(pool), rnd.randint(3, 6))):
        kind = rnd.random()
        t = tmpl[0] if kind < 0.45 else tmpl[1] if kind < 0.85 else tmpl[2]
        body.append(
            t.format(
                s=rnd.choice([3, 4, 5, 6, 7, 8, 9, 11, 14, 18, 25]),
                lobe=rnd.choice(LOBES),
                side=rnd.choice(SIDES),
            )
        )
    body += rnd.sample(NORMAL, k=rnd.randint(1, 3))
    impression = [rnd.choice(body)]
    crit = rnd.random() < 0.02 and [c for c in CRITICAL if c[1] == part]
    if crit:
        sentence = rnd.choice(crit)[0].format(side=rnd.choice(SIDES))
        body.insert(0, sentence)
        impression.insert(0, sentence)
        if rnd.random() < 0.8:
            t = when + timedelta(minutes=rnd.randint(5, 240))
            impression.append(
                f"Findings were discussed with Dr. Reed by telephone at {t:%H:%M} on {t:%m/%d/%Y}."
            )
    if part == "BREAST":
        impression.append(f"BI-RADS {rnd.choice(BIRADS)}.")
    if rnd.random() < 0.1:
        impression.append(
            rnd.choice(
                [
                    "Follow-up CT in 3 months is recommended.",
                    "Recommend follow-up chest CT in 6-12 months.",
                    "Biopsy is recommended.",
                ]
            )
        )
    return "\n".join(lines + ["FINDINGS: " + " ".join(body), "IMPRESSION: " + " ".join(impression)])


def generate(path: Path, n: int, seed: int = 7) -> int:
    """``n`` reports as JSONL (plus their corrected / addendum versions); returns the lines written."""
    rnd = random.Random(seed)
    weights = [e[3] for e in EXAMS]
    lines = 0
    with path.open("w") as fh:
        for i in range(n):
            modality, part, proc, _ = rnd.choices(EXAMS, weights)[0]
            obs = START + timedelta(seconds=rnd.randrange(SPAN_S))
            st = obs + timedelta(minutes=rnd.randint(10, 600))
            base = {
                "accession": f"A{i:08d}",
                "patient_id": f"MRN{rnd.randrange(max(1, n // 4)):08d}",
                "modality": modality,
                "procedure_description": proc,
                "body_part": part,
                "patient_class": rnd.choice(CLASSES),
                "author": f"Dr. R{rnd.randrange(60)}",
                "observation_time": obs.isoformat(),
                "status_time": st.isoformat(),
            }
            text = _report_text(rnd, part, modality, st)
            u = rnd.random()
            status = "cancelled" if u < 0.005 else "final"
            fh.write(json.dumps({**base, "status": status, "text": text}) + "\n")
            lines += 1
            if status == "final" and u > 0.92:  # a later version: corrected (6%) or addendum (2%)
                later = "addendum" if u > 0.98 else "corrected"
                st2 = st + timedelta(hours=rnd.randint(1, 72))
                text2 = (
                    _report_text(rnd, part, modality, st2)
                    if later == "corrected"
                    else text + "\nADDENDUM: Comparison with outside images shows no change."
                )
                fh.write(
                    json.dumps({**base, "status": later, "status_time": st2.isoformat(), "text": text2})
                    + "\n"
                )
                lines += 1
    return lines


# --- loading -------------------------------------------------------------------------------------


def store_dir(n: int, tag: str) -> Path:
    return CACHE / f"warehouse-{n}-{tag}"


def load_here(n: int, store: Path) -> dict[str, Any]:
    """Run in a child process (whose code is the tree being loaded): generate + backfill into ``store``."""
    from radstream.backfill import run_backfill
    from radstream.config import Settings

    store.mkdir(parents=True, exist_ok=True)
    src = store / "reports.jsonl"
    t = time.monotonic()
    lines = generate(src, n)
    gen_s = time.monotonic() - t
    settings = Settings(state_dir=str(store / "state")).replace(
        clickhouse={"url": f"chdb://{store / 'chdb'}", "database": DB}
    )
    t = time.monotonic()
    s = run_backfill(settings, [src], fmt="jsonl", site="default", workers=2, nlp=True)
    load_s = time.monotonic() - t
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    src.unlink()
    info = {
        "reports": n,
        "lines": lines,
        "loaded": s.loaded,
        "rejected": s.rejected,
        "generate_s": round(gen_s, 1),
        "load_s": round(load_s, 1),
        "reports_per_s": round(s.loaded / load_s, 1),
        "maxrss_loader_mb": round(me.ru_maxrss / 1024),
        "maxrss_worker_mb": round(kids.ru_maxrss / 1024),
        "load_average": round(os.getloadavg()[0], 1),
        "finished": datetime.now(UTC).isoformat(),
    }
    (store / "loaded.json").write_text(json.dumps(info, indent=1))
    return info


def child(tree: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args, "--tree", str(tree)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def ensure_loaded(n: int, tree: Path, tag: str) -> dict[str, Any]:
    store = store_dir(n, tag)
    done = store / "loaded.json"
    if not done.exists():
        if store.exists():
            shutil.rmtree(store)  # an interrupted load: start again
        print(f"loading {n:,} reports into {store} with {tree} ...", file=sys.stderr, flush=True)
        child(tree, "--load-here", str(n), "--store", str(store))
    return dict(json.loads(done.read_text()))


def migrated_copy(n: int, base_tag: str, tree: Path, tag: str = "ours") -> Path:
    """A copy of the base store, migrated by ``tree`` (same rows; what an existing warehouse gets)."""
    src, dst = store_dir(n, base_tag), store_dir(n, tag)
    if not (dst / "migrated.json").exists():
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, symlinks=True)  # the engine links its tables relatively
        child(tree, "--migrate-here", str(dst))
    return dst


def maintained_copy(n: int, tag: str, to: str) -> Path:
    """A copy of store ``tag`` after one round of the sink's maintenance (every partition read with FINAL
    merged into one part: sinks/clickhouse/maintenance.py), as ``to``; made once."""
    src, dst = store_dir(n, tag), store_dir(n, to)
    if not (dst / "maintained.json").exists():
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, symlinks=True)
        child(REPO, "--optimize-here", str(dst))
    return dst


def optimize_here(store: Path) -> None:
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.maintenance import optimize

    c = open_client(ClickHouseConfig(url=f"chdb://{store / 'chdb'}", database=DB))
    t = time.monotonic()
    merged = optimize(c, DB)
    out = {"partitions": len(merged), "s": round(time.monotonic() - t, 1)}
    (store / "maintained.json").write_text(json.dumps(out))
    c.close()
    print(json.dumps(out))


def migrate_here(store: Path) -> None:
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.migrate import migrate

    c = open_client(ClickHouseConfig(url=f"chdb://{store / 'chdb'}", database=DB))
    t = time.monotonic()
    applied = migrate(c, DB)
    (store / "migrated.json").write_text(
        json.dumps({"applied": applied, "s": round(time.monotonic() - t, 1)})
    )
    c.close()
    print(json.dumps({"applied": applied}))


# --- timing --------------------------------------------------------------------------------------

WEB_SEARCHES = {
    "web: full text 'effusion'": {"text": "effusion"},
    "web: nodule >= 6 mm, present": {"finding": "nodule", "finding_state": "present", "min_size_mm": "6"},
    "web: text + filters + dates": {
        "text": "lobe",
        "finding": "nodule",
        "finding_state": "present",
        "min_size_mm": "6",
        "modality": "CT",
        "date_from": "2024-03-01",
        "date_to": "2024-09-30",
    },
    "web: BI-RADS >= 4": {"assessment_system": "BI-RADS", "min_category": "4"},
    "web: critical, CT": {"critical": "1", "modality": "CT"},
    # filters added with ddl/015 (timed only where the tree's Search has them)
    "web: chest, inpatient, follow-up due": {
        "body_region": "chest",
        "patient_class": "inpatient",
        "recommendation": "imaging_followup",
        "due_by": "2025-01-01",
    },
}


def queries(tree: Path, c: Any) -> dict[str, list[str]]:
    """name -> the SQL texts one run of it executes (as of ``tree``)."""
    doc = (tree / "docs" / "analysts.md").read_text()
    out = {f"doc: {k}": [v] for k, v in re.findall(r"```sql\n-- example: (\w+)\n(.*?)```", doc, re.S)}
    accs = [
        r[0]
        for r in c.query(
            f"SELECT accession FROM {DB}.report_versions WHERE cityHash64(accession) % 500 = 7 LIMIT 1000"
        ).result_rows
    ]
    one = accs[0] if accs else "ACC-0"
    # the example's literal accession is a clinical one: at scale look up one that exists
    if "doc: version_history" in out:
        out["doc: version_history"] = [out["doc: version_history"][0].replace("'A101'", f"'{one}'")]
    chunk = ", ".join(f"'{a}'" for a in accs)
    out["cohort: study_ref look-up (1,000 accessions)"] = [
        f"SELECT accession, any(study_ref) FROM reports_latest WHERE accession IN ({chunk}) "
        "AND study_ref != '' GROUP BY accession"
    ]
    out["cohort: done accessions"] = [
        "SELECT DISTINCT accession FROM retrieval_events WHERE state = 'completed' "
        "AND project_id = 'p1' AND destination_ae = 'RESEARCH'"
    ]
    out["cohort: example --sql (CT nodules >= 6 mm)"] = [
        "SELECT DISTINCT accession FROM findings_latest WHERE concept = 'nodule' AND NOT negated "
        "AND size_mm >= 6 AND modality = 'CT'"
    ]
    out["retrieval: pending requests"] = [
        re.sub(
            r"\s+",
            " ",
            """
        SELECT q.request_id, q.accession, r.patient_id, r.study_ref
        FROM (SELECT * FROM retrieval_requests FINAL WHERE action = 'request') AS q
        LEFT JOIN (SELECT accession, patient_id, observation_time, modality, study_instance_uid, study_ref
                   FROM reports_latest) AS r ON r.accession = q.accession
        WHERE q.request_id NOT IN (SELECT request_id FROM retrieval_events)""",
        )
    ]
    try:
        from dataclasses import fields

        from radstream.web import queries as q

        known = {f.name for f in fields(q.Search)}
        for name, form in WEB_SEARCHES.items():
            if not set(form) <= known:
                continue  # a filter this tree does not have: it would be dropped silently
            s = q.Search.of(form)
            out[name] = [q.results(s), q.count(s), q.facets(s), q.finding_facets(s), q.histogram(s)]
            if hasattr(q, "summary"):  # the page in three queries: count, facets and histogram in one
                out[name.replace("web: ", "web3: ")] = [q.results(s), q.summary(s), q.finding_facets(s)]
            if hasattr(q, "page"):  # the page in one query, as the app runs it now
                out[name.replace("web: ", "web1: ")] = [q.page(s)]
        out["web: report page"] = [
            q.report("default", one),
            q.versions("default", one),
            q.sections("default", one),
            q.measurements("default", one),
            q.assessments("default", one),
            q.findings_of("default", [one]),
        ]
    except ImportError:
        pass
    return out


def time_here(
    store: Path, tree: Path, runs: int, only: str, extra: Path | None = None, alternate: bool = False
) -> dict[str, Any]:
    from sinks.clickhouse.access import policy_for
    from sinks.clickhouse.client import open_client, readonly_client_like
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.query import run_readonly

    analyst = policy_for(["analyst"])

    c = open_client(ClickHouseConfig(url=f"chdb://{store / 'chdb'}", database=DB))
    ro = readonly_client_like(f"chdb://{store / 'chdb'}", DB)
    parts = c.query(
        f"SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = '{DB}' "
        "AND active GROUP BY table"
    ).result_rows
    n = int(json.loads((store / "loaded.json").read_text())["reports"])
    disk = sum(int(p[2]) for p in parts)
    res: dict[str, Any] = {
        "disk_bytes": disk,
        "disk_bytes_per_report": round(disk / n),
        "tables": {p[0]: [int(p[1]), int(p[2])] for p in parts},
        "queries": {},
    }
    todo = queries(tree, c)
    if extra:  # more forms to time beside the documented ones (e.g. a query's old text)
        forms = json.loads(extra.read_text())
        todo.update({name: [sql] for name, sql in forms.items() if not name.startswith("_")})  # "_comment"
    todo = {k: v for k, v in todo.items() if not only or any(k.startswith(o) for o in only.split(","))}
    counts: dict[str, tuple[int, int]] = {}

    def warm_up(name: str) -> None:
        rows_out = read_rows = 0
        for sql in todo[name]:  # the warm-up run; chDB reports no rows read, so ask the planner (below)
            rows_out += len(ro.query(sql).result_rows)
            with contextlib.suppress(Exception):  # an estimate is optional
                read_rows += sum(int(r[3]) for r in c.query(f"EXPLAIN ESTIMATE {sql}").result_rows)
        counts[name] = (rows_out, read_rows)

    times: dict[str, list[float]] = {name: [] for name in todo}
    cpu: dict[str, list[float]] = {name: [] for name in todo}
    loads: dict[str, list[float]] = {name: [] for name in todo}

    def once(name: str) -> None:
        # the web app's queries go through the analyst's role check (the parser, as /sql does); the
        # documented and cohort queries are timed as before, without it
        policy = analyst if name.startswith("web") else None
        t, p = time.monotonic(), time.process_time()
        for sql in todo[name]:
            run_readonly(c, sql, "jsonl", policy=policy)
        times[name].append((time.monotonic() - t) * 1000)
        cpu[name].append((time.process_time() - p) * 1000)  # this process's CPU: chDB runs in it
        loads[name].append(os.getloadavg()[0])

    # --alternate: each run times every query once in turn, so that two forms of a query meet the same
    # load; otherwise all runs of one query, then the next
    order = (
        [name for _ in range(runs) for name in todo] if alternate else [q for q in todo for _ in range(runs)]
    )
    for name in order:
        if name not in counts:
            warm_up(name)
        once(name)
        if len(times[name]) < runs:
            continue
        rows_out, read_rows = counts[name]
        res["queries"][name] = {
            "p50_ms": round(statistics.median(times[name]), 1),
            "p95_ms": round(_p95(times[name]), 1),
            "cpu_p50_ms": round(statistics.median(cpu[name]), 1),
            "load": [round(min(loads[name]), 1), round(max(loads[name]), 1)],
            "rows_out": rows_out,
            "read_rows": read_rows,
        }
        m = res["queries"][name]
        print(
            f"{name:50} p50 {m['p50_ms']:>8} p95 {m['p95_ms']:>8} ms  cpu p50 {m['cpu_p50_ms']:>8} ms"
            f"  load {m['load'][0]}-{m['load'][1]}  read {m['read_rows']:>12,} rows",
            file=sys.stderr,
            flush=True,
        )
    c.close()
    return res


def _queries_of(tree: Path) -> Any:
    """``radstream/web/queries.py`` of another tree, as a module of its own."""
    import importlib.util

    name = f"_queries_{abs(hash(str(tree)))}"
    spec = importlib.util.spec_from_file_location(name, tree / "radstream" / "web" / "queries.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def compare_here(store: Path, base_tree: Path, runs: int, only: str) -> dict[str, Any]:
    """The web app's search page as ``base_tree`` builds it and as this tree does, on one store (migrated
    by this tree: the base's queries read tables it still has), alternating run by run so both meet the
    same load. A page is the tree's ``page`` query where it has one (results, summary and finding facets
    in one query), else its three queries (results, summary, finding_facets) run at once, as the app
    of that tree runs them, each through the analyst's role check; the two pages' rows (decoded JSON,
    as the app reads them) must be equal. Also the CPU
    time of this process per page (user + system: the engine runs in it), less moved by other load."""
    from concurrent.futures import ThreadPoolExecutor

    from radstream.web import queries as ours
    from sinks.clickhouse.access import policy_for
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.query import run_readonly

    base = _queries_of(base_tree)
    analyst = policy_for(["analyst"])
    c = open_client(ClickHouseConfig(url=f"chdb://{store / 'chdb'}", database=DB))
    applied = migrate(c, DB)
    pool = ThreadPoolExecutor(3)

    def decoded(sql: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in str(run_readonly(c, sql, "jsonl", policy=analyst)).splitlines()]

    def page(m: Any, form: dict[str, str]) -> list[list[str]]:
        """One page of ``m``'s queries: its one-query ``page`` where the tree has it, else its three
        queries at once. The rows as the app sees them (decoded JSON), each list sorted, to compare."""
        s = m.Search.of(form)
        if hasattr(m, "page"):
            rows = decoded(m.page(s))
            parts = list(m.page_parts(rows[0])) if rows else [[], [], []]
        else:
            parts = list(pool.map(decoded, [m.results(s), m.summary(s), m.finding_facets(s)]))
        return [sorted(json.dumps(r, sort_keys=True) for r in part) for part in parts]

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    res: dict[str, Any] = {"applied": applied, "queries": {}}
    for name, form in WEB_SEARCHES.items():
        if only and not any(name.startswith(o) for o in only.split(",")):
            continue
        pages = {"base": base, "ours": ours}
        rows = {k: page(m, form) for k, m in pages.items()}  # the warm-up run
        wall: dict[str, list[float]] = {"base": [], "ours": []}
        work: dict[str, list[float]] = {"base": [], "ours": []}
        loads = [os.getloadavg()[0]]
        for _ in range(runs):
            for k, m in pages.items():
                c0, t = cpu(), time.monotonic()
                page(m, form)
                wall[k].append((time.monotonic() - t) * 1000)
                work[k].append((cpu() - c0) * 1000)
            loads.append(os.getloadavg()[0])
        res["queries"][name] = {
            "same_rows": rows["base"] == rows["ours"],
            "rows": [len(r) for r in rows["ours"]],
            "load": [min(loads), max(loads)],
            **{f"{k}_{m}": round(f(v), 1) for k in wall for m, f in (("p50_ms", statistics.median),
                                                                   ("p95_ms", _p95))
               for v in (wall[k],)},
            **{f"{k}_cpu_ms": round(statistics.median(work[k]), 1) for k in work},
        }
        q = res["queries"][name]
        print(f"{name:40} base {q['base_p50_ms']:>7} / {q['base_p95_ms']:>7}  ours {q['ours_p50_ms']:>6} / "
              f"{q['ours_p95_ms']:>6} ms  cpu {q['base_cpu_ms']:>6} -> {q['ours_cpu_ms']:>5}  same "
              f"{q['same_rows']}  load {min(loads):.1f}-{max(loads):.1f}", file=sys.stderr, flush=True)
    c.close()
    return res


def compare_table(n: int, res: dict[str, Any]) -> str:
    out = [f"{n:,} reports: the search page (base: its three queries at once; ours: its page query), through "
           "the analyst's check, "
           "base tree vs this tree on one store, alternating", "",
           "| search | base p50 / p95 ms | ours p50 / p95 ms | CPU ms per page base -> ours | same rows | "
           "load |", "|---|---:|---:|---:|---|---|"]
    for name, q in res["queries"].items():
        out.append(f"| {name} | {q['base_p50_ms']:,.0f} / {q['base_p95_ms']:,.0f} | "
                   f"{q['ours_p50_ms']:,.0f} / {q['ours_p95_ms']:,.0f} | "
                   f"{q['base_cpu_ms']:,.0f} -> {q['ours_cpu_ms']:,.0f} | "
                   f"{'yes' if q['same_rows'] else 'NO'} | {q['load'][0]:.1f}-{q['load'][1]:.1f} |")
    return "\n".join(out)


def _p95(xs: list[float]) -> float:
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=20, method="inclusive")[-1]


# --- main ----------------------------------------------------------------------------------------


def table(n: int, results: dict[str, dict[str, Any]], loaded: dict[str, Any]) -> str:
    labels = list(results)
    head = (
        "| query | " + " | ".join(f"{lb} p50 ms | {lb} p95 ms | {lb} rows (estimate)" for lb in labels) + " |"
    )
    out = [
        f"{n:,} reports ({loaded['lines']:,} report versions), load average {os.getloadavg()[0]:.1f}",
        "",
        head,
        "|---|" + "---:|" * (3 * len(labels)),
    ]
    names = list(dict.fromkeys(q for r in results.values() for q in r["queries"]))
    for q in names:
        cells = []
        for lb in labels:
            m = results[lb]["queries"].get(q)
            cells += (
                ["-", "-", "-"]
                if m is None
                else [f"{m['p50_ms']:,.0f}", f"{m['p95_ms']:,.0f}", f"{m['read_rows']:,}"]
            )
        out.append(f"| {q} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| store | disk bytes / report | load | loader peak RSS | pool worker peak RSS |")
    out.append("|---|---:|---|---:|---:|")
    for lb in labels:
        out.append(
            f"| {lb} | {results[lb]['disk_bytes_per_report']:,} | {loaded['load_s']:,.0f} s "
            f"({loaded['reports_per_s']:,.0f} versions/s) | {loaded['maxrss_loader_mb']:,} MB | "
            f"{loaded['maxrss_worker_mb']:,} MB |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--base-tree", type=Path, help="checkout of the baseline (main) to load and compare")
    ap.add_argument("--load-only", action="store_true")
    ap.add_argument(
        "--only", default="", help="time only queries whose name starts with one of these, comma-separated"
    )
    ap.add_argument("--stores", default="main,ours", help="which stores to time (with --base-tree)")
    ap.add_argument("--base-tag", default="main", help="the base store (loaded by --base-tree) to start from")
    ap.add_argument("--tag", default="ours", help="the name of its copy migrated by this tree")
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--extra", type=Path,
                    help="JSON {name: sql}: more queries to time (old forms: bench/warehouse_old_forms.json)")
    ap.add_argument(
        "--alternate", action="store_true", help="time the queries in turn, one run each, --runs times"
    )
    ap.add_argument("--compare-tree", type=Path,
                    help="time the search page of this tree's web queries against ours on the --tag store")
    # internal: the child processes
    ap.add_argument("--tree", type=Path, default=REPO)
    ap.add_argument("--load-here", type=int)
    ap.add_argument("--migrate-here", type=Path)
    ap.add_argument("--optimize-here", type=Path)
    ap.add_argument("--maintained-copy", metavar="TAG",
                    help="copy the --tag store as TAG after one round of the sink's maintenance, then stop")
    ap.add_argument("--time-here", type=Path)
    ap.add_argument("--store", type=Path)
    ap.add_argument("--compare-here", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree))
    if args.load_here:
        print(json.dumps(load_here(args.load_here, args.store)))
        return
    if args.migrate_here:
        migrate_here(args.migrate_here)
        return
    if args.optimize_here:
        optimize_here(args.optimize_here)
        return
    if args.maintained_copy:
        print(maintained_copy(args.reports, args.tag, args.maintained_copy))
        return
    if args.time_here:
        out = time_here(args.time_here, args.tree, args.runs, args.only, args.extra, args.alternate)
        print(json.dumps(out))
        return
    if args.compare_here:
        print(json.dumps(compare_here(args.compare_here, args.compare_tree, args.runs, args.only)))
        return
    if args.compare_tree:
        store = store_dir(args.reports, args.tag)
        out = child(REPO, "--compare-here", str(store), "--compare-tree", str(args.compare_tree.resolve()),
                    "--runs", str(args.runs), "--only", args.only)
        res = json.loads(out)
        if args.json:
            args.json.write_text(json.dumps({"reports": args.reports, "store": str(store), **res}, indent=1))
        print(compare_table(args.reports, res))
        return

    base_tag = args.base_tag if args.base_tree else args.tag
    loaded = ensure_loaded(args.reports, args.base_tree or REPO, base_tag)
    print(json.dumps(loaded), file=sys.stderr)
    if args.load_only:
        return
    stores: dict[str, tuple[Path, Path]] = {}
    if args.base_tree:
        stores[base_tag] = (store_dir(args.reports, base_tag), args.base_tree)
        stores[args.tag] = (migrated_copy(args.reports, base_tag, REPO, args.tag), REPO)
    else:
        stores[args.tag] = (store_dir(args.reports, args.tag), REPO)
    results: dict[str, dict[str, Any]] = {}
    for label, (store, tree) in stores.items():
        if label not in args.stores.split(","):
            continue
        print(f"--- {label}: {store}", file=sys.stderr, flush=True)
        more = [
            *(["--extra", str(args.extra.resolve())] if args.extra else []),
            *(["--alternate"] if args.alternate else []),
        ]
        results[label] = json.loads(
            child(tree, "--time-here", str(store), "--runs", str(args.runs), "--only", args.only, *more)
        )
    if args.json:
        args.json.write_text(
            json.dumps({"reports": args.reports, "loaded": loaded, "results": results}, indent=1)
        )
    print(table(args.reports, results, loaded))


if __name__ == "__main__":
    main()
