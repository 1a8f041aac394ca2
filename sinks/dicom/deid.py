"""De-identification per DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile,
with the Retain Longitudinal Temporal Information with Modified Dates option.

The attribute actions are data (``basic_profile.tsv``): X remove, Z empty, U remap UID, P pseudonym.
Everything keyed with one secret (HMAC-SHA256), so the same input gives the same output across
instances, series and runs, and nobody without the key can reverse or recompute it:

- UIDs -> ``2.25.<128-bit integer>`` of HMAC(key, "uid:" + uid);
- patient id and patient name -> the patient's research pseudonym, the same ``psn-...`` value the
  warehouse carries when ingest pseudonymisation uses this key and site (images join to findings);
- accession -> ``pseudonym(key, "accession", value)`` (``ACC-...``, fits SH);
- every DA/DT value left -> shifted by a per-patient number of days (1..365 back), keyed on the
  patient's pseudonym (``processors.ingest.pseudonym.date_shift_days``, shared with report text), so
  intervals within a patient are kept and image and text dates agree;
- private attributes removed; PatientIdentityRemoved, DeidentificationMethod(CodeSequence) set.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from processors.ingest.pseudonym import date_shift_days
from processors.ingest.pseudonym import pseudonym as patient_pseudonym

PROFILE_FILE = Path(__file__).with_name("basic_profile.tsv")
METHOD = "PS3.15 E.1 Basic Profile, Modified Dates Option (radstream)"  # LO: at most 64 chars


@dataclass(frozen=True)
class DeidOptions:
    """A project's PS3.15 Annex E profile options (each one is named in DeidentificationMethodCodeSequence
    only when it is applied). Defaults: the Basic Profile with Retain Longitudinal Temporal Information
    with Modified Dates."""

    retain_modified_dates: bool = True  # 113107
    retain_patient_characteristics: bool = False  # 113108
    retain_device_identity: bool = False  # 113109
    retain_uids: bool = False  # 113110
    clean_descriptors: bool = False  # 113105
    private_safe_list: tuple[str, ...] = ()  # private attributes kept; empty = all removed


class DeidError(Exception):
    """An instance the profile could not be applied to (it is quarantined, never stored as clean)."""


@cache
def profile() -> dict[str, str]:
    with PROFILE_FILE.open() as fh:
        lines = [ln for ln in fh if not ln.startswith("#")]
    return {row["keyword"]: row["action"] for row in csv.DictReader(lines, delimiter="\t")}


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def remap_uid(key: bytes, uid: str) -> str:
    return "2.25." + str(int.from_bytes(_mac(key, "uid:" + uid)[:16], "big"))


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """Keyed pseudonym, e.g. ``ACC-3F2A...`` (16 hex digits; fits SH and LO)."""
    prefix = {"accession": "ACC", "patient": "PAT"}.get(kind, kind[:3].upper())
    return f"{prefix}-{_mac(key, kind + ':' + value).hex()[:12].upper()}"


class Deidentifier:
    def __init__(self, key: bytes, site: str = "default") -> None:
        if not key:
            raise ValueError("de-identification needs a secret key (ingest.pseudonym_key or _file)")
        self.key = key
        self.site = site
        self.actions = profile()

    def apply(self, ds: Dataset, project_id: str = "", options: DeidOptions = DeidOptions()) -> Dataset:
        """De-identify ``ds`` in place (and its file meta) and return it."""
        patient_id = str(ds.get("PatientID", ""))
        shift = timedelta(days=date_shift_days(self.key, patient_pseudonym(self.key, self.site, patient_id)))
        ds.remove_private_tags()
        self._walk(ds, shift, patient_id)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = remap_uid(self.key, str(meta.MediaStorageSOPInstanceUID))
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        ds.DeidentificationMethod = METHOD
        codes = []
        for value, meaning in (("113100", "Basic Application Confidentiality Profile"),
                               ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")):
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        if project_id:
            ds.ClinicalTrialProtocolID = project_id
        return ds

    def _walk(self, ds: Dataset, shift: timedelta, patient_id: str) -> None:
        for elem in list(ds):
            action = self.actions.get(elem.keyword)
            if action == "X":
                del ds[elem.tag]
                continue
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, shift, patient_id)
                continue
            if action == "Z":
                elem.value = ""
            elif action == "U" and elem.value:
                elem.value = _map_values(elem, partial(remap_uid, self.key))
            elif action == "P" and elem.value:
                if elem.keyword == "AccessionNumber":
                    elem.value = pseudonym(self.key, "accession", str(elem.value))
                else:
                    elem.value = patient_pseudonym(self.key, self.site, patient_id)
            elif elem.VR in ("DA", "DT") and elem.value:
                elem.value = _map_values(elem, partial(_shift, shift=shift, vr=str(elem.VR)))


def _map_values(elem: DataElement, fn: Callable[[str], str]) -> str | list[str]:
    if elem.VM > 1:
        return [fn(str(v)) for v in elem.value]
    return fn(str(elem.value))


def _shift(value: str, shift: timedelta, vr: str) -> str:
    value = value.strip()
    try:
        if vr == "DA":
            return (datetime.strptime(value[:8], "%Y%m%d") - shift).strftime("%Y%m%d")
        head, rest = value[:8], value[8:]
        return (datetime.strptime(head, "%Y%m%d") - shift).strftime("%Y%m%d") + rest
    except ValueError:
        return ""  # not a valid date: remove its value rather than keep it
