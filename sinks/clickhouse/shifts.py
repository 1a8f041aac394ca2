"""The analysts' retrieval times, moved back by the days of the request's patient (ddl/034).

Every other time an analyst sees of a patient (a report's received, exam and status times, the NLP run,
the dates in the text and in the images) is moved back by that patient's days (1..365, keyed on the
research pseudonym: ``processors.ingest.pseudonym.date_shift_days``). A retrieval time left real beside
them gives the shift away: a standing cohort asks seconds after the report arrives. So the sink moves
the times of ``retrieval_requests`` (requested_time, not_before, not_after), ``retrieval_events`` and
``received_instances`` back by the request's (the instance's) patient's days, the same days the
report moved by, so the intervals between a report and its retrieval hold. The stewards' tables
(``retrieval_events_identified``, ``received_instances_identified``, ``audit_log``) keep real times, and
``retrieval_shifts`` (steward-only) keeps each request's days.

A request that names no patient (by research accession alone, or a reference of a report whose patient
id was a pseudonym already) has nothing to be consistent with: its times move to 1970-01-01 (time of day
and intervals within the request kept), never a real date. A status event whose request the sink has not
seen (it comes before its request, a rare order) is moved the same way on its own time.

This needs the installation's key (the worker's process holds it); a sink without one hides every
retrieval time that way.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from processors.ingest.pseudonym import date_shift_days, pseudonym
from processors.ingest.research import STUDY_REF_PREFIX, StudyRefError, open_study_ref
from sinks.clickhouse.rows import COLUMNS, Rows

log = logging.getLogger("radstream.sink")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC).date()
_CACHE = 100_000  # request ids whose days this sink remembers (a status event looks its request's up)

_REQUEST_TIMES = tuple(COLUMNS["retrieval_requests"].index(c) for c in ("not_before", "not_after",
                                                                         "requested_time"))
_REQUESTED = COLUMNS["retrieval_requests"].index("requested_time")
_EVENT_TIME = COLUMNS["retrieval_events"].index("time")
_EVENT_ERROR = COLUMNS["retrieval_events"].index("error")
# a date in a status event's text: the DICOM worker writes real times there ("not before <ISO time>",
# "PACS window opens <ISO time>", "not after <ISO time> passed ...")
_DATE_IN_TEXT = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_INSTANCE_TIME = COLUMNS["received_instances"].index("time")
_INSTANCE_PATIENT = COLUMNS["received_instances"].index("patient_id")


def hidden_days(when: datetime) -> int:
    """The days that move ``when`` to 1970-01-01 (for a time with no patient to be consistent with)."""
    return (when.astimezone(UTC).date() - _EPOCH).days


def hidden_time_sql(expr: str) -> str:
    """``hidden_days`` in SQL, of the DateTime64 expression ``expr``."""
    return f"dateDiff('day', toDate('1970-01-01'), toDate({expr}, 'UTC'))"


def _research_patient(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if text.startswith("psn-") else ""


def request_patient(key: bytes, rec: Mapping[str, Any]) -> str:
    """The research pseudonym of a request's patient: the one it names, else the one inside its study
    reference (opened here, never shown); '' when it names none."""
    pid = _research_patient(rec.get("patient_id"))
    ref = str(rec.get("study_ref") or "")
    if pid or not ref.startswith(STUDY_REF_PREFIX):
        return pid
    try:
        opened = open_study_ref(key, ref)
    except StudyRefError:
        return ""  # not this installation's: the DICOM worker refuses the request
    return pseudonym(key, opened.site, opened.patient_id) if opened.patient_id else ""


def _moved(value: Any, days: int) -> Any:
    return value - timedelta(days=days) if isinstance(value, datetime) else value


def moved_text(text: str, days: int) -> str:
    """``text`` with every date in it (YYYY-MM-DD, an ISO time's too) moved back by ``days``."""
    def one(m: re.Match[str]) -> str:
        try:
            day = datetime(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return m[0]  # not a date
        return (day - timedelta(days=days)).strftime("%Y-%m-%d")
    return _DATE_IN_TEXT.sub(one, text)


class Shifts:
    """Moves the analysts' retrieval rows of one sink; remembers each request's days."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._days: OrderedDict[str, int] = OrderedDict()
        self._patients_written: set[str] = set()

    def _remember(self, request_id: str, days: int) -> None:
        self._days[request_id] = days
        self._days.move_to_end(request_id)
        while len(self._days) > _CACHE:
            self._days.popitem(last=False)

    def lookup(self, client: Client, request_ids: Iterable[str]) -> None:
        """Learn the days of requests written before (another batch, another sink, a restart)."""
        wanted = sorted({r for r in request_ids if r and r not in self._days})
        if not wanted:
            return
        rows = client.query("SELECT request_id, any(shift_days) FROM retrieval_shifts "
                            "WHERE request_id IN %(ids)s GROUP BY request_id",
                            parameters={"ids": wanted}).result_rows
        for rid, days in rows:
            self._remember(str(rid), int(days))

    def request(self, rec: Mapping[str, Any], rows: Rows) -> Rows:
        """A request (or cancel): its analysts' times moved, and its days for stewards (a request's first
        record decides them: a cancel moves by its request's days)."""
        rid = str(rec["request_id"])
        real = rows["retrieval_requests"][0][_REQUESTED]
        days = self._days.get(rid)
        patient = ""
        if days is None:
            patient = request_patient(self.key, rec) if self.key is not None else ""
            days = (date_shift_days(self.key, patient) if patient and self.key is not None
                    else hidden_days(real))
            self._remember(rid, days)
        moved = [[_moved(v, days) if i in _REQUEST_TIMES else v for i, v in enumerate(row)]
                 for row in rows["retrieval_requests"]]
        own = [[rid, patient, days, real]] if (rec.get("action") or "request") == "request" else []
        return {**rows, "retrieval_requests": moved, "retrieval_shifts": own}

    def status(self, rec: Mapping[str, Any], rows: Rows) -> Rows:
        """A status event: the analysts' row moved by its request's days (``lookup`` first), the dates in
        its ``error`` text too (the stewards' row keeps them)."""
        days = self._days.get(str(rec["request_id"]))
        out = []
        for row in rows.get("retrieval_events", []):
            when = row[_EVENT_TIME]
            if days is None:
                log.warning("status event of request %s before its request: its time is hidden (1970)",
                            rec["request_id"])
            moved = hidden_days(when) if days is None else days
            new = [_moved(v, moved) if i == _EVENT_TIME else v for i, v in enumerate(row)]
            new[_EVENT_ERROR] = moved_text(str(new[_EVENT_ERROR]), moved)  # its real dates too
            out.append(new)
        return {**rows, "retrieval_events": out}

    def instance(self, rows: Rows) -> Rows:
        """A received instance: the analysts' row moved by its patient's days (the de-identified
        instance's PatientID is the research pseudonym), and the patient's days for stewards (the
        stewards' row, and one held back until its project is known, keep the real time)."""
        out: list[list[Any]] = []
        own: list[list[Any]] = []
        for row in rows.get("received_instances", []):
            patient = _research_patient(row[_INSTANCE_PATIENT])
            when = row[_INSTANCE_TIME]
            days = (date_shift_days(self.key, patient) if patient and self.key is not None
                    else hidden_days(when))
            out.append([*row[:_INSTANCE_TIME], _moved(when, days), *row[_INSTANCE_TIME + 1:]])
            if patient and patient not in self._patients_written:
                own.append(["", patient, days, None])
        # a held-back instance (stewards' table) is moved when released: its patient's days are needed
        for row in rows.get("received_instances_identified", []):
            patient = _research_patient(row[_INSTANCE_PATIENT])
            if patient and self.key is not None and patient not in self._patients_written:
                own.append(["", patient, date_shift_days(self.key, patient), None])
        self._patients_written.update(str(r[1]) for r in own)
        return {**rows, "received_instances": out, "retrieval_shifts": own}
