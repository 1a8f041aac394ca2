"""PS3.15 Table E.1-1 compiled once into a tag -> action dict (the one place that reads the library's table).

The Basic Profile column is dicom-anonymizer's (KitwareMedical) table of the 2026c standard
(``dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c``): its lists of tags per action group.
We use its data, not its walk (it applies each action at the top level only, draws random UIDs, has no
profile options): our walk in ``sinks.dicom.deid`` applies the compiled table at every nesting level.

Our additions are data files beside this module:

- ``options.tsv``: the option columns of E.1-1 that we implement (which attributes an option keeps or
  cleans);
- ``additions.tsv``: where we differ from the Basic Profile column, with the reason on each row;
- ``unlisted.tsv``: rules by VR for the attributes of pydicom's dictionary that none of the above lists
  (E.1.1 would keep them as received: UIDs -> keyed unless well-known, person names -> dummy, URLs and
  free text (ST, LT, UT, UC) -> removed), and for public attributes the dictionary does not know (removed);
- ``unlisted_text.tsv``: the exceptions to the removal of unlisted free text, each with its reason: codes
  and technical values kept (K), attributes a module requires dummied (D) or emptied (Z);
- without the Retain Longitudinal Temporal Information with Modified Dates option, every date, date-time
  and time attribute of pydicom's dictionary that the table does not list is removed (``X``): the file
  says LongitudinalTemporalInformationModified REMOVED, and E.1-1 lists only the dates it knew of
  (StudyUpdateDateTime, ExpiryDate and 13 others are not in it). With the option, the walk shifts the
  unlisted DA and DT values as it does the listed ones (times of day are kept).

Actions after compiling: ``X`` remove, ``Z`` empty, ``D`` dummy value, ``U`` keyed UID, ``K`` keep (a
sequence's items are still walked), ``C`` clean text (``vocabulary.txt``), ``S`` shift a date (keep a time),
``P`` the patient's research pseudonym, ``A`` the keyed accession pseudonym, ``V`` keyed UID unless the
value is a well-known UID (``unlisted.tsv``).

Composite actions take the choice that keeps any IOD conformant, as dicom-anonymizer does: X/Z -> Z,
X/D, X/Z/D and Z/D -> D, X/Z/U* -> K (the sequence is kept and the table applied to its items, so the
UIDs in it are replaced).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as library
from pydicom.datadict import DicomDictionary, dictionary_VR
from pydicom.uid import UID_dictionary

HERE = Path(__file__).parent
TABLE_VERSION = "2026c"

# dicom-anonymizer's action groups -> our action (composites resolved as its walk does)
GROUPS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "D", "X_Z_TAGS": "Z",
    "X_D_TAGS": "D", "X_Z_D_TAGS": "D", "X_Z_U_STAR_TAGS": "K",
}
OPTIONS = ("uids", "device_identity", "patient_characteristics", "modified_dates", "clean_descriptors")
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})  # unlisted ones: removed unless unlisted_text.tsv says
DICOM_ROOT = "1.2.840.10008."  # PS3.5 9.1: UIDs defined by the standard


@dataclass(frozen=True)
class Mask:
    """A repeating-group row: ``tag & mask == value`` (e.g. curves 50xx,xxxx)."""

    value: int
    mask: int
    action: str


@dataclass(frozen=True)
class Compiled:
    actions: dict[int, str]  # tag -> action for one combination of options
    masks: tuple[Mask, ...]
    unknown: str = "X"  # a public attribute pydicom's dictionary does not know (``unlisted.tsv``)


def well_known_uid(uid: str) -> bool:
    """A UID defined by DICOM (SOP classes, transfer syntaxes, coding schemes, well-known frames of
    reference: pydicom's UID dictionary, all of it under the DICOM root): the same in every hospital, so
    identifying nobody (``unlisted.tsv``'s V)."""
    return uid.startswith(DICOM_ROOT) or uid in UID_dictionary


def library_table() -> tuple[dict[int, str], tuple[Mask, ...]]:
    """The library's Basic Profile column: single tags -> its group name, and the repeating-group rows."""
    tags: dict[int, str] = {}
    masks: list[Mask] = []
    for group in GROUPS:
        for row in getattr(library, group):
            if len(row) == 2:
                tags[(row[0] << 16) | row[1]] = group
            else:  # (group, element, group mask, element mask)
                g, e, gm, em = row
                masks.append(Mask((g << 16) | e, (gm << 16) | em, group))
    return tags, tuple(masks)


def _rows(name: str) -> list[dict[str, str]]:
    with (HERE / name).open() as fh:
        return list(csv.DictReader((ln for ln in fh if not ln.startswith("#")), delimiter="\t"))


def _pattern(text: str) -> tuple[int, int]:
    """``6000xxxx`` -> (value, mask): ``x`` matches any hex digit."""
    value = int(text.replace("x", "0"), 16)
    mask = int("".join("0" if c == "x" else "F" for c in text), 16)
    return value, mask


@cache
def option_rows() -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {o: {} for o in OPTIONS}
    for row in _rows("options.tsv"):
        out[row["option"]][int(row["tag"], 16)] = row["action"]
    return out


@cache
def unlisted_text() -> dict[int, str]:
    """``unlisted_text.tsv``: tag -> action (K, D or Z) for the unlisted free-text attributes that are not
    removed."""
    return {int(row["tag"], 16): row["action"] for row in _rows("unlisted_text.tsv")}


@cache
def vr_of(tag: int) -> str:
    """The dictionary VR (first of an ambiguous one); '' for a tag pydicom does not know."""
    return _vr_of(int(tag))  # cached by plain int: a BaseTag key compares with Python code


@cache
def _vr_of(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return ""
    return vr.split(" or ")[0]


@cache
def compile_table(options: frozenset[str]) -> Compiled:
    """The action of every listed tag with these options (names from ``OPTIONS``) applied."""
    tags, lib_masks = library_table()
    actions = {tag: GROUPS[group] for tag, group in tags.items()}
    masks = [Mask(m.value, m.mask, GROUPS[m.action]) for m in lib_masks]
    rows = option_rows()
    for option in OPTIONS:  # later options cannot undo a K of an earlier one (K wins, C next)
        if option not in options:
            continue
        for tag, act in rows[option].items():
            vr = vr_of(tag)
            if act == "C" and option == "modified_dates":
                act = "S" if vr in ("DA", "DT", "TM") else actions[tag]
            elif act == "C" and vr not in TEXT_VRS:
                continue  # a sequence or binary attribute: the Basic Profile action stays (stricter)
            if actions.get(tag) != "K":
                actions[tag] = act
    for row in _rows("additions.tsv"):
        if "x" in row["tag"]:
            value, mask = _pattern(row["tag"])
            masks.insert(0, Mask(value, mask, row["action"]))
        else:
            actions[int(row["tag"], 16)] = row["action"]
    if "modified_dates" not in options:
        for tag in unlisted_temporal(frozenset(actions), tuple(masks)):
            actions[tag] = "X"
    by_vr = {row["vr"]: row["action"] for row in _rows("unlisted.tsv")}
    if "uids" in options:  # Retain UIDs: unlisted UIDs are kept as the listed ones are
        by_vr.pop("UI", None)
    text = unlisted_text()
    for tag, vr in unlisted(frozenset(actions), tuple(masks)):
        if tag in text and vr in FREE_TEXT_VRS:  # an exception to the free-text rule (its row says why)
            actions[tag] = text[tag]
        elif vr in by_vr:
            actions[tag] = by_vr[vr]
    return Compiled(actions, tuple(masks), by_vr.get("unknown", "X"))


def unlisted(listed: frozenset[int], masks: tuple[Mask, ...]) -> tuple[tuple[int, str], ...]:
    """(tag, VR) of the attributes of pydicom's dictionary that neither ``listed`` nor ``masks`` cover
    (command group excepted: never in a stored instance)."""
    out = []
    for tag, entry in DicomDictionary.items():
        if tag >> 16 == 0 or tag in listed or any(tag & m.mask == m.value for m in masks):
            continue
        out.append((tag, entry[0].split(" or ")[0]))
    return tuple(sorted(out))


def unlisted_temporal(listed: frozenset[int], masks: tuple[Mask, ...]) -> tuple[int, ...]:
    """The DA, DT and TM attributes of pydicom's dictionary that neither ``listed`` nor ``masks`` cover
    (File Meta Information excepted): kept by E.1.1's rule for unlisted attributes, they would leave
    dates in a file that says its temporal information was removed."""
    out = []
    for tag, entry in DicomDictionary.items():
        if entry[0].split(" or ")[0] not in ("DA", "DT", "TM") or tag >> 16 == 0x0002 or tag in listed:
            continue
        if not any(tag & m.mask == m.value for m in masks):
            out.append(tag)
    return tuple(sorted(out))
