"""``radstream cohort retrieve|export``: a cohort of accessions -> retrieval requests.

First part of issue 6's cohort commands: ``retrieve`` (from a CSV or a SQL query on the warehouse,
with the allow-list, the project, the requester, a dry run that C-FINDs the expected volume, and
skipping accessions already completed for the same project and destination) and ``export`` (the
manifest for teams that retrieve by hand) and ``import-status`` (their outcome, as status events).
Standing cohorts (``watch``) live in ``radstream.cli.watch``.
"""

from __future__ import annotations

import csv
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from processors.ingest.pseudonym import UID_IN_TEXT, keyed_identifier, keyed_uid
from processors.ingest.research import (
    STUDY_REF_PREFIX,
    StudyRefError,
    looks_keyed,
    open_study_ref,
)
from radstream.cli import settings_of
from radstream.config import Settings
from radstream.retrieval import clinical, cohort_request
from radstream.text_deid import research_key
from radstream.warehouse import WarehouseError, query_rows, quote


def _rows_from_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in csv.DictReader(fh)]
    if rows and not ({"study_ref", "accession", "study_instance_uid", "patient_id"} & set(rows[0])):
        raise click.UsageError("the CSV needs a column study_ref, accession, study_instance_uid or "
                               "patient_id (+ study_date)")
    return rows


def _query(settings: Settings, sql: str, what: str) -> list[list[str]]:
    """``query_rows``, with an unreachable or refusing warehouse as one line for the user."""
    try:
        return query_rows(settings, sql)
    except (OSError, WarehouseError) as exc:
        raise click.ClickException(f"cannot {what}: {exc}") from None


def _rows_from_sql(settings: Settings, query: str) -> list[dict[str, str]]:
    rows = _query(settings, query, "run the cohort query")
    return [{"study_ref" if r[0].startswith(STUDY_REF_PREFIX) else "accession": r[0]}
            for r in rows if r and r[0]]


def _with_refs(settings: Settings, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows that name a study by its research accession (``ACC-...``, from the analysts' tables) get the
    study's reference from ``reports_latest``: the PACS knows neither, the DICOM worker opens the
    reference. Rows with clinical identifiers (a radiology list) pass as they are."""
    keyed = sorted({r["accession"] for r in rows
                    if looks_keyed(r.get("accession")) and not r.get("study_ref")})
    refs: dict[str, str] = {}
    for at in range(0, len(keyed), 1000):
        chunk = ", ".join(f"'{quote(a)}'" for a in keyed[at:at + 1000])
        found = _query(settings, f"SELECT accession, any(study_ref) FROM reports_latest WHERE accession IN "
                                 f"({chunk}) AND study_ref != '' GROUP BY accession",
                       "look up the study references of the cohort")
        refs.update({r[0]: r[1] for r in found})
    missing = [a for a in keyed if a not in refs]
    if missing:
        raise click.ClickException(f"{len(missing)} research accession(s) have no study_ref in "
                                   f"reports_latest, e.g. {missing[0]}")
    return [{**r, "study_ref": refs[r["accession"]]} if r.get("accession") in refs else r for r in rows]


def _completed(settings: Settings, project: str, destination: str) -> set[str] | None:
    """Accessions already completed for this project and destination (None: warehouse not reachable)."""
    q = ("SELECT DISTINCT accession FROM retrieval_events WHERE state = 'completed' "
         f"AND project_id = '{quote(project)}' AND destination_ae = '{quote(destination)}'")
    try:
        return {r[0] for r in query_rows(settings, q) if r}
    except (OSError, ValueError, WarehouseError) as exc:
        click.echo(f"warning: cannot ask the warehouse which accessions are done ({exc}); nothing skipped",
                   err=True)
        return None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.astimezone()


@click.group()
def cohort() -> None:
    """Cohorts of studies for research projects."""


@cohort.command("retrieve")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with a column accession (or study_instance_uid, or patient_id + study_date).")
@click.option("--sql", "query", help="Warehouse query whose first column is the study_ref or the "
              "research accession (its study_ref is looked up in reports_latest).")
@click.option("--project", required=True, help="Project / IRB protocol id.")
@click.option("--destination", required=True, help="Destination AE title (must be on the allow-list).")
@click.option("--priority", type=click.Choice(["low", "normal", "high"]), default="normal", show_default=True)
@click.option("--not-before", default=None)
@click.option("--not-after", default=None)
@click.option("--requester", default=None, help="Who asks (default: the OS user).")
@click.option("--dry-run", is_flag=True,
              help="Only count: C-FIND every accession and show the expected volume.")
@click.pass_context
def retrieve(ctx: click.Context, csv_file: Path | None, query: str | None, project: str, destination: str,
             priority: str, not_before: str | None, not_after: str | None, requester: str | None,
             dry_run: bool) -> None:
    """Request retrieval of every study of a cohort.

    Refused unless the project is registered (and active, and delivers to this destination), and, for an
    identified project, unless the command's user is a steward. A refusal is audited
    (``retrieval.request``, allowed false, with the reason)."""
    from radstream.cli.retrieve import refused, request_checked

    settings = settings_of(ctx)
    if bool(csv_file) == bool(query):
        raise click.UsageError("give exactly one of --csv and --sql")
    if destination not in settings.research.allowed_destinations:
        raise click.UsageError(refused(
            settings, f"destination {destination!r} is not on the allow-list "
                      f"{list(settings.research.allowed_destinations)}",
            project=project, destination=destination, source="cohort"))
    given = _rows_from_csv(csv_file) if csv_file else _rows_from_sql(settings, str(query))
    rows = _with_refs(settings, given)
    done = _completed(settings, project, destination) or set()
    key = research_key(settings)
    todo = [r for r in rows if not (r.get("accession") and _research_accession(key, r) in done)]
    skipped = len(rows) - len(todo)
    if skipped:
        click.echo(f"skipping {skipped} accession(s) already completed for {project} -> {destination}")
    if dry_run:
        _dry_run(settings, todo)
        return
    from streams.producer import Deliveries, make_producer

    # a registered project only; an identified one takes a steward's requests only, carrying the
    # steward's roles (refusals audited)
    who, roles = request_checked(settings, project, destination, requester, source="cohort",
                                 studies=len(todo))
    sent = Deliveries(make_producer(settings.kafka))
    now = datetime.now(UTC)
    for r in todo:
        record = cohort_request(key, settings.ingest.site, r, project=project, destination=destination,
                                requester=who, now=now, priority=priority, not_before=_when(not_before),
                                not_after=_when(not_after))
        record["requester_roles"] = roles
        sent.produce(settings.topics.retrieval_requests, "retrieval_requested", record["request_id"], record)
    left = sent.flush(30)
    if left:
        raise click.ClickException(f"{left} requests not confirmed by Kafka ({sent.last_error})")
    click.echo(f"requested {len(todo)} retrieval(s) for project {project} -> {destination} (requester {who})")


def _research_accession(key: bytes, r: dict[str, str]) -> str:
    acc = r["accession"]
    return keyed_identifier(key, "accession", acc) if clinical(r) else acc


def _dry_run(settings: Settings, rows: list[dict[str, str]]) -> None:
    from sinks.dicom.find import DicomError, Pacs, resolve

    pacs = Pacs.of(settings.pacs)
    rows = _opened(settings, rows, "cohort.dry_run")
    studies = instances = missing = 0
    for r in rows:
        try:
            found = resolve(pacs, accession=r.get("accession") or None,
                            study_uid=r.get("study_instance_uid") or None,
                            patient_id=r.get("patient_id") or None, study_date=r.get("study_date") or None)
        except DicomError as exc:
            raise click.ClickException(f"C-FIND failed: {exc}") from exc
        if not found:
            missing += 1
        studies += len(found)
        instances += sum(s.instances or 0 for s in found)
    click.echo(f"dry run: {len(rows)} request(s), {studies} studies, {instances} instances expected, "
               f"{missing} without a match in {pacs.ae_title}; nothing was requested")


def _opened(settings: Settings, rows: list[dict[str, str]], action: str) -> list[dict[str, str]]:
    """Rows with study references opened to the clinical identifiers (to C-FIND the PACS, or for
    radiology): re-identification, so for stewards only, and audited with how many were opened."""
    refs = [r for r in rows if r.get("study_ref")]
    if not refs:
        return rows
    from radstream.access import authorise, done
    from streams.auth import AuthError

    try:
        principal, target = authorise(settings, action, ("steward",), studies=len(refs))
    except AuthError as exc:
        raise click.ClickException(f"opening study references needs the steward role: {exc.reason}") from None
    key = research_key(settings)
    out = []
    for r in rows:
        if r.get("study_ref"):
            try:
                ref = open_study_ref(key, r["study_ref"])
            except StudyRefError as exc:
                raise click.ClickException(str(exc)) from None
            r = {**r, "accession": ref.accession, "study_instance_uid": ref.study_instance_uid or "",
                 "patient_id": ref.patient_id or "", "study_date": ref.study_date or ""}
        out.append(r)
    done(target, principal, action, studies=len(refs))
    return out


MANIFEST_COLUMNS = ["request_id", "accession", "patient_id", "study_date", "modality", "study_instance_uid",
                    "destination_ae"]


@cohort.command("export")
@click.option("--project", default=None, help="Export this project's open requests from the warehouse.")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Or: a cohort CSV (column accession, or patient_id + study_date), resolved by C-FIND.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: stdout.")
@click.pass_context
def export(ctx: click.Context, project: str | None, csv_file: Path | None, out: Path | None) -> None:
    """Manifest for teams that retrieve by hand: request id, accession, patient id, study date, modality,
    study UID when known. Record what they did with ``radstream cohort import-status``."""
    if bool(project) == bool(csv_file):
        raise click.UsageError("give exactly one of --project and --csv")
    settings = settings_of(ctx)
    rows = _open_requests(settings, str(project)) if project else _resolved(settings, Path(str(csv_file)))
    fh = out.open("w", newline="") if out else sys.stdout
    try:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows(rows)
    finally:
        if out:
            fh.close()


def _open_requests(settings: Settings, project: str) -> list[list[str]]:
    """The project's requests that have no final state yet, with what the warehouse knows of each study;
    research values opened to the clinical ones the radiology team needs (steward, audited)."""
    q = f"""
        SELECT q.request_id, q.accession, if(q.patient_id = '', r.patient_id, q.patient_id),
               if(q.study_date = '', formatDateTime(r.observation_time, '%Y%m%d'), q.study_date),
               r.modality, if(q.study_instance_uid = '', r.study_instance_uid, q.study_instance_uid),
               q.destination_ae, if(r.study_ref != '', r.study_ref, q.study_ref)  -- the report's knows more
        FROM (SELECT * FROM retrieval_requests FINAL
              WHERE action = 'request' AND project_id = '{quote(project)}') AS q
        LEFT JOIN (SELECT accession, patient_id, observation_time, modality, study_instance_uid, study_ref
                   FROM reports_latest) AS r ON r.accession = q.accession
        WHERE q.request_id NOT IN (SELECT request_id FROM retrieval_events
                                   WHERE state IN ('completed', 'partial', 'failed', 'cancelled'))
          AND q.request_id NOT IN (SELECT request_id FROM retrieval_requests WHERE action = 'cancel')
        ORDER BY q.requested_time, q.request_id"""
    names = [*MANIFEST_COLUMNS, "study_ref"]
    found = _query(settings, q, "read the open requests from the warehouse")
    rows = [dict(zip(names, r, strict=True)) for r in found]
    return [[r[c] or "" for c in MANIFEST_COLUMNS] for r in _opened(settings, rows, "cohort.export")]


def _resolved(settings: Settings, csv_file: Path) -> list[list[str]]:
    """The CSV's studies as the PACS knows them (C-FIND): its patient id, accession and study UID, so for
    stewards only, and audited (``cohort.export``) with how many rows the manifest has."""
    from radstream.access import authorise, done
    from sinks.dicom.find import Pacs, resolve
    from streams.auth import AuthError

    given = _rows_from_csv(csv_file)
    try:
        principal, target = authorise(settings, "cohort.export", ("steward",), source="csv",
                                      studies=len(given))
    except AuthError as exc:
        raise click.ClickException(f"writing the PACS's identifiers needs the steward role: {exc.reason}") \
            from None
    pacs = Pacs.of(settings.pacs)
    out: list[list[str]] = []
    for r in given:
        found = resolve(pacs, accession=r.get("accession") or None,
                        patient_id=r.get("patient_id") or None, study_date=r.get("study_date") or None)
        if not found:
            out.append(["", r.get("accession", ""), r.get("patient_id", ""), r.get("study_date", ""),
                        "", "", ""])
        for st in found:
            out.append(["", st.accession or r.get("accession", ""), st.patient_id or "", st.study_date or "",
                        "\\".join(st.modalities), st.study_instance_uid, ""])
    done(target, principal, "cohort.export", source="csv", studies=len(given), rows=len(out))
    return out


ERROR_MAX = 500  # characters of a manual status's error text kept (a note, not a report)


@cohort.command("import-status")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--project", default=None,
              help="Only confirm: the project every row's request must belong to (the project is always "
                   "the request's); a file with a request of another project is refused whole.")
@click.pass_context
def import_status(ctx: click.Context, file: Path, project: str | None) -> None:
    """Record the outcome of manual retrievals: a CSV with request_id (from the manifest), state
    (completed|partial|failed|cancelled), and optionally completed, failed, study_instance_uid, error.
    Steward only, audited (``cohort.import_status``). Each status takes its project from its request;
    for a project that is not identified, the PACS's study UID is keyed and the error text de-identified
    (the analysts' ``retrieval_events`` holds no hospital identifier)."""
    from radstream.access import authorise, done, flush_audit
    from streams import audit
    from streams.auth import AuthError

    settings = settings_of(ctx)
    with file.open(newline="") as fh:
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in csv.DictReader(fh)]
    action = "cohort.import_status"
    try:
        principal, target = authorise(settings, action, ("steward",), rows=len(rows))
    except AuthError as exc:
        raise click.ClickException(f"recording retrieval outcomes needs the steward role: {exc.reason}") \
            from None
    reason = ""
    try:
        known = _requests_by_id(settings, [r.get("request_id", "") for r in rows])
        if project is not None:
            other = sorted({known[rid]["project_id"] for rid in (r.get("request_id", "") for r in rows)
                            if rid in known and known[rid]["project_id"] != project})
            if other:
                reason = f"requests of project(s) {', '.join(other)}, not {project}"
                raise click.ClickException(f"{file.name} has {reason}: nothing recorded")
        records, bad = _status_records(settings, rows, known)
        unconfirmed = _send(settings, records)
    except Exception as exc:  # a refusal or a failure after the role check: on record too
        why = reason or f"failed: {type(exc).__name__}"
        audit.record(target, principal.user, action, allowed=False, reason=why, rows=len(rows),
                     project=project)
        flush_audit(target)
        raise
    done(target, principal, action, rows=len(records) - unconfirmed, rejected=len(bad),
         unconfirmed=unconfirmed, projects=sorted({str(r["project_id"]) for r in records}))
    if unconfirmed:
        raise click.ClickException(f"Kafka did not confirm {unconfirmed} of {len(records)} status event(s)")
    for line in bad:
        click.echo(f"rejected {line}", err=True)
    click.echo(f"recorded {len(records)} status(es), rejected {len(bad)}")
    if bad:
        ctx.exit(1)


def _status_records(settings: Settings, rows: list[dict[str, str]], known: dict[str, dict[str, str]]
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """The status events of the CSV's valid rows, each in its request's project, and the rejected lines.
    A project that is not identified (de-identified, or not registered: the DICOM worker's rule,
    ``_open_ref``) gets research values only, like the worker's events for it."""
    from sinks.dicom.projects import ProjectRegistry
    from sinks.dicom.worker import FINAL

    registry: ProjectRegistry | None = None
    keyed_of: dict[str, bool] = {}
    key = research_key(settings)
    now, out, bad = datetime.now(UTC), [], []
    try:
        for n, r in enumerate(rows, start=2):
            rid, state = r.get("request_id", ""), (r.get("state") or "completed").lower()
            req = known.get(rid)
            if req is None:
                bad.append(f"line {n}: unknown request_id {rid!r}")
                continue
            if state not in FINAL:
                bad.append(f"line {n}: state {state!r} is not one of {', '.join(FINAL)}")
                continue
            try:
                counts = {k: int(r[k]) if r.get(k) else None for k in ("completed", "failed")}
            except ValueError:
                bad.append(f"line {n}: completed/failed must be whole numbers")
                continue
            pid = req["project_id"]
            if pid not in keyed_of:
                registry = registry or ProjectRegistry(settings.kafka, settings.topics)
                found = registry.get(pid)
                keyed_of[pid] = not (found is not None and found.identified)
            given, error = r.get("study_instance_uid") or "", r.get("error") or ""
            if keyed_of[pid]:
                # the manifest's UID is the PACS's (opened by ``cohort export``); the request's own is the
                # research value already
                uid = (keyed_uid(key, given) if given and given != req["study_instance_uid"]
                       else req["study_instance_uid"]) or None
                error = _research_error(settings, key, error, r, req)
            else:
                uid = given or req["study_instance_uid"] or None
            out.append({
                "request_id": rid, "project_id": pid, "state": state, "attempt": 1,
                "accession": req["accession"] or None, "study_instance_uid": uid,
                "study_instance_uids": [uid] if uid else [], "destination_ae": req["destination_ae"],
                "pacs_ae": "manual", **counts, "error": error[:ERROR_MAX] or None, "time": now,
            })
    finally:
        if registry is not None:
            registry.stop()
    return out, bad


def _research_error(settings: Settings, key: bytes, text: str, row: dict[str, str], req: dict[str, str]
                    ) -> str:
    """The radiology team's note for the analysts' table: every DICOM UID in it keyed (as the research
    store names it; the text de-identifier does not know UIDs), the row's own accession and patient id
    replaced by tags, then the report-text de-identifier over the rest (names, MRNs, dates, phones ...)."""
    from processors.textdeid import deidentify
    from radstream.text_deid import text_deid

    text = text[:ERROR_MAX]
    if not text:
        return ""
    own = req["study_instance_uid"]  # the request's research UID: keyed already
    text = UID_IN_TEXT.sub(lambda m: m[0] if m[0] == own else keyed_uid(key, m[0]), text)
    for col, tag in (("accession", "[ACCESSION]"), ("patient_id", "[PATIENT_ID]")):
        value = row.get(col)
        if value and value != req.get(col):
            text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", tag, text)
    deid = text_deid(settings)
    patient = req.get("patient_id") or ""
    if patient.startswith("psn-"):
        return deidentify(text, key=key, patient=patient, options=deid.options).text
    # no patient to shift by: one shift for every such note would be learnt from one of them, and would
    # differ from the patient's images; dates are dropped instead
    out = deidentify(text, key=key, options=deid.options)
    clean = out.text
    for span in sorted(out.spans, key=lambda sp: sp.start, reverse=True):
        if span.type == "DATE":
            clean = clean[:span.start] + "[DATE]" + clean[span.end:]
    return clean


def _send(settings: Settings, records: list[dict[str, Any]]) -> int:
    """Produce the status events; how many Kafka did not confirm (queued or refused)."""
    from streams.producer import Deliveries, make_producer

    sent = Deliveries(make_producer(settings.kafka))
    for rec in records:
        sent.produce(settings.topics.retrieval_status, "retrieval_status", rec["request_id"], rec)
    return sent.flush(30)


def _requests_by_id(settings: Settings, ids: list[str]) -> dict[str, dict[str, str]]:
    wanted = ", ".join(f"'{quote(i)}'" for i in ids if i) or "''"
    q = ("SELECT request_id, project_id, accession, study_instance_uid, destination_ae, patient_id "
         f"FROM retrieval_requests FINAL WHERE action = 'request' AND request_id IN ({wanted})")
    cols = ("request_id", "project_id", "accession", "study_instance_uid", "destination_ae", "patient_id")
    rows = _query(settings, q, "look the requests up in the warehouse")
    return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
