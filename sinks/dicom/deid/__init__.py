"""De-identification per DICOM PS3.15 Annex E: the Basic Application Level Confidentiality Profile
(every row of Table E.1-1, at every nesting level) with the options a project chooses.

- The table: dicom-anonymizer's E.1-1 data (2026c), compiled once with the options into a tag -> action
  dict (``sinks.dicom.deid.table``); our option columns and our few differences are data files there.
- Private attributes (odd groups) are removed, except those on the project's safe list
  (``DeidOptions.private_safe_list``, empty by default; entries ``"(gggg,xxee) Private Creator"``).
- Curves (50xx) are removed as the table says, and the whole overlay group (60xx) (``additions.tsv``).
- Keyed with one secret (HMAC-SHA256), so the same input gives the same output across instances, series
  and runs, and nobody without the key can reverse or recompute it:
  - UIDs -> ``2.25.<128-bit integer>`` of HMAC(key, "uid:" + uid);
  - Patient ID and Patient's Name -> the patient's research pseudonym (``psn-...``), the value the
    warehouse carries when ingest pseudonymisation uses this key and site (images join to findings);
  - Accession Number -> ``pseudonym(key, "accession", value)`` (``ACC-...``);
  - with Retain Longitudinal Temporal Information with Modified Dates, dates are shifted back by a
    per-patient number of days (1..365) keyed on the patient's pseudonym
    (``processors.ingest.pseudonym.date_shift_days``, shared with report text): intervals within a patient
    are kept, times of day are kept, and image and text dates agree.
- Clean Descriptors keeps only the words of ``vocabulary.txt`` in a description (no numbers); a
  description that is a sequence keeps its Basic Profile action (removed or emptied).
- PatientIdentityRemoved=YES, DeidentificationMethod and DeidentificationMethodCodeSequence (113100 and
  the code of each option applied) are set only after the whole profile was applied; any failure raises
  ``DeidError`` (the instance is then quarantined, never stored as clean).
- Received Little Endian instances are de-identified straight from their bytes (``fast``: the same
  decisions on element positions, the same output byte for byte; whatever it does not handle takes the
  pydicom path below, ``apply`` then ``encode_file``).
- Not done here: pixel data (PS3.15 Clean Pixel Data Option is not implemented: an instance that says
  Burned In Annotation YES raises ``DeidError``; other burned-in risks are the SCP's quarantine
  decision), Clean Graphics, Clean Structured Content, Retain Institution Identity, Retain Full Dates.
"""

from __future__ import annotations

import copy
import io
import re
import struct
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache, lru_cache
from typing import Any

from pydicom import dcmread
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_data_element, write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from processors.ingest.pseudonym import date_shift_days, keyed_identifier, keyed_uid
from processors.ingest.pseudonym import pseudonym as patient_pseudonym
from sinks.dicom.deid.table import HERE, TABLE_VERSION, Compiled, compile_table, vr_of, well_known_uid

METHOD = f"PS3.15 E.1-1 Basic Profile ({TABLE_VERSION}); pixel data not cleaned"  # LO: at most 64 chars

# PS3.16 CID 7050 De-identification Method
BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
OPTION_CODES = {
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "private_safe_list": ("113111", "Retain Safe Private Option"),
}
# DeidOptions field -> option column of options.tsv
_COLUMNS = {"retain_uids": "uids", "retain_device_identity": "device_identity",
            "retain_patient_characteristics": "patient_characteristics",
            "retain_modified_dates": "modified_dates", "clean_descriptors": "clean_descriptors"}
# set by us at the end; an incoming value (e.g. a source that claims YES) is removed first
_OUR_ATTRIBUTES = (0x00120062, 0x00120063, 0x00120064, 0x00280303)

DUMMY: dict[str, Any] = {
    "AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DT": "19000101000000",
    "TM": "000000", "DS": "0", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "PN": "ANONYMIZED",
    "SH": "ANONYMIZED", "ST": "ANONYMIZED", "UC": "ANONYMIZED", "UT": "ANONYMIZED",
    "UR": "http://anonymized.invalid", "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0,
    "UV": 0, "AT": 0, "OB": b"\0\0", "OW": b"\0\0", "OD": b"\0" * 8, "OF": b"\0" * 4, "OL": b"\0" * 4,
    "OV": b"\0" * 8, "UN": b"\0\0",
}
STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
                        "UI", "UR", "UT"})
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SAFE_ENTRY = re.compile(r"^\(?([0-9A-Fa-f]{4}),\s*[xX]{2}([0-9A-Fa-f]{2})\)?\s+(\S.*?)\s*$")
_WORD = re.compile(r"[A-Za-z0-9]+")


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
    private_safe_list: tuple[str, ...] = ()  # 113111 when not empty: "(gggg,xxee) Private Creator" kept


class DeidError(Exception):
    """An instance the profile could not be applied to (it is quarantined, never stored as clean)."""


# the keyed values report events carry too (processors.ingest.research): one definition for both
remap_uid = keyed_uid
pseudonym = keyed_identifier


@cache
def vocabulary() -> frozenset[str]:
    lines = (HERE / "vocabulary.txt").read_text().splitlines()
    return frozenset(ln.strip().upper() for ln in lines if ln.strip() and not ln.startswith("#"))


def clean_text(value: str) -> str:
    """Clean Descriptors: the words of ``value`` that are in the vocabulary, in order, separated by one
    space (never longer than ``value``). Numbers are dropped: "15.01.24" would otherwise keep a date."""
    vocab = vocabulary()
    return " ".join(w for w in _WORD.findall(value) if w.upper() in vocab)


@cache
def parse_safe_list(entries: tuple[str, ...]) -> frozenset[tuple[int, str, int]]:
    """``"(0019,xx0C) SIEMENS MR HEADER"`` -> (group, creator, element byte); ValueError on a bad entry."""
    out = set()
    for entry in entries:
        m = _SAFE_ENTRY.match(entry)
        if m is None or not int(m.group(1), 16) & 1:
            raise ValueError(f"not a private attribute '(gggg,xxee) Creator' with an odd group: {entry!r}")
        out.add((int(m.group(1), 16), m.group(3), int(m.group(2), 16)))
    return frozenset(out)


@cache
def _shift_day(day: str, days: int) -> str:
    d = date(int(day[:4]), int(day[4:6]), int(day[6:8])) - timedelta(days=days)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


# one DT value from its full date on (PS3.5 6.2: YYYYMMDD[HH[MM[SS[.F{1,6}]]]][&ZZXX]); the rest of a DA
_DT = r"\d{8}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?"
_ONE = {"DA": re.compile(r"(\d{8})(.*)", re.S), "DT": re.compile(f"({_DT})")}
_RANGE = {"DA": re.compile(r"(\d{8})?-(\d{8})?"), "DT": re.compile(f"({_DT})?-({_DT})?")}


def _shift(value: str, shift: timedelta, vr: str) -> str:
    """A DA or DT value shifted back by ``shift`` (times of day and offsets kept); each side of a range
    (``20240105-20240106``, PS3.4 C.2.2.2.5) shifted; "" for anything else (a value we cannot read is
    removed, never kept)."""
    value = value.strip()
    try:
        one = _ONE[vr].fullmatch(value)
        if one is not None and (vr == "DT" or "-" not in one.group(2)):
            return _shift_one(one.group(1), shift, vr)
        both = _RANGE[vr].fullmatch(value)
        if both is None or not (both.group(1) or both.group(2)):
            return ""
        return "-".join(_shift_one(side, shift, vr) if side else "" for side in both.groups())
    except ValueError:
        return ""  # not a valid date: remove its value rather than keep it


def _shift_one(value: str, shift: timedelta, vr: str) -> str:
    day = _shift_day(value[:8], shift.days)
    return day if vr == "DA" else day + value[8:]


@dataclass
class _State:
    table: Compiled
    mask_hi: frozenset[int]
    shift: timedelta | None
    patient: str  # the patient's research pseudonym
    safe: frozenset[tuple[int, str, int]]
    safe_creators: frozenset[tuple[int, str]]
    where: list[int] = field(default_factory=list)  # tag path of the element being processed (errors)


class Deidentifier:
    def __init__(self, key: bytes, site: str = "default") -> None:
        if not key:
            raise ValueError("de-identification needs a secret key (ingest.pseudonym_key or _file)")
        self.key = key
        self.site = site
        self._uid_cache: dict[str, str] = {}  # a study's UIDs recur in each of its instances
        compile_table(frozenset({"modified_dates"}))  # the default, compiled before the first instance

    def apply(self, ds: Dataset, project_id: str = "", options: DeidOptions = DeidOptions(),
              pixels_reviewed: bool = False) -> Dataset:
        """De-identify ``ds`` in place (and its file meta) and return it; ``DeidError`` if the profile
        could not be applied (``ds`` is then half done: store nothing of it). ``pixels_reviewed``: a data
        steward looked at the pixels of an instance with Burned In Annotation YES and found no identifying
        text (a quarantine release); otherwise such an instance raises ``DeidError``."""
        where: list[int] = []
        try:
            return self._apply(ds, project_id, options, where, pixels_reviewed)
        except DeidError:
            raise
        except Exception as exc:  # the reason names the attribute, never its value
            path = " > ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in where) or "dataset"
            raise DeidError(f"could not apply the profile at {path}: {type(exc).__name__}") from exc

    def _apply(self, ds: Dataset, project_id: str, options: DeidOptions, where: list[int],
               pixels_reviewed: bool = False) -> Dataset:
        try:
            safe = parse_safe_list(options.private_safe_list)
        except ValueError as exc:
            raise DeidError(str(exc)) from exc
        if not pixels_reviewed and 0x00280301 in ds._dict and "YES" in [
                v.upper() for v in _strings(ds, 0x00280301)]:
            # identifying text may be in the pixels, which this profile does not clean: no clean claim
            raise DeidError("Burned In Annotation is YES: pixel data would need cleaning (not implemented)")
        columns = frozenset(c for f, c in _COLUMNS.items() if getattr(options, f))
        table = compile_table(columns)
        patient_id = "\\".join(_strings(ds, 0x00100020)) if 0x00100020 in ds._dict else ""
        patient = patient_pseudonym(self.key, self.site, patient_id)
        shift = timedelta(days=date_shift_days(self.key, patient)) if options.retain_modified_dates else None
        st = _State(table, frozenset(m.value >> 24 for m in table.masks), shift, patient, safe,
                    frozenset((g, c) for g, c, _ in safe), where)
        for tag in _OUR_ATTRIBUTES:
            if tag in ds:
                del ds[tag]
        self._walk(ds, st, 0)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            self._walk(meta, st, 1)
        # the whole profile was applied: only now say so
        implicit, little = ds.original_encoding
        if little:  # read from bytes: the same attributes as undecoded elements, encoded once per options
            for raw in _closing_elements(options, implicit):
                ds._dict[raw.tag] = raw
        else:
            for elem in _closing_dataset(options):
                ds[elem.tag] = copy.deepcopy(elem)
        return ds

    def apply_file(self, data: bytes, project_id: str = "", options: DeidOptions = DeidOptions(),
                   pixels_reviewed: bool = False) -> tuple[bytes, Dataset]:
        """De-identify a Part 10 file: (the de-identified file, its dataset). Same transfer syntax; every
        value the profile did not change (the pixel data among them) is copied as it was read.

        Straight from the bytes (``sinks.dicom.deid.fast``) where that path handles the instance, else
        through pydicom's ``Dataset`` (``apply_file_pydicom``): the same output either way."""
        from sinks.dicom.deid import fast

        parts = fast.split_file(data)
        parsed = fast.parse(parts[0], parts[1], parts[2]) if parts is not None else None
        done = fast.deidentify(self, parsed, project_id, options, pixels_reviewed) if parsed else None
        if done is not None:
            return done[0], read_file(done[0])
        return self.apply_file_pydicom(data, project_id, options, pixels_reviewed)

    def apply_file_pydicom(self, data: bytes, project_id: str = "", options: DeidOptions = DeidOptions(),
                           pixels_reviewed: bool = False) -> tuple[bytes, Dataset]:
        """``apply_file`` through pydicom's ``Dataset``: ``apply``, then ``encode_file`` (the reference
        the faster path is compared with, and the path for whatever that one does not handle)."""
        try:
            ds = read_file(data)
        except Exception as exc:
            raise DeidError(f"could not read the instance: {type(exc).__name__}") from exc
        self.apply(ds, project_id, options, pixels_reviewed)
        try:
            return encode_file(ds), ds
        except Exception as exc:
            raise DeidError(f"could not encode the de-identified instance: {type(exc).__name__}") from exc

    # -- the walk ---------------------------------------------------------------------------------
    # Elements still undecoded (pydicom's RawDataElement) are changed as bytes where the action allows
    # (remove, empty, dummy text, UIDs, dates): decoding every element cost more than the rest together.
    def _walk(self, ds: Dataset, st: _State, depth: int) -> None:
        actions = st.table.actions
        elements = ds._dict
        for tag in list(elements):
            st.where.append(tag)
            act = actions.get(int(tag))  # a plain int: BaseTag's __eq__ is Python code, int's is not
            if act is None:
                if (tag >> 16) & 1:
                    self._private(ds, tag, st, depth)
                    st.where.pop()
                    continue
                if (tag >> 24) in st.mask_hi:
                    act = next((m.action for m in st.table.masks if tag & m.mask == m.value), None)
            if act is None:  # not in the table: kept (PS3.15 E.1.1); its items are walked, its dates shifted
                vr = vr_of(tag)
                if not vr and st.table.unknown == "X":  # unknown to the dictionary: nothing to judge it by
                    del ds[tag]
                    st.where.pop()
                    continue
                vr = vr or ds[tag].VR
                if vr == "SQ":
                    self._items(ds[tag].value, st, depth)
                elif vr in ("DA", "DT") and st.shift is not None:
                    self._dates(ds, tag, vr, st.shift)
            elif act == "X":
                del ds[tag]
            else:
                self._act(ds, tag, act, st, depth)
            st.where.pop()

    def _items(self, items: Sequence, st: _State, depth: int) -> None:
        for item in items:
            self._walk(item, st, depth + 1)

    def _act(self, ds: Dataset, tag: int, act: str, st: _State, depth: int) -> None:
        vr = vr_of(tag) or ds[tag].VR
        if act == "Z":
            if vr in STRING_VRS:
                _put(ds, tag, [])
            else:
                ds[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
        elif act == "K":
            if vr == "SQ":
                self._items(ds[tag].value, st, depth)
        elif act == "D":
            if vr == "SQ":
                self._dummy_items(ds[tag].value)
            elif vr == "UI":
                self._uids(ds, tag, force=True)
            elif vr in STRING_VRS:
                _put(ds, tag, [DUMMY[vr]])
            else:
                ds[tag] = DataElement(tag, vr, DUMMY.get(vr, b"\0\0"))
        elif act == "U":
            self._uids(ds, tag)
        elif act == "V":
            values = _strings(ds, tag)
            if values:
                _put(ds, tag, [v if well_known_uid(v) else self._remap(v) for v in values])
        elif act == "S":
            if vr in ("DA", "DT") and st.shift is not None:
                self._dates(ds, tag, vr, st.shift)
        elif act == "C":
            elem = ds[tag]
            elem.value = [clean_text(str(v)) for v in elem.value] if elem.VM > 1 else clean_text(
                str(elem.value or ""))
        elif act == "P":
            value = "\\".join(_strings(ds, tag))
            if depth == 0:
                _put(ds, tag, [st.patient])
            elif vr == "LO":  # another patient's id in a nested item: that patient's pseudonym
                _put(ds, tag, [patient_pseudonym(self.key, self.site, value)] if value else [])
            else:
                _put(ds, tag, [])
        elif act == "A":
            value = "\\".join(_strings(ds, tag))
            if value:
                _put(ds, tag, [pseudonym(self.key, "accession", value)])
        else:
            raise ValueError(f"unknown action {act!r}")

    def _private(self, ds: Dataset, tag: int, st: _State, depth: int) -> None:
        """Remove a private attribute unless the safe list names it (its creator and element byte)."""
        group, elem_no = tag >> 16, tag & 0xFFFF
        keep = False
        if st.safe and 0x10 <= elem_no <= 0xFF:  # a private creator of a block that has safe attributes
            keep = (group, str(ds[tag].value).strip()) in st.safe_creators
        elif st.safe and elem_no > 0xFF:
            creator_tag = (group << 16) | (elem_no >> 8)
            if creator_tag in ds:
                keep = (group, str(ds[creator_tag].value).strip(), elem_no & 0xFF) in st.safe
        if not keep:
            del ds[tag]
        elif elem_no > 0xFF and ds[tag].VR == "SQ":
            self._items(ds[tag].value, st, depth)

    def _uids(self, ds: Dataset, tag: int, force: bool = False) -> None:
        values = _strings(ds, tag)
        if values or force:
            _put(ds, tag, [self._remap(v) for v in values or [""]])

    def _remap(self, uid: str) -> str:
        new = self._uid_cache.get(uid)
        if new is None:
            if len(self._uid_cache) > 100_000:
                self._uid_cache.clear()
            new = self._uid_cache[uid] = remap_uid(self.key, uid)
        return new

    @staticmethod
    def _dates(ds: Dataset, tag: int, vr: str, shift: timedelta) -> None:
        values = _strings(ds, tag)
        if values:
            _put(ds, tag, [_shift(v, shift, vr) for v in values])

    def _dummy_items(self, items: Sequence) -> None:
        """D on a sequence: every value in its items becomes a dummy (UIDs keyed); private ones go."""
        for item in items:
            for tag in list(item._dict):
                if (tag >> 16) & 1:
                    del item[tag]
                    continue
                elem = item[tag]
                if elem.VR == "SQ":
                    self._dummy_items(elem.value)
                elif elem.VR == "UI":
                    self._uids(item, tag, force=True)
                else:
                    item[tag] = DataElement(tag, elem.VR, DUMMY.get(str(elem.VR), b"\0\0"))


def _key(tag: int) -> BaseTag:
    """A dataset's dict key for ``tag``: the key object itself when ``tag`` came from the dict (a
    dict lookup then matches by identity; another BaseTag is compared by BaseTag's Python ``__eq__``)."""
    return tag if type(tag) is BaseTag else BaseTag(tag)


def _strings(ds: Dataset, tag: int) -> list[str]:
    """The values of a string attribute (UIDs, dates), read from the undecoded bytes where possible."""
    elem = ds._dict[_key(tag)]
    if isinstance(elem, RawDataElement) and elem.is_little_endian and (
            not elem.value or (elem.value.isascii() and b"\x1b" not in elem.value)):
        text = elem.value.decode("ascii") if elem.value else ""
        return [v.strip(" \0") for v in text.split("\\")] if text.strip(" \0") else []
    value = ds[tag].value
    if value is None or value == "":
        return []
    return [str(v) for v in value] if ds[tag].VM > 1 else [str(value)]


def text(ds: Dataset, tag: int) -> str:
    """A string attribute's value ("" when absent), multiple values joined by a backslash; read from the
    undecoded bytes where possible (decoding every element of a dataset to read a few cost more than the
    rest of filing it)."""
    return "\\".join(_strings(ds, tag)) if _key(tag) in ds._dict else ""


def _put(ds: Dataset, tag: int, values: list[str]) -> None:
    """Set the (ASCII) values of a string attribute; an undecoded element stays undecoded."""
    key = _key(tag)
    elem = ds._dict[key]
    if isinstance(elem, RawDataElement) and elem.is_little_endian:
        data = "\\".join(values).encode("ascii")
        if len(data) % 2:
            data += b"\0" if (elem.VR or vr_of(tag)) == "UI" else b" "
        ds._dict[key] = elem._replace(length=len(data), value=data)
        return
    ds[tag].value = values if len(values) > 1 else (values[0] if values else "")


def read_file(data: bytes) -> Dataset:
    """A Part 10 file as pydicom reads it: its File Meta Information group and its data set read directly
    (dcmread's checks of the file cost a third of the read) when the group has its length first and the
    transfer syntax is little endian, not deflated; by ``dcmread`` otherwise."""
    if data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL":
        end = 144 + struct.unpack_from("<I", data, 140)[0]
        meta = read_dataset(io.BytesIO(data[132:end]), False, True)
        ts = UID(str(meta.get("TransferSyntaxUID", "")))
        if ts and ts.is_little_endian and not ts.is_deflated:
            ds = read_dataset(io.BytesIO(data[end:]), ts.is_implicit_VR, True)
            ds.file_meta = FileMetaDataset(meta)
            return ds
    return dcmread(io.BytesIO(data))


def encode_file(ds: Dataset) -> bytes:
    """The Part 10 file of ``ds``: undecoded elements are written as the bytes they were read as, the
    others by pydicom; File Meta Information group length recomputed. Little endian non-deflated transfer
    syntaxes only (others go through pydicom's ``dcmwrite``)."""
    meta = ds.file_meta
    ts = meta.TransferSyntaxUID
    if not ts.is_little_endian or ts.is_deflated:
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()
    body = _encode(meta, implicit=False, skip=0x00020000)
    group_length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body))
    return b"\0" * 128 + b"DICM" + group_length + body + _encode(ds, implicit=ts.is_implicit_VR)


def _encode(ds: Dataset, implicit: bool, skip: int = -1) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    elements = ds._dict
    for tag in sorted(elements, key=int):  # int's comparison, not BaseTag's (Python code)
        if int(tag) == skip or ((tag & 0xFFFF) == 0 and (tag >> 16) > 6):  # retired group lengths, as pydicom
            continue
        elem = elements[tag]
        if isinstance(elem, RawDataElement) and elem.is_little_endian and elem.is_implicit_VR == implicit \
                and not elem.is_buffered:
            value = elem.value or b""
            undefined = elem.length == 0xFFFFFFFF
            length = 0xFFFFFFFF if undefined else len(value)
            group, number = tag >> 16, tag & 0xFFFF
            if implicit:
                fp.write(struct.pack("<HHI", group, number, length))
            elif elem.VR in _LONG_VRS:
                fp.write(struct.pack("<HH2sHI", group, number, elem.VR.encode(), 0, length))
            else:
                fp.write(struct.pack("<HH2sH", group, number, str(elem.VR).encode(), length))
            fp.write(value)
            if undefined:
                fp.write(_SEQ_DELIMITER)
        else:
            write_data_element(fp, ds[tag], encodings)
    return fp.getvalue()


@cache
def _closing_dataset(options: DeidOptions) -> Dataset:
    """What we state after the profile: PatientIdentityRemoved, the method and its codes (PS3.15 E.1.1).

    Not the project: ClinicalTrialProtocolID alone would be an incomplete Clinical Trial Subject module
    (its Sponsor Name and Subject or Reading ID are Type 1/1C), and the store's path and the events name
    the project anyway. An incoming Clinical Trial module keeps the table's dummy values."""
    ds = Dataset()
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.retain_modified_dates else "REMOVED"
    ds.DeidentificationMethod = METHOD
    applied = [BASIC_CODE] + [code for name, code in OPTION_CODES.items() if getattr(options, name)]
    ds.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in applied])
    return ds


@lru_cache(maxsize=256)
def _closing_elements(options: DeidOptions, implicit: bool) -> tuple[RawDataElement, ...]:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, _closing_dataset(options))
    back = read_dataset(io.BytesIO(fp.getvalue()), implicit, True)
    return tuple(back._dict.values())  # type: ignore[arg-type]


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item
