"""A leak corpus for the de-identification profile: CT, MR, CR and US instances that carry a traceable
value in every attribute of PS3.15 Table E.1-1 that pydicom can set (the attribute list is the library's
table, ``sinks.dicom.deid.table.library_table``), in nested sequences, in private attributes, curves
and overlays; the dates and times of pydicom's dictionary that the table does not list
(``unlisted_temporal``); and a scanner that finds those values again, in bytes and in parsed elements.

Traceable values per VR: text holds ``ZQXL`` followed by the tag (a leak names its attribute); UIDs start
with ``UID_ROOT``; dates are ``DATE``; ages ``AGE``; IS/DS ``NUMBER``; 4- and 8-byte numbers and binary
values hold the bytes ``ZQXL``. Not traceable (set, but no marker fits): US, SS, AT and times (TM, kept
by the Modified Dates option: a whole-day shift leaves the time of day).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydicom import dcmread
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)

from sinks.dicom.deid.table import library_table

MARK = b"ZQXL"
UID_ROOT = "1.2.826.0.1.3680043.10.7357."
DATE = "19011224"
AGE = "093Y"
NUMBER = "73571357"
TIME = "131313"
TOKENS = (MARK, UID_ROOT.encode(), DATE.encode(), AGE.encode(), NUMBER.encode())
PRIVATE_GROUP, SAFE_GROUP = 0x0009, 0x0019
SAFE_CREATOR, SAFE_ELEMENT = "RADSTREAM SAFE", 0x10  # (0019,xx10): on the safe list in tests
SAFE_ENTRY = f"(0019,xx{SAFE_ELEMENT:02X}) {SAFE_CREATOR}"
MODALITIES = {"CT": CTImageStorage, "MR": MRImageStorage, "CR": ComputedRadiographyImageStorage,
              "US": UltrasoundImageStorage}
# file meta, command group, and what the instance itself needs to be filed: set separately
SKIP_GROUPS = {0x0000, 0x0002}
SKIP_TAGS = {0x00080018, 0x0020000D, 0x0020000E}


def _bytes_value(n: int) -> bytes:
    return (MARK * (n // 4 + 1))[:n]


def value_for(tag: int, vr: str) -> object | None:
    """A valid value of ``vr`` that can be traced back to ``tag``; None if the VR cannot carry one."""
    h = f"{tag:08X}"
    text = {
        "AE": f"ZQXL{h}", "CS": f"ZQXL_{h}", "SH": f"ZQXLEAK {h}", "LO": f"ZQXLEAK {h}",
        "LT": f"ZQXLEAK {h}", "ST": f"ZQXLEAK {h}", "UT": f"ZQXLEAK {h}", "UC": f"ZQXLEAK {h}",
        "PN": f"ZQXLEAK^{h}", "UR": f"http://example.invalid/ZQXL{h}", "UI": f"{UID_ROOT}{tag}",
        "DA": DATE, "DT": DATE + TIME, "TM": TIME, "AS": AGE, "IS": NUMBER, "DS": NUMBER,
    }
    if vr in text:
        return text[vr]
    if vr in ("UL", "SL"):
        return struct.unpack("<I" if vr == "UL" else "<i", MARK)[0]
    if vr in ("UV", "SV"):
        return struct.unpack("<Q" if vr == "UV" else "<q", MARK * 2)[0]
    if vr == "FL":
        return struct.unpack("<f", MARK)[0]
    if vr == "FD":
        return struct.unpack("<d", MARK * 2)[0]
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return _bytes_value(8)
    return None  # US, SS, AT


def table_attributes() -> list[tuple[int, str]]:
    """(tag, VR) of every single-tag row of the library's E.1-1 table that pydicom knows."""
    tags, _ = library_table()
    out = []
    for tag in sorted(tags):
        if tag >> 16 in SKIP_GROUPS or tag in SKIP_TAGS:
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        out.append((tag, vr))
    return out


def unlisted_temporal() -> list[tuple[int, str]]:
    """(tag, VR) of the DA, DT and TM attributes of pydicom's dictionary that the library's table does not
    list (single tags or repeating groups), File Meta Information excepted: StudyUpdateDateTime,
    ExpiryDate, ... (no table action, so only the profile's handling of unlisted dates removes them)."""
    tags, masks = library_table()
    out = []
    for tag, entry in sorted(DicomDictionary.items()):
        vr = entry[0].split(" or ")[0]
        if vr in ("DA", "DT", "TM") and tag >> 16 not in SKIP_GROUPS and tag not in tags \
                and not any(tag & m.mask == m.value for m in masks):
            out.append((tag, vr))
    return out


UNLISTED_RULED = ("UI", "PN", "UR", "ST", "LT", "UT", "UC")  # the VRs unlisted.tsv has a rule for


def unlisted_identifying() -> list[tuple[int, str]]:
    """(tag, VR) of the UI, PN, UR and free-text (ST, LT, UT, UC) attributes of pydicom's dictionary that
    the library's table does not list (Multi-frame Source SOP Instance UID, Evaluator Name, Retrieve URL,
    Comments on the Scheduled Procedure Step ...: E.1.1 alone would keep them as received), and the few
    unlisted LO attributes ``additions.tsv`` removes (Contact Display Name ...); not those
    ``additions.tsv`` or ``unlisted_text.tsv`` keep on purpose (Coding Scheme UID, Long Code Value ...)."""
    from sinks.dicom.deid.table import _rows

    tags, masks = library_table()
    additions = {int(r["tag"], 16): r["action"] for r in _rows("additions.tsv") if "x" not in r["tag"]}
    additions |= {int(r["tag"], 16): r["action"] for r in _rows("unlisted_text.tsv")}
    out = []
    for tag, entry in sorted(DicomDictionary.items()):
        vr = entry[0].split(" or ")[0]
        if vr in UNLISTED_RULED and tag >> 16 not in SKIP_GROUPS and tag not in tags \
                and not any(tag & m.mask == m.value for m in masks) and additions.get(tag) != "K" \
                and tag != 0x00080016:  # SOP Class UID: set to the instance's class
            out.append((tag, vr))
    out += [(t, dictionary_VR(t)) for t, a in sorted(additions.items())
            if a == "X" and t not in tags and t >> 16 not in SKIP_GROUPS
            and dictionary_VR(t) not in UNLISTED_RULED]  # those are in already
    return out


UNKNOWN_PUBLIC = 0x00221FF0  # an even-group tag pydicom's dictionary does not know


def unknown_public_un() -> RawDataElement:
    """``UNKNOWN_PUBLIC`` as a UN value of defined length that is really a sequence of one item (implicit
    VR) holding a Patient's Name: E.1.1 would keep it byte for byte."""
    inner = Dataset()
    inner.PatientName = "ZQXLEAK^IN AN UNKNOWN ATTRIBUTE"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, inner)
    value = struct.pack("<HHI", 0xFFFE, 0xE000, len(fp.getvalue())) + fp.getvalue()
    return RawDataElement(BaseTag(UNKNOWN_PUBLIC), "UN", len(value), value, 0, False, True)


def _non_table_sequences() -> list[int]:
    """Standard sequences outside the table (kept by the profile, so their items must be walked)."""
    tags, _ = library_table()
    wanted = (0x00081032, 0x00082218, 0x00400260, 0x0008114A)  # Procedure Code, Anatomic Region, ...
    return [t for t in wanted if t not in tags]


def _private(ds: Dataset, depth: int) -> None:
    block = ds.private_block(PRIVATE_GROUP, "ZQXLEAK CREATOR", create=True)
    block.add_new(0x01, "LO", f"ZQXLEAK private {depth}")
    block.add_new(0x02, "OB", _bytes_value(8))
    if depth < 2:
        inner = Dataset()
        inner.PatientName = "ZQXLEAK^PRIVATE"
        block.add_new(0x03, "SQ", Sequence([inner]))


def item(depth: int) -> Dataset:
    """A sequence item with table attributes (text, UID, date), a private block and, above depth 2, a
    standard sequence outside the table that holds the same again."""
    it = Dataset()
    for tag, vr in ((0x00100010, "PN"), (0x00100020, "LO"), (0x00081155, "UI"), (0x00080022, "DA"),
                    (0x00081070, "PN"), (0x0040A123, "PN"), (0x00181000, "LO"), (0x0008103E, "LO"),
                    (0x0008041F, "DT"), (0x00141020, "DA")):  # StudyUpdateDateTime, ExpiryDate: not in it
        it.add(DataElement(tag, vr, value_for(tag, vr)))
    it.ReferencedSOPClassUID = CTImageStorage
    for tag, vr in ((0x00081167, "UI"), (0x00142006, "PN"), (0x00081190, "UR")):  # not in the table
        it.add(DataElement(tag, vr, value_for(tag, vr)))
    _private(it, depth)
    if depth < 3:
        for seq in _non_table_sequences()[:1]:
            it.add(DataElement(seq, "SQ", Sequence([item(depth + 1)])))
    return it


@dataclass(frozen=True)
class Corpus:
    instances: list[Dataset]
    set_tags: frozenset[int]  # table attributes that carry a value
    untraced: frozenset[int]  # ... of which no marker could be put in the value


def build(study_key: int = 1) -> Corpus:
    """One study, one instance per modality in ``MODALITIES``."""
    attrs = table_attributes()
    study_uid = f"{UID_ROOT}1.{study_key}"
    out: list[Dataset] = []
    set_tags: set[int] = set()
    untraced: set[int] = set()
    for k, (modality, sop_class) in enumerate(MODALITIES.items(), start=1):
        ds = Dataset()
        for tag, vr in attrs:
            value = value_for(tag, vr)
            if vr == "SQ":
                value = Sequence([item(1)])
            if value is None:
                value = 7 if vr in ("US", "SS") else None
                untraced.add(tag)
            ds.add(DataElement(tag, vr, value))
            set_tags.add(tag)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = f"{UID_ROOT}9.{study_key}.{k}"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = f"{UID_ROOT}2.{study_key}.{k}"
        ds.Modality = modality
        ds.SeriesNumber, ds.InstanceNumber = k, 1
        ds.BurnedInAnnotation = "NO"
        ds.SpecificCharacterSet = "ISO_IR 100"
        for tag, vr in unlisted_temporal():
            ds.add(DataElement(tag, vr, value_for(tag, vr)))
        for tag, vr in unlisted_identifying():
            ds.add(DataElement(tag, vr, value_for(tag, vr)))
        ds._dict[BaseTag(UNKNOWN_PUBLIC)] = unknown_public_un()
        ds.add_new(0x00221FF2, "LO", "ZQXLEAK unknown public LO")  # not in the dictionary either
        # ranges: each side is a date (a DT range's second side was kept as received)
        ds.AcquisitionDateTime = f"{DATE}{TIME}-{DATE}{TIME}"
        ds.add_new(0x00141020, "DA", f"{DATE}-{DATE}")  # ExpiryDate: not in the table
        for seq in _non_table_sequences():
            ds.add(DataElement(seq, "SQ", Sequence([item(1)])))
        _private(ds, 0)
        safe = ds.private_block(SAFE_GROUP, SAFE_CREATOR, create=True)
        safe.add_new(SAFE_ELEMENT, "DS", "2.5")
        safe.add_new(SAFE_ELEMENT + 1, "LO", "ZQXLEAK not on the safe list")
        _curves_and_overlays(ds)
        _pixels(ds, modality)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        out.append(ds)
    return Corpus(out, frozenset(set_tags), frozenset(untraced))


def _curves_and_overlays(ds: Dataset) -> None:
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x50002500, "LO", "ZQXLEAK curve label")
    ds.add_new(0x50003000, "OB", _bytes_value(8))  # Curve Data
    ds.add_new(0x60000010, "US", 8)  # Overlay Rows
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", "ZQXLEAK overlay description")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", _bytes_value(8))  # Overlay Data
    ds.add_new(0x60004000, "LT", "ZQXLEAK overlay comments")


def _pixels(ds: Dataset, modality: str) -> None:
    rows = 8
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = 8 if modality == "US" else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    dtype = np.uint8 if bits == 8 else np.uint16
    # values 0..63: never the bytes of a marker
    ds.PixelData = (np.arange(rows * rows, dtype=dtype) % 64).tobytes()


def encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def byte_hits(data: bytes, tokens: tuple[bytes, ...] = TOKENS) -> list[tuple[bytes, int]]:
    """(token, offset) of every occurrence of a traceable value in ``data``."""
    hits = []
    for token in tokens:
        at = data.find(token)
        while at >= 0:
            hits.append((token, at))
            at = data.find(token, at + 1)
    return hits


def element_hits(ds: Dataset, tokens: tuple[bytes, ...] = TOKENS, path: str = "") -> Iterator[str]:
    """Every parsed element (recursively, file meta included) whose value holds a traceable value:
    ``path`` like ``(0040,0275)[0] > (0010,0010) PatientName``."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and not path:
        yield from element_hits(meta, tokens, "meta ")
    for elem in ds:
        where = f"{path}({elem.tag.group:04X},{elem.tag.element:04X}) {keyword_for_tag(elem.tag) or '?'}"
        if elem.VR == "SQ":
            for i, it in enumerate(elem.value):
                yield from element_hits(it, tokens, f"{where}[{i}] > ")
            continue
        blob = _blob(elem.value)
        if any(t in blob for t in tokens):
            yield where


def _blob(value: object) -> bytes:
    """The bytes a parsed value can be searched in (numbers as their 4- and 8-byte encodings)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, float):  # DS values too: their text as well
        try:
            return struct.pack("<f", value) + struct.pack("<d", value) + str(value).encode()
        except OverflowError:
            return struct.pack("<d", value) + str(value).encode()
    if isinstance(value, int):
        return value.to_bytes(8, "little", signed=value < 0) + str(value).encode()
    if isinstance(value, (list, tuple, MultiValue)):
        return b"\\".join(_blob(v) for v in value)
    return str("" if value is None else value).encode("latin-1", "replace")  # text, PersonName, UID


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))
