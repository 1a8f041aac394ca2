"""Quarantine, as RSNA CTP does it: instances of a de-identified project that cannot be made safe are
kept out of the project tree, as received, with the reason.

Reasons (``reason_for``; the SOP classes and modalities are data: ``quarantine_rules.tsv``):

- ``BurnedInAnnotation`` (0028,0301) is YES: identifying text in the pixels, which the attribute-level
  profile cannot remove;
- a burned-in-risk SOP class, modality or Image Type value (secondary capture, ultrasound, photographs,
  scanned documents, screen saves, slide labels, overviews ...), unless the project allows them
  (``allow_burned_in_risk``); Image Type SECONDARY alone is not one (a CT's or MR's reformats are
  DERIVED\\SECONDARY and are stored); every value of a multi-valued Modality or Image Type counts, compared
  without padding and case (PS3.5 allows leading spaces in a CS value);
- an encapsulated document (PDF, CDA): free text the profile does not read;
- a Structured Report with free text (a TEXT content item anywhere in its content tree);
- de-identification failed (``sinks.dicom.deid.DeidError``, or any other error of the profile).

The quarantine directory (``research.quarantine_dir``, default ``<state_dir>/quarantine``) is outside the
project tree and in the clinical zone: files are stored as received (identified), owner-only
(directories 0700, files 0600), as ``<project>/<study>/<sop>.dcm`` with a ``<sop>.json`` beside it (the
reason, the request, when). ``radstream dicom quarantine list|release|purge`` acts on it; every action
is an event on the restricted quarantine topic, kept in the warehouse's ``quarantine`` table.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from pydicom.dataset import Dataset

from sinks.dicom.paths import check_project_id, check_uid, durable_write, fsync_dir, inside

RULES_FILE = Path(__file__).with_name("quarantine_rules.tsv")
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


@dataclass(frozen=True)
class Rules:
    burned_in_sop_classes: dict[str, str]  # UID -> name
    burned_in_modalities: dict[str, str]
    document_sop_classes: dict[str, str]
    burned_in_image_types: dict[str, str]  # a value of Image Type (0008,0008), any position


@cache
def rules() -> Rules:
    with RULES_FILE.open() as fh:
        rows = list(csv.DictReader((ln for ln in fh if not ln.startswith("#")), delimiter="\t"))
    by: dict[str, dict[str, str]] = {"burned_in_sop_class": {}, "burned_in_modality": {},
                                      "document_sop_class": {}, "burned_in_image_type": {}}
    for row in rows:
        value = row["value"].strip()
        by[row["kind"]][value if row["kind"].endswith("sop_class") else value.upper()] = row["name"].strip()
    return Rules(by["burned_in_sop_class"], by["burned_in_modality"], by["document_sop_class"],
                 by["burned_in_image_type"])


def _values(text: str) -> list[str]:
    """The values of a CS attribute as read (backslash-separated), without padding, upper case."""
    return [v for v in (part.strip(" \0").upper() for part in text.split("\\")) if v]


def _has_text_item(items: object) -> bool:
    for item in items or []:  # type: ignore[attr-defined]
        if str(item.get("ValueType", "")).upper() == "TEXT" or "TextValue" in item:
            return True
        if "ContentSequence" in item and _has_text_item(item.ContentSequence):
            return True
    return False


def reason_for(ds: Dataset, allow_burned_in_risk: bool = False, sop_class: str = "") -> str | None:
    """Why ``ds`` must be quarantined in a de-identified project, or None."""
    from sinks.dicom.deid import text  # every value, from the undecoded bytes where possible

    return reason_of(text(ds, 0x00080016) or sop_class, text(ds, 0x00080060), text(ds, 0x00280301),
                     "EncapsulatedDocument" in ds, lambda: _has_text_item(ds.get("ContentSequence")),
                     allow_burned_in_risk, text(ds, 0x00080008))


def reason_of(sop_class: str, modality: str, burned_in: str, encapsulated_document: bool,
              sr_free_text: Callable[[], bool], allow_burned_in_risk: bool = False,
              image_type: str = "") -> str | None:
    """``reason_for`` from the values it reads (``sr_free_text`` is asked for a Structured Report only).
    ``modality``, ``burned_in`` and ``image_type``: every value as read, separated by backslashes; any
    value that matches a rule counts."""
    r = rules()
    sop_class = sop_class.strip(" \0")
    if "YES" in _values(burned_in):
        return "BurnedInAnnotation=YES"
    if sop_class in r.document_sop_classes or encapsulated_document:
        return f"encapsulated document ({r.document_sop_classes.get(sop_class, 'EncapsulatedDocument')})"
    if sop_class.startswith(SR_PREFIX) and sr_free_text():
        return "structured report with free text (TEXT content item)"
    if not allow_burned_in_risk:
        if sop_class in r.burned_in_sop_classes:
            return f"burned-in risk: {r.burned_in_sop_classes[sop_class]}"
        for value in _values(modality):
            if value in r.burned_in_modalities:
                return f"burned-in risk: modality {value} ({r.burned_in_modalities[value]})"
        image_types = set(_values(image_type))
        for value, name in r.burned_in_image_types.items():  # in the file's order: the specific first
            if value in image_types:
                return f"burned-in risk: image type {value} ({name})"
    return None


@dataclass(frozen=True)
class Entry:
    """One quarantined instance (the ``<sop>.json`` beside its file); UIDs as received."""

    project_id: str
    request_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    reason: str
    calling_ae: str
    time: float
    size_bytes: int = 0

    @property
    def key(self) -> str:
        """How the CLI names it: ``project/sop``."""
        return f"{self.project_id}/{self.sop_instance_uid}"


class Quarantine:
    def __init__(self, root: Path | str) -> None:
        self.root = str(root)

    def _dir(self, project_id: str, study_uid: str) -> str:
        return inside(self.root, check_project_id(project_id), check_uid(study_uid, "Study Instance UID"))

    def paths(self, entry: Entry) -> tuple[str, str]:
        """(the instance file, its description)."""
        d = self._dir(entry.project_id, entry.study_instance_uid)
        sop = check_uid(entry.sop_instance_uid, "SOP Instance UID")
        return os.path.join(d, f"{sop}.dcm"), os.path.join(d, f"{sop}.json")

    def put(self, entry: Entry, data: bytes) -> str:
        """Store ``data`` as received, durably (temp, fsync, rename, fsync dir), owner-only; its path."""
        d = self._dir(entry.project_id, entry.study_instance_uid)
        _private_dirs(self.root, d)
        dcm, desc = self.paths(entry)
        durable_write(desc, json.dumps(asdict(entry)).encode())
        durable_write(dcm, data)
        return dcm

    def entries(self) -> Iterator[Entry]:
        root = Path(self.root)
        if not root.is_dir():
            return
        for desc in sorted(root.glob("*/*/*.json")):
            try:
                entry = Entry(**json.loads(desc.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if desc.with_suffix(".dcm").exists():
                yield entry

    def find(self, key: str) -> Entry | None:
        """The entry named ``project/sop`` (or just the SOP Instance UID, when unique)."""
        hits = [e for e in self.entries() if key in (e.key, e.sop_instance_uid)]
        return hits[0] if len(hits) == 1 else None

    def read(self, entry: Entry) -> bytes:
        return Path(self.paths(entry)[0]).read_bytes()

    def remove(self, entry: Entry) -> None:
        dcm, desc = self.paths(entry)
        for path in (dcm, desc):
            Path(path).unlink(missing_ok=True)
        fsync_dir(os.path.dirname(dcm))


def _private_dirs(root: str, d: str) -> None:
    """Make ``root`` and every directory from it down to ``d`` owner-only (0700 whatever the umask: the
    ``mode`` of ``os.makedirs`` reaches the last directory only, and through the umask), each new one
    durable in its parent."""
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)  # the root's parents: not ours
    rel = Path(os.path.relpath(d, root)).parts
    made = []
    for path in [root, *(os.path.join(root, *rel[:i + 1]) for i in range(len(rel)))]:
        try:
            os.mkdir(path, 0o700)
            made.append(path)
        except FileExistsError:
            pass
        os.chmod(path, 0o700)
    for path in made:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


