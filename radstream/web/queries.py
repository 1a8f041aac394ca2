"""The web app's warehouse queries: fixed SQL texts whose values come only from query parameters.

Every value a user typed is bound by clickhouse-connect's own binder (``%(name)s`` placeholders,
``clickhouse_connect.driver.binding.finalize_query``: typed literals, quotes and backslashes escaped),
never pasted into SQL text by us. What a filter adds is one of the fixed fragments below, chosen by
which fields are set. The bound text then goes through the same read-only, role-checked layer as
``radstream sql`` (``radstream.web.data``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from clickhouse_connect.driver.binding import finalize_query

FINDING_STATES = ("", "present", "negated", "uncertain")
PAGE = 50
MAX_COHORT = 10_000  # studies one cohort may send to retrieval at once

# the state of a finding over report_current's arrays: n = negated, u = uncertain (fixed fragments)
_STATE_SQL = {
    "present": "NOT n AND NOT u",
    "negated": "n",
    "uncertain": "u",
    "": "",
}
LIVE = "status NOT IN ('cancelled', 'entered_in_error')"
RECOMMENDATION_ANY = "any"


def _key(version: str, t: str = "") -> str:
    """One report version's key in the search's sets (see ``where``)."""
    return f"cityHash64({t}site, {t}accession, {t}{version})"


# one accession's key (report_current's sort key, hashed)
_ACCESSION_KEY = "cityHash64(site, accession)"


@dataclass(frozen=True)
class Search:
    """A report search: full text and structured filters (all optional; empty = not used)."""

    text: str = ""
    finding: str = ""  # concept, e.g. "nodule"
    finding_state: str = ""  # present | negated | uncertain
    min_size_mm: float | None = None  # size of that finding (or of any finding when none is named)
    modality: str = ""
    date_from: date | None = None
    date_to: date | None = None
    assessment_system: str = ""  # e.g. BI-RADS
    min_category: int | None = None  # numeric category >= this (BI-RADS >= 4)
    critical: bool = False
    body_region: str = ""  # NLP body region of the report, e.g. chest, abdomen, head
    patient_class: str = ""  # inpatient | outpatient | emergency ...
    recommendation: str = ""  # a recommendation of this kind (imaging_followup, biopsy ...) or "any"
    due_by: date | None = None  # ... whose follow-up is due on or before this day (exam + interval)

    @classmethod
    def of(cls, form: Any) -> Search:
        """From a form or query string (a mapping of strings); bad values raise ValueError."""
        def text(name: str, limit: int = 200) -> str:
            return str(form.get(name) or "").strip()[:limit]

        def num(name: str) -> float | None:
            v = text(name)
            return float(v) if v else None

        def day(name: str) -> date | None:
            v = text(name)
            return date.fromisoformat(v) if v else None

        state = text("finding_state")
        if state not in FINDING_STATES:
            raise ValueError(f"finding_state must be one of {', '.join(s for s in FINDING_STATES if s)}")
        cat = num("min_category")
        return cls(text=text("text"), finding=text("finding").lower(), finding_state=state,
                   min_size_mm=num("min_size_mm"), modality=text("modality").upper(),
                   date_from=day("date_from"), date_to=day("date_to"),
                   assessment_system=text("assessment_system"),
                   min_category=int(cat) if cat is not None else None,
                   critical=text("critical").lower() in ("1", "on", "true", "yes"),
                   body_region=text("body_region").lower(), patient_class=text("patient_class").lower(),
                   recommendation=text("recommendation").lower(), due_by=day("due_by"))

    def params(self) -> dict[str, str]:
        """The search as query-string fields (empty ones left out), to link and to save."""
        out: dict[str, str] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or v == "" or v is False:
                continue
            out[f.name] = "1" if v is True else (f"{v:g}" if isinstance(v, float) else str(v))
        return out

    @property
    def empty(self) -> bool:
        return not self.params()


def like_escaped(text: str) -> str:
    """``text`` as a LIKE pattern that matches it literally (``%``, ``_`` and ``\\`` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class _Parts:
    """A search's conditions by where they apply (fixed fragments; values in ``params``)."""

    own: list[str]  # the report's own columns (report_search), "{t}" = the table's alias
    pre: list[str]  # own + the text: report_search's PREWHERE, cheap ones first
    nlp: list[str]  # the current NLP run's arrays (report_current)
    findings: bool  # nlp has a filter on the findings' arrays (the dense ones)
    due: str  # the follow-up due filter over (site, accession), "{t}" = the table's alias; or ""
    due_row: str  # the same on one row: "{r}" = its report_search row, "{c}" = its report_current row
    params: dict[str, Any]


def _parts(s: Search) -> _Parts:
    p: dict[str, Any] = {}
    own: list[str] = []
    if s.modality:
        own.append("{t}modality = %(modality)s")
        p["modality"] = s.modality
    if s.patient_class:
        own.append("{t}patient_class = %(patient_class)s")
        p["patient_class"] = s.patient_class
    if s.date_from:
        own.append("{t}exam_time >= toDateTime64(%(date_from)s, 6, 'UTC')")
        p["date_from"] = s.date_from.isoformat()
    if s.date_to:
        own.append("{t}exam_time < toDateTime64(%(date_to)s, 6, 'UTC') + INTERVAL 1 DAY")
        p["date_to"] = s.date_to.isoformat()
    pre = list(own)
    if s.text:
        # a case-insensitive substring in the form report_search's text index serves (ddl/020): the
        # pattern is constant, so the engine skips the granules that lack one of its 3-grams
        pre.append("lowerUTF8({t}text) LIKE lowerUTF8(%(text)s)")
        p["text"] = "%" + like_escaped(s.text) + "%"
    nlp: list[str] = []
    has_findings = bool(s.finding or s.finding_state or s.min_size_mm is not None)
    if has_findings:
        lam = []
        if s.finding:
            lam.append("c = %(finding)s")
            p["finding"] = s.finding
        if s.finding_state:
            lam.append(_STATE_SQL[s.finding_state])
        if s.min_size_mm is not None:
            lam.append("ifNull(z >= %(min_size_mm)s, false)")
            p["min_size_mm"] = float(s.min_size_mm)
        nlp.append(f"arrayExists((c, n, u, z) -> {' AND '.join(lam) or '1'}, finding_concepts, "
                   "finding_negated, finding_uncertain, finding_size_mm)")
    if s.assessment_system or s.min_category is not None:
        lam = []
        if s.assessment_system:
            lam.append("y = %(assessment_system)s")
            p["assessment_system"] = s.assessment_system
        if s.min_category is not None:
            lam.append("toInt32OrZero(extract(g, '^[0-9]+')) >= %(min_category)s")
            p["min_category"] = int(s.min_category)
        nlp.append(f"arrayExists((y, g) -> {' AND '.join(lam)}, assessment_systems, assessment_categories)")
    if s.critical:
        nlp.append("notEmpty(critical_concepts)")
    if s.body_region:
        nlp.append("body_region = %(body_region)s")
        p["body_region"] = s.body_region
    kind = s.recommendation if s.recommendation != RECOMMENDATION_ANY else ""
    if kind:
        p["recommendation"] = kind
    if s.recommendation and s.due_by is None:
        nlp.append("has(recommendation_kinds, %(recommendation)s)" if kind
                   else "notEmpty(recommendation_kinds)")
    due = due_row = ""
    if s.due_by is not None:
        # the due day needs the exam time beside the current run's recommendations (kind, interval_days_min
        # as arrays): the current version's report_search row ({r}) with its report_current row ({c})
        p["due_by"] = s.due_by.isoformat()
        due_row = ("arrayExists((k, d) -> " + ("k = %(recommendation)s AND " if kind else "")
                   + "d IS NOT NULL AND {r}exam_time + toIntervalDay(d) < toDateTime64(%(due_by)s, 6, 'UTC') "
                   "+ INTERVAL 1 DAY, {c}recommendation_kinds, {c}recommendation_days)")
        due = ("({t}site, {t}accession) IN (SELECT c.site, c.accession FROM report_current AS c "
               "INNER JOIN report_search AS r ON r.site = c.site AND r.accession = c.accession "
               f"AND r.version = c.report_version WHERE c.has_nlp AND c.{LIVE} "
               "AND notEmpty(c.recommendation_kinds) AND " + due_row.format(r="r.", c="c.", t="{t}") + ")")
    return _Parts(own, pre, nlp, has_findings, due, due_row, p)


def _and(conds: list[str], t: str = "") -> str:
    return " AND ".join(c.format(t=t) for c in conds)


def where(s: Search) -> tuple[str, dict[str, Any]]:
    """What a search reads, ``report_search AS t PREWHERE ... WHERE ...`` (ddl/018), and its parameters.

    report_search has a row per report version, sorted by modality and exam month: the report's own
    filters (modality, patient class, dates) select the granules, then the rows, and the text is read
    and matched only for the rows they leave (PREWHERE, in that order). A row counts when its version
    is the accession's current one in report_current (ddl/014: latest version, not cancelled), where
    the NLP filters apply too (ddl/015: the current run's findings, assessments, critical results and
    recommendations as arrays). That set is of cityHash64(site, accession, version): one 64-bit key
    per report version instead of a tuple of strings (a stale version passes only if its hash equals a
    current one's: ~1e-8 in a warehouse of a million reports). When the report's own filters narrow
    the search, report_current is read for the accessions they leave only (PREWHERE on its sort key,
    exact under FINAL: every row of such an accession stays). PREWHERE before FINAL is exact on
    report_search too: rows with one sort key there are copies of one report version."""
    x = _parts(s)
    current = [LIVE, *(["has_nlp", *x.nlp] if x.nlp else [])]
    cond = [f"{_key('version', 't.')} IN (SELECT {_key('report_version')} FROM report_current "
            f"{_narrow(x)}WHERE {_and(current)})"]
    if x.due:
        cond.append(x.due.format(t="t."))
    return f"report_search AS t {_prewhere(x)}WHERE {' AND '.join(cond)}", x.params


def _narrow(x: _Parts) -> str:
    """report_current's PREWHERE to the accessions the report's own filters leave (or "")."""
    if not x.own:
        return ""
    return (f"PREWHERE {_ACCESSION_KEY} IN (SELECT {_ACCESSION_KEY} FROM report_search "
            f"PREWHERE {_and(x.pre)}) ")


def _prewhere(x: _Parts) -> str:
    """report_search's (``t``) PREWHERE: the report's own filters, then the text (or "")."""
    return f"PREWHERE {_and(x.pre, 't.')} " if x.pre else ""


def page(s: Search, offset: int = 0, limit: int = PAGE) -> str:
    """The search page in one query: one row with the matching reports' count, the page of results,
    the modality and month counts and the finding facets (``page_parts`` splits it into what
    ``results``, ``summary`` and ``finding_facets`` return; tested to be equal).

    Those three queries each built the search's set from report_current, reading the NLP arrays of
    every accession (FINAL allows no PREWHERE there) and report_search's text a second time; run at
    once they cost three times that. Here report_search (the report's own filters and the text, as
    in ``where``) is joined once with the current versions in report_current (their NLP filters, and
    each one's present findings for the facets), on the same 64-bit key as ``where``'s set; the
    follow-up due day is checked on the joined row (its exam time, its run's recommendations) instead
    of ``where``'s join of every current report. The page of results is the ``offset + limit`` first by
    exam time (newest first), then accession."""
    x = _parts(s)
    current = [LIVE, *(["has_nlp", *x.nlp] if x.nlp or x.due_row else [])]
    recommendations = ""
    if x.due_row:  # the due day on the joined row: its exam time and its run's recommendations
        current.append("notEmpty(recommendation_kinds)")
        recommendations = ", recommendation_kinds, recommendation_days"
    first = _prewhere(x)
    if x.nlp and not x.pre and not x.findings:
        # nothing of the report's own narrows report_search: every text would be read. The NLP filters on
        # the sparse arrays (assessments, critical results, recommendations) or the body region cost a
        # cheap second pass as a key set, and the text is then read only in the granules it leaves
        # (BI-RADS: the mammograms'); a finding filter's pass costs more than the text it would save
        first = (f"PREWHERE {_key('version', 't.')} IN (SELECT {_key('report_version')} FROM report_current "
                 f"WHERE {_and(current)}) ")
    due = f"WHERE {x.due_row.format(r='t.', c='c.')}" if x.due_row else ""
    return bind(f"""SELECT count() AS total,
       groupArraySorted(%(top)s)((-toUnixTimestamp64Micro(t.exam_time), t.accession, t.site, t.modality,
                                  t.procedure_description, toString(t.exam_time), t.status, t.text)) AS top,
       sumMap([toString(t.modality)], [toUInt64(1)]) AS modalities,
       sumMap([toString(toStartOfMonth(t.exam_time))], [toUInt64(1)]) AS months,
       sumMap(c.present, arrayMap(v -> toUInt64(1), c.present)) AS findings
FROM report_search AS t
INNER JOIN
(
    SELECT {_key('report_version')} AS k,
           CAST(arrayDistinct(arrayFilter((c, n) -> NOT n, finding_concepts, finding_negated)),
                'Array(String)') AS present{recommendations}
    FROM report_current {_narrow(x)}WHERE {_and(current)}
) AS c ON {_key('version', 't.')} = c.k
{first}{due}""", {**x.params, "top": int(offset) + int(limit)})


def page_parts(row: dict[str, Any], offset: int = 0, limit: int = PAGE
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``page``'s row (as JSON decodes it) -> the rows ``results``, ``summary`` and ``finding_facets``
    return, in their order (ClickHouse sorts strings by bytes, Python by code points: the same order)."""
    results = [{"site": r[2], "accession": r[1], "modality": r[3], "procedure": r[4], "exam_time": r[5],
                "status": r[6], "text": r[7]} for r in list(row["top"])[offset:offset + limit]]
    total = int(row["total"])
    if not total:
        return results, [], []

    def pairs(kv: Any) -> list[tuple[str, int]]:
        keys, counts = (kv["1"], kv["2"]) if isinstance(kv, dict) else kv
        return [(str(k), int(n)) for k, n in zip(keys, counts, strict=True)]

    summary = [{"facet": "modality", "value": v, "n": n}
               for v, n in sorted(pairs(row["modalities"]), key=lambda p: (-p[1], p[0]))]
    summary += [{"facet": "month", "value": v, "n": n} for v, n in sorted(pairs(row["months"]))]
    summary.append({"facet": "total", "value": "", "n": total})
    facets = [{"value": v, "n": n} for v, n in sorted(pairs(row["findings"]), key=lambda p: (-p[1], p[0]))]
    return results, summary, facets[:15]


def bind(sql: str, params: dict[str, Any]) -> str:
    """The query text with its parameters bound by clickhouse-connect (client-side binding)."""
    return str(finalize_query(sql, params, None))


def results(s: Search, offset: int = 0, limit: int = PAGE) -> str:
    frm, p = where(s)
    return bind(f"""SELECT t.site AS site, t.accession AS accession, t.modality AS modality,
       t.procedure_description AS procedure, toString(t.exam_time) AS exam_time, t.status AS status,
       t.text AS text
FROM {frm}
ORDER BY t.exam_time DESC, t.accession
LIMIT %(limit)s OFFSET %(offset)s""", {**p, "limit": int(limit), "offset": int(offset)})


def count(s: Search) -> str:
    frm, p = where(s)
    return bind(f"SELECT count() AS n FROM {frm}", p)


def facets(s: Search) -> str:
    """Matching reports by modality."""
    frm, p = where(s)
    return bind(f"""SELECT t.modality AS value, count() AS n FROM {frm}
GROUP BY value ORDER BY n DESC, value LIMIT 20""", p)


def finding_facets(s: Search) -> str:
    """The most frequent findings (present: not negated) among the matching reports, from the current
    runs' arrays (report_current) rather than every findings row. report_current's row is the current
    version (FINAL), so its NLP filters apply here directly, and the report's own filters and text as
    the set of report_search versions they leave (a superseded version's key never equals it)."""
    x = _parts(s)
    cond = ["has_nlp", LIVE, *x.nlp]
    if x.pre:
        cond.append(f"{_key('report_version')} IN (SELECT {_key('version')} FROM report_search "
                    f"PREWHERE {_and(x.pre)})")
    if x.due:
        cond.append(x.due.format(t=""))
    return bind(f"""SELECT concept AS value, count() AS n FROM report_current
ARRAY JOIN arrayDistinct(arrayFilter((c, n) -> NOT n, finding_concepts, finding_negated)) AS concept
WHERE {' AND '.join(cond)}
GROUP BY value ORDER BY n DESC, value LIMIT 15""", x.params)


def summary(s: Search) -> str:
    """count, modality facet and histogram of one search in one pass over the matching reports (the
    filters are evaluated once instead of three times): rows (facet, value, n) with facet 'total'
    (value ''), 'modality' (most first) or 'month' (first day of the month, in order); no rows when
    nothing matches."""
    frm, p = where(s)
    return bind(f"""SELECT fv.1 AS facet, fv.2 AS value, sum(c) AS n
FROM
(
    SELECT t.modality AS m, toString(toStartOfMonth(t.exam_time)) AS mo, count() AS c
    FROM {frm}
    GROUP BY m, mo
)
ARRAY JOIN [('total', ''), ('modality', toString(m)), ('month', mo)] AS fv
GROUP BY facet, value
ORDER BY facet, if(facet = 'month', value, ''), n DESC, value""", p)


def histogram(s: Search) -> str:
    """Matching reports per month of the exam."""
    frm, p = where(s)
    return bind(f"""SELECT toString(toStartOfMonth(t.exam_time)) AS month, count() AS n
FROM {frm} GROUP BY month ORDER BY month""", p)


def cohort_studies(s: Search, limit: int = MAX_COHORT) -> str:
    """One row per matching study: research accession and its study reference (for retrieval)."""
    frm, p = where(s)
    return bind(f"""SELECT t.accession AS accession, any(t.study_ref) AS study_ref,
       any(t.modality) AS modality, toString(min(t.exam_time)) AS exam_time
FROM {frm} AND t.study_ref != ''
GROUP BY t.accession ORDER BY t.accession LIMIT %(limit)s""", {**p, "limit": int(limit)})


# the NLP rows of a report page come from the base tables, restricted by key to the accession's current
# run (report_current): the *_latest views would build the set of every current run of the warehouse
_CURRENT_RUN = ("(accession, report_version, nlp_version, processed_time) IN (SELECT accession, "
                "report_version, nlp_version, processed_time FROM report_current WHERE site = %(site)s "
                f"AND accession IN %(accs)s AND has_nlp AND {LIVE})")


def _of_report(columns: str, table: str, site: str, accessions: list[str], order: str = "start") -> str:
    return bind(f"""SELECT {columns} FROM {table}
WHERE site = %(site)s AND accession IN %(accs)s AND {_CURRENT_RUN} ORDER BY {order}""",
                {"site": site, "accs": tuple(accessions) or ("",)})


def findings_of(site: str, accessions: list[str]) -> str:
    return _of_report("""accession, concept, text, start, end, negated, uncertain, historical, laterality,
       severity, change, size_mm, section, certainty""", "findings", site, accessions, "accession, start")


def report(site: str, accession: str) -> str:
    return bind("""SELECT site, accession, version, status, modality, procedure_description AS procedure,
       body_part, patient_class, toString(exam_time) AS exam_time, text, study_ref
FROM reports_latest WHERE site = %(site)s AND accession = %(acc)s LIMIT 1""",
                {"site": site, "acc": accession})


def versions(site: str, accession: str) -> str:
    return bind("""SELECT version, status, toString(status_time) AS status_time, text FROM report_versions
WHERE site = %(site)s AND accession = %(acc)s ORDER BY version""", {"site": site, "acc": accession})


def sections(site: str, accession: str) -> str:
    return _of_report("name, title, start, end", "sections", site, [accession])


def measurements(site: str, accession: str) -> str:
    return _of_report("text, max_mm, prior_max_mm, finding_concept", "measurements", site, [accession])


def assessments(site: str, accession: str) -> str:
    return _of_report("system, category, text", "assessments", site, [accession])


_PROGRESS = """SELECT request_id, argMax(state, time) AS state, argMax(attempt, time) AS attempt,
       argMax(expected_instances, time) AS expected, argMax(stored, time) AS stored,
       argMax(completed, time) AS completed, argMax(quarantined, time) AS quarantined,
       argMax(missing, time) AS missing, argMax(error, time) AS error, toString(max(time)) AS last_time
FROM retrieval_events GROUP BY request_id"""


def retrievals(accession: str = "", project: str = "", limit: int = 200) -> str:
    """Requests with their latest state and counts (expected, stored ...), newest first."""
    cond, p = "1", dict[str, Any](limit=int(limit))
    if accession:
        cond += " AND q.accession = %(acc)s"
        p["acc"] = accession
    if project:
        cond += " AND q.project_id = %(project)s"
        p["project"] = project
    return bind(f"""SELECT q.request_id AS request_id, q.project_id AS project, q.requester AS requester,
       q.accession AS accession, q.destination_ae AS destination, toString(q.requested_time) AS requested,
       s.state AS state, s.attempt AS attempt, s.expected AS expected, s.stored AS stored,
       s.completed AS completed, s.quarantined AS quarantined, s.missing AS missing, s.error AS error,
       s.last_time AS last_time
FROM (SELECT * FROM retrieval_requests WHERE action = 'request') AS q
LEFT JOIN ({_PROGRESS}) AS s ON s.request_id = q.request_id
WHERE {cond}
ORDER BY q.requested_time DESC, q.request_id LIMIT %(limit)s""", p)


def project_totals() -> str:
    return f"""SELECT q.project_id AS project, count() AS requests,
       countIf(s.state = 'completed') AS completed, countIf(s.state IN ('failed', 'partial')) AS failed,
       countIf(s.state NOT IN ('completed', 'failed', 'partial', 'cancelled')) AS open,
       sum(ifNull(s.stored, ifNull(s.completed, 0))) AS instances
FROM (SELECT * FROM retrieval_requests WHERE action = 'request') AS q
LEFT JOIN ({_PROGRESS}) AS s ON s.request_id = q.request_id
GROUP BY project ORDER BY project"""


def timeline(request_id: str, identified: bool = False) -> str:
    """The request's status events. With ``identified`` (a steward's view) an identified project's
    events come whole from ``retrieval_events_identified`` (the analysts' copy has no UIDs or error
    text: ddl/024)."""
    source = "retrieval_events"
    if identified:
        source = """(SELECT * FROM retrieval_events_identified WHERE request_id = %(rid)s
    UNION ALL SELECT * FROM retrieval_events WHERE request_id = %(rid)s
    AND (SELECT count() FROM retrieval_events_identified WHERE request_id = %(rid)s) = 0)"""
    return bind(f"""SELECT toString(time) AS time, state, attempt, expected_instances AS expected, stored,
       completed, failed, quarantined, missing, error FROM {source}
WHERE request_id = %(rid)s ORDER BY time, state""", {"rid": request_id})


def completed_accessions(project: str, destination: str) -> str:
    return bind("""SELECT DISTINCT accession FROM retrieval_events WHERE state = 'completed'
AND project_id = %(project)s AND destination_ae = %(dest)s""", {"project": project, "dest": destination})


def audit_log(user: str = "", limit: int = 200) -> str:
    cond, p = "1", dict[str, Any](limit=int(limit))
    if user:
        cond = "actor = %(user)s"
        p["user"] = user
    return bind(f"""SELECT toString(time) AS time, actor, action, allowed, project, query, detail
FROM audit_log WHERE {cond} ORDER BY time DESC LIMIT %(limit)s""", p)


def quarantine(limit: int = 200) -> str:
    return bind("SELECT * FROM quarantine ORDER BY 1 DESC LIMIT %(limit)s", {"limit": int(limit)})


_NUMBER = re.compile(r"^[0-9]+")


def category_number(category: str) -> int | None:
    """The leading number of an assessment category ('4A' -> 4), as the search compares it."""
    m = _NUMBER.match(category or "")
    return int(m.group(0)) if m else None
