"""Avro records (decoded contracts) -> rows of the warehouse tables.

Pure functions: no ClickHouse or Kafka here. Column lists must match ``ddl/``; optional category
strings become '' (never NULL) so they can sit in sort keys and LowCardinality columns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.ingest.research import looks_keyed
from processors.nlp.sections import is_bare_title

KAFKA = ("kafka_topic", "kafka_partition", "kafka_offset")
NLP_KEY = ("site", "accession", "report_version", "processed_time")
# the child tables' run columns; their sort key is (report version, nlp_version, index) (ddl/012), with
# processed_time the ReplacingMergeTree version: a resend or a replay replaces its rows once merged
NLP_RUN = (*NLP_KEY, "nlp_version")

REPORT_COLUMNS = (
    "site", "accession", "version", "event_id", "report_id", "status", "patient_id",
    "patient_id_is_pseudonym", "visit_number", "patient_class", "modality", "procedure_code",
    "procedure_description", "body_part",
    "placer_order_number", "filler_order_number",
    "study_instance_uid", "study_ref", "observation_time", "status_time", "received_time", "exam_time",
    "author", "source_format", "source_message_id", "text", *KAFKA,
)

SEARCH_COLUMNS = ("site", "accession", "version", "status", "patient_class", "modality",
                  "procedure_description", "study_ref", "exam_time", "text")

COLUMNS: dict[str, tuple[str, ...]] = {
    "report_versions": REPORT_COLUMNS,
    "reports": REPORT_COLUMNS,
    # the web app's search (ddl/018): a report version's own search columns and text
    "report_search": SEARCH_COLUMNS,
    "report_nlp": (*NLP_KEY, "event_id", "status", "patient_id", "modality", "body_region", "contrast",
                   "nlp_version", "n_findings", "n_critical", "communication_text", "communication_recipient",
                   "communication_time_text", "communication_time", *KAFKA),
    "sections": (*NLP_RUN, "section_idx", "name", "title", "start", "end"),
    "findings": (*NLP_KEY, "finding_idx", "patient_id", "modality", "concept", "category", "text", "start",
                 "end", "sentence", "section", "negated", "uncertain", "historical", "hypothetical",
                 "experiencer", "certainty", "laterality", "anatomy", "severity", "change", "size_mm",
                 "source", "nlp_version"),
    "measurements": (*NLP_RUN, "measurement_idx", "text", "start", "end", "dims_mm", "max_mm", "prior_max_mm",
                     "finding_idx", "finding_concept"),
    "recommendations": (*NLP_RUN, "recommendation_idx", "kind", "text", "start", "end", "modality",
                        "interval_days_min", "interval_days_max", "guideline"),
    "assessments": (*NLP_RUN, "assessment_idx", "system", "category", "text", "start", "end"),
    "critical_results": (*NLP_RUN, "critical_idx", "concept", "text", "start", "end", "communication_text",
                         "communication_recipient", "communication_time"),
    "chest_labels": (*NLP_RUN, "label", "value"),
    # the latest version / NLP run of each accession (ddl/014; its rank is a DEFAULT of these columns),
    # with that run's NLP results as arrays (ddl/015; empty on a version's bare row)
    "report_current": (*NLP_RUN, "status", "has_nlp", "rank", "body_region", "finding_concepts",
                       "finding_negated", "finding_uncertain", "finding_size_mm", "assessment_systems",
                       "assessment_categories", "critical_concepts", "recommendation_kinds",
                       "recommendation_days"),
    "retrieval_requests": ("request_id", "action", "project_id", "requester", "accession",
                           "study_instance_uid", "study_ref", "patient_id", "study_date", "destination_ae",
                           "priority", "not_before", "not_after", "source", "requested_time", *KAFKA),
    "retrieval_events": ("request_id", "project_id", "state", "attempt", "accession", "study_instance_uid",
                         "study_instance_uids", "pacs_ae", "destination_ae", "completed", "failed", "warning",
                         "remaining", "expected_instances", "stored", "quarantined", "missing",
                         "missing_sop_instance_uids", "dimse_status", "error", "time", *KAFKA),
    "received_instances": ("project_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
                           "sop_class_uid", "accession", "patient_id", "modality", "calling_ae", "called_ae",
                           "path",
                           "size_bytes", "deidentified", "uids_retained", "time", *KAFKA),
    "deid_map": ("project_id", "kind", "original", "pseudonym", "time", *KAFKA),
    "projects": ("project_id", "identified", "irb_reference", "retain_modified_dates",
                 "retain_patient_characteristics", "retain_device_identity", "retain_uids",
                 "clean_descriptors", "private_safe_list", "allow_burned_in_risk", "destination_ae", "owner",
                 "registered_by", "active", "time", *KAFKA),
    "quarantine": ("action", "project_id", "request_id", "study_instance_uid", "series_instance_uid",
                   "sop_instance_uid", "sop_class_uid", "modality", "reason", "path", "size_bytes", "actor",
                   "note", "time", *KAFKA),
    "report_text_original": ("site", "accession", "version", "event_id", "patient_id", "status",
                             "received_time", "text", *KAFKA),
    "audit_log": ("event_id", "time", "actor", "action", "allowed", "project", "query", "tables", "rows",
                  "duration_ms", "detail", "host", "process", *KAFKA),
    "dead_letters": ("stage", "original_topic", "original_partition", "original_offset", "value_sha256",
                     "key", "value", "error_type", "error", "time", *KAFKA),
}
COLUMNS["received_instances_identified"] = COLUMNS["received_instances"]  # an identified project's (022)
COLUMNS["retrieval_events_identified"] = COLUMNS["retrieval_events"]  # an identified project's (024)

# which tables each contract writes. "report_original" is the ReportFinalized contract as it comes in on
# the reports topic (original text): it goes only to the restricted report_text_original table; the
# analysts' report tables are written from the de-identified copy (``report_finalized`` on the
# reports_deidentified topic, or the backfill's de-identified records).
TABLES_OF: dict[str, tuple[str, ...]] = {
    "report_finalized": ("report_versions", "reports", "report_search", "report_current"),
    "report_original": ("report_text_original",),
    "report_findings": ("report_nlp", "sections", "findings", "measurements", "recommendations",
                        "assessments", "critical_results", "chest_labels", "report_current"),
    "retrieval_requested": ("retrieval_requests", "audit_log"),
    "retrieval_status": ("retrieval_events", "retrieval_events_identified"),
    "received_instance": ("received_instances", "received_instances_identified"),
    "received_original": ("deid_map",),
    "project_registration": ("projects", "audit_log"),
    "quarantine_event": ("quarantine",),
    "dead_letter": ("dead_letters",),
    "audit_event": ("audit_log",),
}

Row = list[Any]
Rows = dict[str, list[Row]]
NO_RUN = datetime(1970, 1, 1, tzinfo=UTC)  # report_current.processed_time of a version without NLP


@dataclass(frozen=True)
class Origin:
    """Where a record came from (-1 / '' when it did not come from Kafka, e.g. a backfill)."""

    topic: str = ""
    partition: int = -1
    offset: int = -1

    def cols(self) -> list[Any]:
        return [self.topic, self.partition, self.offset]



def section_title_for_row(title: str, name: str) -> str:
    """The title the sink writes: the agent sends only bare titles or names, but a message of an older
    agent (a replay within the findings topic's retention) may carry a qualified header with dates and
    names ("ADDENDUM (01/17/2024 by Dr. A)"); it becomes the section's name, the rule of ddl/035."""
    return title if not title or is_bare_title(title, name) else name

def _s(value: Any) -> str:
    return "" if value is None else str(value)


def avro_time(value: Any) -> datetime | None:
    """Avro timestamp-micros -> aware UTC datetime (fastavro yields aware datetimes; ints are micros)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1e6, tz=UTC)


_t = avro_time  # the short name the row mappings below use


def current_rank(version: int, processed_time: datetime | None) -> int:
    """report_current's rank (ddl/014, the same formula as its DEFAULT): the version in the high 64 bits,
    then the NLP run's time in microseconds + 1 (None: a report version, which any run of it outranks)."""
    run = 0 if processed_time is None else (processed_time - NO_RUN) // timedelta(microseconds=1) + 1
    return (max(version, 0) << 64) + run


def report_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    received = _t(rec["received_time"])
    obs, status_time = _t(rec.get("observation_time")), _t(rec.get("status_time"))
    row: Row = [
        _s(rec.get("site") or "default"), rec["accession"], int(rec["version"]), rec["event_id"],
        _s(rec.get("report_id")), rec["status"], rec["patient_id"], bool(rec.get("patient_id_is_pseudonym")),
        _s(rec.get("visit_number")), _s(rec.get("patient_class")), _s(rec.get("modality")),
        _s(rec.get("procedure_code")), _s(rec.get("procedure_description")), _s(rec.get("body_part")),
        _s(rec.get("placer_order_number")), _s(rec.get("filler_order_number")),
        _s(rec.get("study_instance_uid")), _s(rec.get("study_ref")), obs, status_time, received,
        obs or status_time or received,
        _s(rec.get("author")), _s(rec.get("source_format")), _s(rec.get("source_message_id")), rec["text"],
        *origin.cols(),
    ]
    current: Row = [row[0], row[1], row[2], NO_RUN, "", row[5], False, current_rank(row[2], None), "",
                    *([] for _ in range(9))]
    search = [row[REPORT_COLUMNS.index(c)] for c in SEARCH_COLUMNS]
    return {"report_versions": [row], "reports": [list(row)], "report_search": [search],
            "report_current": [current]}


def report_original_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    """The original text of a report version: RESTRICTED (report_text_original, stewards only)."""
    return {"report_text_original": [[
        _s(rec.get("site") or "default"), rec["accession"], int(rec["version"]), rec["event_id"],
        rec["patient_id"], rec["status"], _t(rec["received_time"]), rec["text"], *origin.cols(),
    ]]}


def findings_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    key: Row = [_s(rec.get("site") or "default"), rec["accession"], int(rec["report_version"]),
                _t(rec["processed_time"])]
    nlp_version = _s(rec.get("nlp_version"))
    findings = list(rec.get("findings") or [])
    critical = list(rec.get("critical_results") or [])
    comm = rec.get("communication") or {}
    comm_text, comm_to, comm_time = _s(comm.get("text")), _s(comm.get("recipient")), _t(comm.get("time"))
    out: Rows = {t: [] for t in TABLES_OF["report_findings"]}
    out["report_nlp"].append([
        *key, rec["event_id"], rec["status"], rec["patient_id"], _s(rec.get("modality")),
        _s(rec.get("body_region")), rec.get("contrast"), nlp_version, len(findings), len(critical),
        comm_text, comm_to, _s(comm.get("time_text")), comm_time, *origin.cols(),
    ])
    run: Row = [*key, nlp_version]  # the child tables' leading columns
    for i, s in enumerate(rec.get("sections") or []):
        out["sections"].append([*run, i, s["name"], section_title_for_row(s["title"], s["name"]), s["start"],
                                s["end"]])
    for i, f in enumerate(findings):
        out["findings"].append([
            *key, i, rec["patient_id"], _s(rec.get("modality")), f["concept"], f["category"], f["text"],
            f["start"], f["end"], f["sentence"], f["section"], f["negated"], f["uncertain"], f["historical"],
            f["hypothetical"], _s(f.get("experiencer") or "patient"), _s(f.get("certainty") or "definite"),
            _s(f.get("laterality")),
            list(f.get("anatomy") or []), _s(f.get("severity")), _s(f.get("change")), f.get("size_mm"),
            _s(f.get("source") or "rules"), nlp_version,
        ])
    for i, m in enumerate(rec.get("measurements") or []):
        fi = m.get("finding")
        concept = findings[fi]["concept"] if fi is not None and 0 <= fi < len(findings) else ""
        out["measurements"].append([
            *run, i, m["text"], m["start"], m["end"], [float(d) for d in m["dims_mm"]], float(m["max_mm"]),
            m.get("prior_max_mm"), fi, concept,
        ])
    for i, r in enumerate(rec.get("recommendations") or []):
        out["recommendations"].append([
            *run, i, r["kind"], r["text"], r["start"], r["end"], _s(r.get("modality")),
            r.get("interval_days_min"), r.get("interval_days_max"), _s(r.get("guideline")),
        ])
    for i, a in enumerate(rec.get("assessments") or []):
        out["assessments"].append([*run, i, a["system"], a["category"], a["text"], a["start"], a["end"]])
    for i, c in enumerate(critical):
        out["critical_results"].append([
            *run, i, c["concept"], c["text"], c["start"], c["end"], comm_text, comm_to, comm_time,
        ])
    for label, value in sorted((rec.get("chest_labels") or {}).items()):
        out["chest_labels"].append([*run, label, value])
    out["report_current"].append([
        *run, rec["status"], True, current_rank(key[2], key[3]), _s(rec.get("body_region")),
        [f["concept"] for f in findings], [bool(f["negated"]) for f in findings],
        [bool(f["uncertain"]) for f in findings], [f.get("size_mm") for f in findings],
        [a["system"] for a in rec.get("assessments") or []],
        [a["category"] for a in rec.get("assessments") or []],
        [c["concept"] for c in critical],
        [r["kind"] for r in rec.get("recommendations") or []],
        [r.get("interval_days_min") for r in rec.get("recommendations") or []],
    ])
    return out


def retrieval_request_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    """The request (analysts' table) and its audit entry. Clinical identifiers (a request from radiology or
    a steward, by the PACS's own values) stay out of the analysts' table: only research values
    (``looks_keyed``) and the study reference go there; the audit entry (stewards') keeps the request as
    made."""
    action = _s(rec.get("action") or "request")
    ids = {f: _s(rec.get(f)) for f in ("accession", "study_instance_uid", "patient_id", "study_date")}
    # an accession or patient id that is not a pseudonym by its form is the PACS's own value, study
    # reference or not; a UID's form tells nothing: beside a study reference it is taken as research (the
    # CLI and standing cohorts pair them), without one as the PACS's
    judged = ("accession", "patient_id") if rec.get("study_ref") else ("accession", "study_instance_uid",
                                                                        "patient_id")
    clinical = {f: ids[f] for f in judged if ids[f] and not looks_keyed(ids[f])}
    # a request made by clinical values has the PACS's UID and the real exam date too (a real date that the
    # study reference or the research accession would tie to that patient's shifted dates)
    clinical.update({f: ids[f] for f in ("study_instance_uid", "study_date") if clinical and ids[f]})
    shown = {f: "" if f in clinical else v for f, v in ids.items()}
    # every retrieval request and cancel is audited here, whichever process produced it
    detail = json.dumps({"request_id": rec["request_id"], "destination_ae": rec["destination_ae"],
                         "source": _s(rec.get("source") or "manual"), **clinical}, sort_keys=True)
    audit = [f"retrieval:{rec['request_id']}:{action}", _t(rec["requested_time"]), rec["requester"],
             f"retrieval.{action}", True, rec["project_id"], "", [], None, None, detail, "", "",
             *origin.cols()]
    return {"audit_log": [audit], "retrieval_requests": [[
        rec["request_id"], action, rec["project_id"], rec["requester"],
        shown["accession"], shown["study_instance_uid"], _s(rec.get("study_ref")), shown["patient_id"],
        shown["study_date"], rec["destination_ae"], _s(rec.get("priority") or "normal"),
        _t(rec.get("not_before")), _t(rec.get("not_after")), _s(rec.get("source") or "manual"),
        _t(rec["requested_time"]), *origin.cols(),
    ]]}


def retrieval_status_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    """The row of a de-identified project's status event (``for_identified_project`` makes the others')."""
    return {"retrieval_events_identified": [], "retrieval_events": [[
        rec["request_id"], rec["project_id"], rec["state"], int(rec.get("attempt") or 0),
        _s(rec.get("accession")), _s(rec.get("study_instance_uid")),
        list(rec.get("study_instance_uids") or []), _s(rec.get("pacs_ae")), _s(rec.get("destination_ae")),
        rec.get("completed"), rec.get("failed"), rec.get("warning"), rec.get("remaining"),
        rec.get("expected_instances"), rec.get("stored"), rec.get("quarantined"), rec.get("missing"),
        list(rec.get("missing_sop_instance_uids") or []), rec.get("dimse_status"), _s(rec.get("error")),
        _t(rec["time"]), *origin.cols(),
    ]]}


# the columns of a status event that name the PACS's studies and instances, and its free-text error
_STATUS_PACS_COLUMNS = ("study_instance_uid", "study_instance_uids", "missing_sop_instance_uids", "error")


def for_identified_project(rows: Rows) -> Rows:
    """The status rows of a project that is not known to be de-identified: its status events carry the
    PACS's own UIDs (the worker keys them only for de-identified projects), so the whole row goes to the
    steward-only ``retrieval_events_identified`` and the analysts' ``retrieval_events`` gets it without the
    UIDs and the error text (state and counts stay: the dashboards' progress) (ddl/024)."""
    cols = COLUMNS["retrieval_events"]
    blank = {cols.index(c): ([] if c.endswith("uids") else "") for c in _STATUS_PACS_COLUMNS}
    full = rows.get("retrieval_events", [])
    return {"retrieval_events": [[blank.get(i, v) for i, v in enumerate(row)] for row in full],
            "retrieval_events_identified": full}


# de-identified instance: (kind in deid_map, field of the original, field of the pseudonym)
DEID_PAIRS = (("patient_id", "original_patient_id", "patient_id"),
              ("accession", "original_accession", "accession"),
              ("study_instance_uid", "original_study_instance_uid", "study_instance_uid"),
              ("series_instance_uid", "original_series_instance_uid", "series_instance_uid"),
              ("sop_instance_uid", "original_sop_instance_uid", "sop_instance_uid"))


def received_instance_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    """The research-facing row of a de-identified instance whose UIDs were remapped (v3 carries no
    originals; they come as ``received_original``). An instance that carries the hospital's own values goes
    to the steward-only ``received_instances_identified`` instead, whatever its project's registrations
    say: an identified project's (ddl/022), and one that says it kept its original UIDs (``uids_retained``
    true, v4; ddl/030). ``uids_retained`` None (an SCP older than v4) is unknown: the registrations decide.
    The sink also sends the analysts' row there unless its project is known to be de-identified without
    "Retain UIDs" (``restricted_instances``)."""
    tables = ("received_instances", "received_instances_identified")
    retained = rec.get("uids_retained")
    table, other = tables if rec.get("deidentified") and not retained else tables[::-1]
    return {other: [], table: [[
        rec["project_id"], rec["study_instance_uid"], rec["series_instance_uid"], rec["sop_instance_uid"],
        rec["sop_class_uid"], _s(rec.get("accession")), _s(rec.get("patient_id")), _s(rec.get("modality")),
        rec["calling_ae"],
        rec["called_ae"], rec["path"], int(rec["size_bytes"]), bool(rec.get("deidentified")),
        None if retained is None else bool(retained), _t(rec["time"]), *origin.cols(),
    ]]}


def restricted_instances(rows: Rows) -> Rows:
    """The rows of an instance whose project is not known to be de-identified without "Retain UIDs"
    (registered identified, with "Retain UIDs": the hospital's Study, Series and SOP Instance UIDs, or
    not registered in the warehouse yet): the steward-only ``received_instances_identified`` gets the row
    and the analysts' ``received_instances`` none (ddl/022, 027, 028)."""
    return {"received_instances": [],
            "received_instances_identified": [*rows.get("received_instances_identified", []),
                                              *rows.get("received_instances", [])]}


def received_original_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    """The restricted ``deid_map`` rows of a de-identified instance (from the restricted topic only)."""
    return {"deid_map": [
        [rec["project_id"], kind, rec[orig], _s(rec.get(pseudo)), _t(rec["time"]), *origin.cols()]
        for kind, orig, pseudo in DEID_PAIRS if rec.get(orig)]}


_REGISTRATION_OPTIONS = ("retain_modified_dates", "retain_patient_characteristics", "retain_device_identity",
                         "retain_uids", "clean_descriptors", "allow_burned_in_risk")


def project_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    """The registration (``projects``, every one kept) and its audit entry. The entry is written here, for
    every registration whichever writer produced it: the steward's Kafka account may write the projects
    topic directly, past the CLI's own ``project.register`` event. Its actor is the record's
    ``registered_by``, as the writer claimed it (``actor_from`` says so): the Kafka principal that wrote
    it is not in the record. A redelivered record gives the same row (ddl/023 collapses it).

    A registration every registry ignores (``sinks.dicom.registration``: identified without an IRB
    reference, an invalid id) is audited as refused (``allowed`` false, ``refused``: why) and kept out of
    ``projects``: the project's current registration there stays the one the DICOM side applies."""
    from sinks.dicom.registration import registration_problem

    problem = registration_problem(rec)
    when = _t(rec["time"])
    safe = [str(t) for t in rec.get("private_safe_list") or []]
    what = "register" if rec["active"] else "retire"
    detail = json.dumps({
        "what": what, "identified": bool(rec["identified"]), "irb_reference": _s(rec.get("irb_reference")),
        "destination_ae": rec["destination_ae"], "owner": rec["owner"],
        "options": {**{k: bool(rec[k]) for k in _REGISTRATION_OPTIONS}, "private_safe_list": safe},
        "reason": _s(rec.get("reason")), "actor_from": "record",
        **({"refused": f"ignored by the registries: {problem}"} if problem else {})}, sort_keys=True)
    event_id = f"registration:{rec['project_id']}:{when.isoformat() if when else ''}:{what}"
    audit = [event_id, when, rec["registered_by"], f"registration.{what}", problem is None, rec["project_id"],
             "", [], None, None, detail, "", "", *origin.cols()]
    if problem:
        return {"audit_log": [audit]}
    return {"audit_log": [audit], "projects": [[
        rec["project_id"], bool(rec["identified"]), _s(rec.get("irb_reference")),
        bool(rec["retain_modified_dates"]), bool(rec["retain_patient_characteristics"]),
        bool(rec["retain_device_identity"]), bool(rec["retain_uids"]), bool(rec["clean_descriptors"]),
        safe, bool(rec["allow_burned_in_risk"]),
        rec["destination_ae"], rec["owner"], rec["registered_by"], bool(rec["active"]), when,
        *origin.cols(),
    ]]}


def quarantine_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    return {"quarantine": [[
        rec["action"], rec["project_id"], _s(rec.get("request_id")), rec["study_instance_uid"],
        rec["series_instance_uid"], rec["sop_instance_uid"], rec["sop_class_uid"], _s(rec.get("modality")),
        rec["reason"], rec["path"], int(rec["size_bytes"]), rec["actor"], _s(rec.get("note")),
        _t(rec["time"]), *origin.cols(),
    ]]}


def dead_letter_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    value = bytes(rec.get("value") or b"")
    part, off = rec.get("partition"), rec.get("offset")
    return {"dead_letters": [[
        rec["stage"], _s(rec.get("original_topic")), -1 if part is None else int(part),
        -1 if off is None else int(off), hashlib.sha256(value).hexdigest(), bytes(rec.get("key") or b""),
        value, rec["error_type"], rec["error"], _t(rec["time"]), *origin.cols(),
    ]]}


def audit_rows(rec: Mapping[str, Any], origin: Origin) -> Rows:
    return {"audit_log": [[
        rec["event_id"], _t(rec["time"]), rec["actor"], rec["action"], bool(rec["allowed"]),
        _s(rec.get("project")), _s(rec.get("query")), list(rec.get("tables") or []), rec.get("rows"),
        rec.get("duration_ms"), _s(rec.get("detail")), _s(rec.get("host")), _s(rec.get("process")),
        *origin.cols(),
    ]]}

# the contract (schema) of each mapping that is not one itself
CONTRACT_OF = {"report_original": "report_finalized"}

MAPPERS = {
    "report_finalized": report_rows,
    "report_original": report_original_rows,
    "report_findings": findings_rows,
    "retrieval_requested": retrieval_request_rows,
    "retrieval_status": retrieval_status_rows,
    "received_instance": received_instance_rows,
    "received_original": received_original_rows,
    "project_registration": project_rows,
    "quarantine_event": quarantine_rows,
    "dead_letter": dead_letter_rows,
    "audit_event": audit_rows,
}


def rows_for(contract: str, record: Mapping[str, Any], origin: Origin | None = None) -> Rows:
    """Rows per table for one decoded record of ``contract``."""
    try:
        mapper = MAPPERS[contract]
    except KeyError:
        raise ValueError(f"no warehouse mapping for contract {contract!r}") from None
    return mapper(record, origin or Origin())


def merge_rows(into: Rows, more: Rows) -> int:
    """Append ``more`` to ``into``; return the number of rows added."""
    n = 0
    for table, rows in more.items():
        if rows:
            into.setdefault(table, []).extend(rows)
            n += len(rows)
    return n


def rows_for_many(contract: str, records: Iterable[Mapping[str, Any]]) -> Rows:
    out: Rows = {}
    for rec in records:
        merge_rows(out, rows_for(contract, rec))
    return out


def rows_by_contract(records: Mapping[str, Iterable[Mapping[str, Any]]]) -> Rows:
    """Rows for decoded records grouped by contract (the backfill's ``prepare``, run in its workers)."""
    out: Rows = {}
    for contract, recs in records.items():
        merge_rows(out, rows_for_many(contract, recs))
    return out
