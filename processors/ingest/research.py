"""The research view of a report event: what analysts receive instead of the clinical identifiers.

The NLP agent applies it to the de-identified report and to its findings (the text itself is
``processors.textdeid``'s); the original event stays on the restricted reports topic and in the
restricted ``report_text_original`` table. Keyed with the installation's pseudonym key:

- the patient id -> the research pseudonym (``psn-...``; unchanged if ingest pseudonymised it);
- accession, report id, order and visit numbers, author, source message id -> ``keyed_identifier``
  (``ACC-...``, ...; the kinds are ``research_fields.json``): the de-identified images carry the same
  Accession Number;
- the Study Instance UID -> ``keyed_uid`` (``2.25....``), the de-identified images' Study Instance UID;
- the exam, status and received times and a time-like ``version`` -> moved back by the patient's date
  shift (``date_shift_days``), the days the report text and the images move by, so intervals within a
  patient hold and report columns, text and images agree; so are the findings' NLP run time
  (``processed_time``: against an unshifted one, ``processed_time - received_time`` is the shift) and
  critical-result communication time (``research_findings``);
- ``event_id`` -> an HMAC of the clinical one (``keyed_event_id``): the clinical id is an unkeyed hash of
  the clinical accession and text, which anyone with RIS access could recompute; deterministic, so a
  replay still gives the same id;
- ``study_ref``: the originals needed to retrieve the study (site, accession, study UID, patient id, exam
  date) encrypted with AES-SIV (RFC 5297, ``cryptography``) under a key derived from the pseudonym key.
  Analysts pass it on in retrieval requests; only a holder of the key (the DICOM worker, a steward's
  ``radstream reidentify``) can open it. Deterministic: the same report gives the same reference, so
  re-processing stays idempotent; it reveals equality of studies, as the pseudonyms do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from processors.ingest.pseudonym import date_shift_days, keyed_identifier, keyed_uid, pseudonym

STUDY_REF_PREFIX = "sr1."
_REF_CONTEXT = b"radstream study_ref v1"
_MICROS_2001 = 10**15  # a version above this is a status time in microseconds (else a source sequence)
_DAY_MICROS = 86_400 * 10**6
_EVENT_CONTEXT = "event:"


@cache
def identifier_fields() -> dict[str, str]:
    """ReportFinalized field -> kind of its keyed pseudonym (data file)."""
    data = json.loads((Path(__file__).with_name("research_fields.json")).read_text())
    return dict(data["identifiers"])


@cache
def time_fields() -> tuple[str, ...]:
    data = json.loads((Path(__file__).with_name("research_fields.json")).read_text())
    return tuple(data["times"])


def research_patient(report: Mapping[str, Any], key: bytes) -> str:
    """The patient's research pseudonym (what the dates of this patient are shifted by)."""
    pid = str(report.get("patient_id") or "")
    if report.get("patient_id_is_pseudonym") or not pid:
        return pid
    return pseudonym(key, str(report.get("site") or "default"), pid)


def keyed_event_id(key: bytes, event_id: str) -> str:
    """The research copy's event id: HMAC-SHA256 of the clinical one, 32 hex digits like the original (the
    same shape, so columns and consumers are unchanged)."""
    return hmac.new(key, (_EVENT_CONTEXT + event_id).encode(), hashlib.sha256).hexdigest()[:32]


def research_shift(key: bytes, research: Mapping[str, Any]) -> timedelta:
    """How far the times of a research record (its ``patient_id`` the research pseudonym) move back."""
    return timedelta(days=date_shift_days(key, str(research.get("patient_id") or "")))


def _shifted(value: Any, shift: timedelta) -> Any:
    """A timestamp moved back by ``shift`` (a datetime, or Avro timestamp-micros as an int); None stays."""
    if isinstance(value, datetime):
        return value - shift
    if isinstance(value, int) and not isinstance(value, bool):
        return value - shift // timedelta(microseconds=1)
    return value


def research_report(report: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A ReportFinalized record (text untouched) with keyed identifiers, shifted times and a study_ref."""
    out = dict(report)
    patient = research_patient(report, key)
    if report.get("event_id"):
        out["event_id"] = keyed_event_id(key, str(report["event_id"]))
    out["patient_id"], out["patient_id_is_pseudonym"] = patient, bool(patient)
    for name, kind in identifier_fields().items():
        value = report.get(name)
        if value:
            out[name] = keyed_identifier(key, kind, str(value))
    if report.get("study_instance_uid"):
        out["study_instance_uid"] = keyed_uid(key, str(report["study_instance_uid"]))
    shift = research_shift(key, out)
    for name in time_fields():
        value = report.get(name)
        if isinstance(value, datetime):
            out[name] = value - shift
    version = report.get("version")
    if isinstance(version, int) and version > _MICROS_2001:
        out["version"] = version - shift.days * _DAY_MICROS
    out["study_ref"] = study_ref(key, report)
    return out


def research_findings(record: Mapping[str, Any], research: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A ReportFindings record with the identifiers of its report's research view (``research``, made by
    ``research_report`` with the same ``key``) and its times moved back by the same patient's shift:
    ``processed_time`` (one value for the whole record, so every row of the run keeps one run identity;
    a patient's shift is constant, so the order of a report's runs holds) and the communication time."""
    out = dict(record)
    for name in ("event_id", "accession", "patient_id", "study_ref"):
        out[name] = research.get(name)
    if "report_version" in out:
        out["report_version"] = research["version"]
    shift = research_shift(key, research)
    if out.get("processed_time") is not None:
        out["processed_time"] = _shifted(out["processed_time"], shift)
    comm = out.get("communication")
    if comm and comm.get("time") is not None:
        out["communication"] = {**comm, "time": _shifted(comm["time"], shift)}
    return out


def research_request(key: bytes, site: str, *, accession: str | None = None, study_uid: str | None = None,
                     patient_id: str | None = None, study_date: str | None = None) -> dict[str, Any]:
    """The research values of a retrieval request made by clinical identifiers (a radiology list, a
    steward's ``radstream retrieve --accession``): keyed values and the study reference, so the request
    on its topic and in the warehouse is in the analysts' terms; the DICOM worker opens the reference."""
    when = datetime.strptime(study_date, "%Y%m%d") if study_date else None
    clinical = {"site": site, "accession": accession or "", "study_instance_uid": study_uid,
                "patient_id": patient_id, "observation_time": when}
    patient = pseudonym(key, site, patient_id) if patient_id else None
    return {"accession": keyed_identifier(key, "accession", accession) if accession else None,
            "study_instance_uid": keyed_uid(key, study_uid) if study_uid else None,
            "patient_id": patient, "study_date": shifted_study_date(key, patient, study_date),
            "study_ref": study_ref(key, clinical)}


def shifted_study_date(key: bytes, patient: str | None, study_date: str | None) -> str | None:
    """A real exam date (YYYYMMDD) moved back by the patient's (research pseudonym's) date shift, as every
    date of that patient moves; None without a patient: a real date must not go out in clear."""
    if not study_date or not patient:
        return None
    when = datetime.strptime(study_date, "%Y%m%d") - timedelta(days=date_shift_days(key, patient))
    return when.strftime("%Y%m%d")


@dataclass(frozen=True)
class StudyRef:
    """What a ``study_ref`` opens to: the clinical identifiers of one report's study."""

    site: str
    accession: str
    study_instance_uid: str | None
    patient_id: str | None
    study_date: str | None  # YYYYMMDD, the exam's (unshifted)


class StudyRefError(ValueError):
    """Not a study reference of this installation (damaged, or made with another key)."""


@cache
def _siv(key: bytes) -> AESSIV:
    derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_REF_CONTEXT).derive(key)
    return AESSIV(derived)


def study_ref(key: bytes, report: Mapping[str, Any]) -> str:
    """The encrypted retrieval reference of an original ReportFinalized record."""
    when = report.get("observation_time") or report.get("status_time")
    plain = {
        "s": str(report.get("site") or "default"), "a": str(report.get("accession") or ""),
        "u": report.get("study_instance_uid") or None,
        "p": None if report.get("patient_id_is_pseudonym") else (report.get("patient_id") or None),
        "d": when.strftime("%Y%m%d") if isinstance(when, datetime) else None,
    }
    data = json.dumps(plain, separators=(",", ":"), sort_keys=True).encode()
    sealed = _siv(key).encrypt(data, [_REF_CONTEXT])
    return STUDY_REF_PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def open_study_ref(key: bytes, ref: str) -> StudyRef:
    """The identifiers inside ``ref``; ``StudyRefError`` if it is not one of this key's references."""
    if not ref.startswith(STUDY_REF_PREFIX):
        raise StudyRefError(f"not a study reference (they start with {STUDY_REF_PREFIX!r})")
    body = ref[len(STUDY_REF_PREFIX):]
    try:
        sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plain = json.loads(_siv(key).decrypt(sealed, [_REF_CONTEXT]))
    except (InvalidTag, ValueError) as exc:
        raise StudyRefError("the study reference does not open with this installation's key "
                            "(damaged, or made elsewhere)") from exc
    return StudyRef(site=plain["s"], accession=plain["a"], study_instance_uid=plain.get("u"),
                    patient_id=plain.get("p"), study_date=plain.get("d"))


def looks_keyed(value: str | None) -> bool:
    """True for a value that is a research pseudonym by its form (``psn-``, ``ACC-``, a study reference).
    A keyed UID cannot be told from a clinical one (many devices make ``2.25.`` UIDs from UUIDs): whether
    a UID is a research value is decided by where it comes from, never by its form."""
    if not value:
        return False
    return value.startswith(("psn-", "ACC-", STUDY_REF_PREFIX))
