"""``radstream cohort retrieve|export``: a cohort of accessions -> retrieval requests.

First part of issue 6's cohort commands: ``retrieve`` (from a CSV or a SQL query on the warehouse,
with the allow-list, the project, the requester, a dry run that C-FINDs the expected volume, and
skipping accessions already completed for the same project and destination) and ``export`` (the
manifest for teams that retrieve by hand). Standing cohorts (``watch``) and ``import-status`` are not
built yet.
"""

from __future__ import annotations

import csv
import getpass
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from radstream.cli import settings_of
from radstream.config import Settings
from radstream.warehouse import query_rows, quote


def _rows_from_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in csv.DictReader(fh)]
    if rows and not ({"accession", "study_instance_uid", "patient_id"} & set(rows[0])):
        raise click.UsageError("the CSV needs a column accession, study_instance_uid or "
                               "patient_id (+ study_date)")
    return rows


def _rows_from_sql(settings: Settings, query: str) -> list[dict[str, str]]:
    rows = query_rows(settings, query)
    return [{"accession": r[0]} for r in rows if r and r[0]]


def _completed(settings: Settings, project: str, destination: str) -> set[str] | None:
    """Accessions already completed for this project and destination (None: warehouse not reachable)."""
    q = ("SELECT DISTINCT accession FROM retrieval_events WHERE state = 'completed' "
         f"AND project_id = '{quote(project)}' AND destination_ae = '{quote(destination)}'")
    try:
        return {r[0] for r in query_rows(settings, q) if r}
    except (OSError, ValueError, click.ClickException) as exc:
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
@click.option("--sql", "query", help="Warehouse query whose first column is the accession.")
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
    """Request retrieval of every study of a cohort."""
    settings = settings_of(ctx)
    if bool(csv_file) == bool(query):
        raise click.UsageError("give exactly one of --csv and --sql")
    if destination not in settings.research.allowed_destinations:
        raise click.UsageError(f"destination {destination!r} is not on the allow-list "
                               f"{list(settings.research.allowed_destinations)}")
    rows = _rows_from_csv(csv_file) if csv_file else _rows_from_sql(settings, str(query))
    done = _completed(settings, project, destination) or set()
    todo = [r for r in rows if not (r.get("accession") and r["accession"] in done)]
    skipped = len(rows) - len(todo)
    if skipped:
        click.echo(f"skipping {skipped} accession(s) already completed for {project} -> {destination}")
    if dry_run:
        _dry_run(settings, todo)
        return
    from streams.producer import make_producer, produce

    producer = make_producer(settings)
    who = requester or getpass.getuser()
    now = datetime.now(UTC)
    for r in todo:
        rid = str(uuid.uuid4())
        record: dict[str, Any] = {
            "request_id": rid, "action": "request", "project_id": project, "requester": who,
            "accession": r.get("accession") or None,
            "study_instance_uid": r.get("study_instance_uid") or None,
            "patient_id": r.get("patient_id") or None, "study_date": r.get("study_date") or None,
            "destination_ae": destination, "priority": priority, "not_before": _when(not_before),
            "not_after": _when(not_after), "source": "cohort", "requested_time": now,
        }
        produce(producer, settings.topics.retrieval_requests, "retrieval_requested", rid, record)
    left = producer.flush(30)
    if left:
        raise click.ClickException(f"{left} requests not confirmed by Kafka")
    click.echo(f"requested {len(todo)} retrieval(s) for project {project} -> {destination} (requester {who})")


def _dry_run(settings: Settings, rows: list[dict[str, str]]) -> None:
    from sinks.dicom.find import DicomError, Pacs, resolve

    pacs = Pacs.from_settings(settings)
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


@cohort.command("export")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Cohort CSV (column accession, or patient_id + study_date).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: stdout.")
@click.pass_context
def export(ctx: click.Context, csv_file: Path, out: Path | None) -> None:
    """Manifest for manual retrieval: accession, patient id, study date, modality, study UID (from C-FIND)."""
    from sinks.dicom.find import Pacs, resolve

    pacs = Pacs.from_settings(settings_of(ctx))
    fh = out.open("w", newline="") if out else sys.stdout
    try:
        w = csv.writer(fh)
        w.writerow(["accession", "patient_id", "study_date", "modality", "study_instance_uid"])
        for r in _rows_from_csv(csv_file):
            found = resolve(pacs, accession=r.get("accession") or None,
                            patient_id=r.get("patient_id") or None, study_date=r.get("study_date") or None)
            if not found:
                w.writerow([r.get("accession", ""), r.get("patient_id", ""), r.get("study_date", ""), "", ""])
            for s in found:
                w.writerow([s.accession or r.get("accession", ""), s.patient_id or "", s.study_date or "",
                            "\\".join(s.modalities), s.study_instance_uid])
    finally:
        if out:
            fh.close()
