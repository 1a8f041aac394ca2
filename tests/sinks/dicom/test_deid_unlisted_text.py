"""Free text the E.1-1 table does not list (VR ST, LT, UT, UC; unlisted.tsv, unlisted_text.tsv) is removed at
every nesting level, on both paths, except the few attributes kept on purpose (codes, technical values) or
dummied/emptied where a module needs them; and the few clearly identifying unlisted LO attributes of
additions.tsv are removed.

The expectations are stated here (``KEPT``, ``DUMMIED``, ``EMPTIED``) and the unlisted attributes are found
from pydicom's dictionary and the library's table, not from the new data file: these tests fail on a tree
that keeps unlisted free text as received (E.1.1)."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.datadict import DicomDictionary, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from sinks.dicom import deid, synth
from sinks.dicom.deid import fast, table

from .test_deid_fast import OPTIONS

KEY = b"unlisted-text-key-of-32-bytes---"
FREE_TEXT = ("ST", "LT", "UT", "UC")
# reviewed one by one (unlisted_text.tsv says why): kept as received
KEPT = {0x00080119: "LongCodeValue", 0x00080114: "CodingSchemeExternalID", 0x00080115: "CodingSchemeName",
        0x00160020: "EXIFVersion", 0x00160003: "BatteryLevel",
        0x3010000C: "ConceptualVolumeCombinationExpression"}
# required where they are used (Type 1/1C): a dummy value, never the received one
DUMMIED = {0x0040A160: "TextValue", 0x00400031: "LocalNamespaceEntityID", 0x00400032: "UniversalEntityID",
           0x0040E001: "HL7InstanceIdentifier", 0x00620020: "TrackingID",
           0x00189080: "MetaboliteMapDescription", 0x0072006F: "SelectorUCValue",
           0x0008030C: "PrivateDataElementName", 0x0008030D: "PrivateDataElementKeyword"}
EMPTIED = {0x0008030E: "PrivateDataElementDescription", 0x00420010: "DocumentTitle"}  # Type 2
# unlisted LO attributes that are clearly identifying (additions.tsv)
IDENTIFYING_LO = {0x00100033: "PatientBirthDateInAlternativeCalendar",
                  0x00100034: "PatientDeathDateInAlternativeCalendar", 0x30040006: "DoseComment",
                  0x300600C8: "FrameOfReferenceTransformationComment",
                  0x0074140B: "ReasonForChannelOmissionDescription", 0x00181803: "NTPSourceAddress"}
# standard sequences the table does not list (kept, their items walked): nesting at two levels
OUTER, INNER = 0x00082218, 0x00082220  # Anatomic Region Sequence > Anatomic Region Modifier Sequence


def unlisted_free_text() -> dict[int, str]:
    """tag -> VR of every ST, LT, UT, UC attribute of pydicom's dictionary (retired ones too) that neither
    the library's E.1-1 table, options.tsv nor additions.tsv lists: E.1.1 alone keeps them."""
    tags, masks = table.library_table()
    options = set().union(*(set(rows) for rows in table.option_rows().values()))
    additions = {int(r["tag"], 16) for r in table._rows("additions.tsv") if "x" not in r["tag"]}
    listed = set(tags) | options | additions
    out = {}
    for tag, entry in sorted(DicomDictionary.items()):
        vr = entry[0].split(" or ")[0]
        if vr in FREE_TEXT and tag >> 16 not in (0x0000, 0x0002) and tag not in listed \
                and not any(tag & m.mask == m.value for m in masks):
            out[tag] = vr
    return out


def marker(tag: int) -> str:
    return f"ZQXTEXT {tag:08X} Smith"


def _text_item(tags: dict[int, str]) -> Dataset:
    item = Dataset()
    for tag, vr in tags.items():
        item.add(DataElement(tag, vr, marker(tag)))
    return item


def instance() -> Dataset:
    """A CT with a marker in every unlisted free-text attribute and every identifying LO of additions.tsv,
    at the top level, in an item of a kept sequence and in an item of a sequence in that item."""
    ds = synth.instance(synth.specs(1, 1)[0], 0)
    ds.SpecificCharacterSet = "ISO_IR 100"
    attrs = unlisted_free_text() | {t: "LO" for t in IDENTIFYING_LO}
    for tag, elem in _text_item(attrs).items():
        ds[tag] = elem
    outer = _text_item(attrs)
    outer.CodeValue, outer.CodingSchemeDesignator, outer.CodeMeaning = "T-D4000", "SRT", "Abdomen"
    outer.add(DataElement(INNER, "SQ", Sequence([_text_item(attrs)])))
    ds.add(DataElement(OUTER, "SQ", Sequence([outer])))
    return ds


def _file(ds: Dataset, implicit: bool) -> bytes:
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def _levels(ds: Dataset) -> list[Dataset]:
    outer = ds[OUTER].value[0]
    return [ds, outer, outer[INNER].value[0]]


def test_the_instance_carries_every_marker() -> None:
    """The test can fail: ~120 unlisted free-text attributes, each with its marker at three levels."""
    attrs = unlisted_free_text()
    assert len(attrs) > 100 and {0x0040A160, 0x00400400, 0x00741238, 0x00080119} <= set(attrs)
    assert set(KEPT) | set(DUMMIED) | set(EMPTIED) <= set(attrs)
    data = _file(instance(), False)
    for tag in list(attrs) + list(IDENTIFYING_LO):
        assert data.count(marker(tag).encode()) == 3, f"{tag:08X}"


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_unlisted_free_text_is_gone_on_both_paths(name: str, implicit: bool) -> None:
    d = deid.Deidentifier(KEY)
    data = _file(instance(), implicit)
    parts = fast.split_file(data)
    assert parts is not None
    parsed = fast.parse(*parts)
    assert parsed is not None
    why: list[str] = []
    done = fast.deidentify(d, parsed, "TEXT", OPTIONS[name], why=why)
    assert done is not None and not why, why  # the fast path handled it ...
    expected, _ = d.apply_file_pydicom(data, "TEXT", OPTIONS[name])
    assert done[0] == expected  # ... and wrote what the pydicom path writes
    assert d.apply_file(data, "TEXT", OPTIONS[name])[0] == expected
    out = dcmread(io.BytesIO(expected))
    for tag in list(unlisted_free_text()) + list(IDENTIFYING_LO):
        if tag not in KEPT:
            assert marker(tag).encode() not in expected, f"{tag:08X} {keyword_for_tag(tag)}"
    for level, item in enumerate(_levels(out)):
        for tag in KEPT:
            assert item[tag].value == marker(tag), (level, KEPT[tag])
        for tag in DUMMIED:
            assert item[tag].value == "ANONYMIZED", (level, DUMMIED[tag])
        for tag in EMPTIED:
            assert tag in item and not item[tag].value, (level, EMPTIED[tag])
        for tag in set(unlisted_free_text()) - set(KEPT) - set(DUMMIED) - set(EMPTIED):
            assert tag not in item, (level, f"{tag:08X}")
        for tag in IDENTIFYING_LO:
            assert tag not in item, (level, IDENTIFYING_LO[tag])
    # the codes of the kept sequence's item are kept (LO/SH have no rule by VR)
    assert out[OUTER].value[0].CodeMeaning == "Abdomen" and out[OUTER].value[0].CodeValue == "T-D4000"


def test_a_text_content_item_keeps_a_value() -> None:
    """Text Value is Type 1C in a TEXT content item: outside the Content Sequence (which E.1-1 dummies
    whole) it is dummied too, not removed, so the item stays valid."""
    ds = synth.instance(synth.specs(1, 1)[0], 0)
    context = Dataset()
    context.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121106", "DCM", "Comment"
    context.ConceptNameCodeSequence = Sequence([concept])
    context.TextValue = "patient John Smith, 12 Elm Street"
    ds.add(DataElement(OUTER, "SQ", Sequence([context])))  # an unlisted sequence: its items walked
    for path in ("fast", "pydicom"):
        d = deid.Deidentifier(KEY)
        data = _file(ds, False)
        out = d.apply_file(data, "TEXT")[0] if path == "fast" else d.apply_file_pydicom(data, "TEXT")[0]
        item = dcmread(io.BytesIO(out))[OUTER].value[0]
        assert item.TextValue == "ANONYMIZED" and item.ValueType == "TEXT", path
        assert item.ConceptNameCodeSequence[0].CodeMeaning == "Comment"
        assert b"Smith" not in out and b"Elm" not in out


def test_the_exceptions_are_the_reviewed_ones() -> None:
    """unlisted_text.tsv holds exactly the reviewed exceptions, each naming an unlisted free-text
    attribute by its keyword and giving a reason; the compiled table carries them with every option."""
    rows = table._rows("unlisted_text.tsv")
    want = {**{t: "K" for t in KEPT}, **{t: "D" for t in DUMMIED}, **{t: "Z" for t in EMPTIED}}
    assert {int(r["tag"], 16): r["action"] for r in rows} == want
    attrs = unlisted_free_text()
    for r in rows:
        tag = int(r["tag"], 16)
        assert tag in attrs and keyword_for_tag(tag) == r["keyword"] and len(r["why"]) > 20, r


def test_options_do_not_reopen_unlisted_free_text() -> None:
    """No option (Clean Descriptors, Retain Device Identity, ...) changes the action of an unlisted
    free-text attribute: they change only the rows E.1-1 lists for them."""
    attrs = unlisted_free_text()
    want = {t: "K" if t in KEPT else "D" if t in DUMMIED else "Z" if t in EMPTIED else "X" for t in attrs}
    for columns in [frozenset(), *(frozenset({c}) for c in table.OPTIONS), frozenset(table.OPTIONS)]:
        compiled = table.compile_table(columns)
        assert {t: compiled.actions.get(t) for t in attrs} == want, sorted(columns)
        assert all(compiled.actions.get(t) == "X" for t in IDENTIFYING_LO), sorted(columns)
