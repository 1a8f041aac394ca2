"""The de-identification of a received Little Endian instance straight from its bytes to the stored bytes.

The profile's semantics are ``Deidentifier.apply`` on pydicom's ``Dataset`` (``sinks.dicom.deid``); this
module is a faster way to the same output for the instances it handles, fenced off: it returns None for
anything else, and the caller then takes the pydicom path. Measured (``bench/deid_store_cpu.py``): reading
the file into a ``Dataset``, applying the profile and encoding it again cost ~0.7 ms CPU per 128 KiB CT
instance, each part a third, nearly all of it pydicom's per-element Python code.

Here the data set is parsed once into a list of element positions per data set (sequences into their
items), the compiled table's action is taken per element as ``Deidentifier._walk`` takes it, and the file
is written as ``encode_file`` writes it: an element the profile keeps is copied as the bytes it was
received as (the pixel data is never copied before the one join), a changed one is encoded like
``_put``, sequences keep their undefined or defined length (recomputed), elements in tag order, retired
group lengths dropped, the closing attributes encoded once per options. The output is byte-identical to
the pydicom path's (tests/sinks/dicom/test_deid_fast.py compares them on the leak corpus).

Handled: explicit and implicit VR Little Endian (encapsulated pixel data too), every action of the
table on ASCII values; the few actions that decode a value (Clean Descriptors' C, D on a sequence or a
binary attribute) run the pydicom path's own code on that one element (``_Walk.via_pydicom``). Returned
None (the pydicom path decides): a value the profile reads that is not plain ASCII (the character set
would matter), a private safe list (its creators' text), a VR that disagrees with the dictionary about
being a sequence, elements out of tag order or repeated, anything malformed, and any error.
"""

from __future__ import annotations

import io
import struct
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from pydicom.charset import default_encoding
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element
from pydicom.uid import UID

from sinks.dicom.deid.table import Compiled, vr_of, well_known_uid

if TYPE_CHECKING:
    from sinks.dicom.deid import Deidentifier, DeidOptions, _State

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
KNOWN_VRS = LONG_VRS | frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                                  "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"})
_HH = struct.Struct("<HH")
_HHI = struct.Struct("<HHI")
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_EXPLICIT_LONG = struct.Struct("<HH2sHI")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_GROUP_LENGTH = struct.Struct("<HH2sHI")  # (0002,0000) UL: tag, VR, 2-byte length 4, the value
_ITEM_UNDEFINED = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
# the filing values the store reads of the stored instance (``scp._stored_header``)
STORED_TAGS = (0x0020000D, 0x0020000E, 0x00080018, 0x00080016, 0x00080050, 0x00100020, 0x00080060)
_STORED = frozenset(STORED_TAGS)
_OUR_ATTRIBUTE_SET = frozenset((0x00120062, 0x00120063, 0x00120064, 0x00280303))  # deid._OUR_ATTRIBUTES
_META_SKIP = frozenset({0x00020000})  # its group length: recomputed
_PREAMBLE = b"\0" * 128 + b"DICM"


class NotHandled(Exception):
    """This instance takes the pydicom path."""


# One element as received, a plain tuple (cheaper to make than an object, per element of every instance):
# (tag, VR as written or None in implicit VR, start, value start, value end, the length field,
#  for a sequence its items as (undefined length?, elements), else None, the dictionary VR or "")
Element = tuple[int, str | None, int, int, int, int, list[tuple[bool, list[Any]]] | None, str]
TAG: Final = 0
VR: Final = 1
START: Final = 2
VALUE: Final = 3
END: Final = 4
LENGTH: Final = 5
ITEMS: Final = 6
KNOWN: Final = 7


class Parsed:
    """A received instance parsed: the File Meta Information and the data set as element lists."""

    def __init__(self, meta: bytes, body: bytes, implicit: bool) -> None:
        self.meta, self.body, self.implicit = meta, body, implicit
        self.meta_elements = _parse(meta, 132, len(meta), False)
        self.elements = _parse(body, 0, len(body), implicit)
        self.top = {e[TAG]: e for e in self.elements}

    def text(self, tag: int) -> str:
        """A top-level value as pydicom gives it for a plain single ASCII value ("" when absent);
        NotHandled for anything else (several values, other characters, leading spaces, a sequence)."""
        e = self.top.get(tag)
        if e is None:
            return ""
        if e[ITEMS] is not None:
            raise NotHandled("a sequence")
        raw = self.body[e[VALUE]:e[END]]
        if not raw.isascii() or any(c < 0x20 and c != 0 for c in raw) or b"\\" in raw or raw[:1] == b" ":
            raise NotHandled("not a plain value")
        return raw.decode("ascii").rstrip("\0 ")

    def values(self, tag: int) -> str:
        """A top-level value as ``deid.text`` reads it: every value without its padding, joined by a
        backslash ("" when absent); NotHandled for a sequence or a value that is not plain ASCII."""
        e = self.top.get(tag)
        if e is None:
            return ""
        if e[ITEMS] is not None:
            raise NotHandled("a sequence")
        return "\\".join(_strings(self.body[e[VALUE]:e[END]]))


def parse(meta: bytes, body: bytes, transfer_syntax: str) -> Parsed | None:
    """``meta`` (preamble, DICM, the group with its length first) and ``body`` (the data set), or None."""
    try:
        implicit = _implicit(transfer_syntax)
        if implicit is None:
            return None
        if meta[128:132] != b"DICM" or meta[132:138] != b"\x02\x00\x00\x00UL" or \
                144 + _U32.unpack_from(meta, 140)[0] != len(meta):
            return None
        return Parsed(meta, body, implicit)
    except Exception:  # not parsed here, whatever the reason: the pydicom path reads it (or refuses it)
        return None


@lru_cache(maxsize=64)
def _implicit(transfer_syntax: str) -> bool | None:
    """Whether a Little Endian, not deflated transfer syntax is implicit VR; None for any other."""
    try:
        ts = UID(transfer_syntax)
        if not ts.is_little_endian or ts.is_deflated:
            return None
        return bool(ts.is_implicit_VR)
    except ValueError:
        return None


def split_file(data: bytes) -> tuple[bytes, bytes, str] | None:
    """A Part 10 file -> (its preamble and meta group, its data set, its transfer syntax), or None."""
    if data[128:132] != b"DICM" or data[132:138] != b"\x02\x00\x00\x00UL":
        return None
    end = 144 + _U32.unpack_from(data, 140)[0]
    meta = data[:end]
    try:
        parsed = _parse(meta, 132, end, False)
    except (NotHandled, struct.error, ValueError, IndexError):
        return None
    ts = next((e for e in parsed if e[TAG] == 0x00020010), None)
    if ts is None:
        return None
    return meta, data[end:], meta[ts[VALUE]:ts[END]].decode("ascii", "replace").rstrip("\0 ")


def _parse(buf: bytes, pos: int, end: int, implicit: bool) -> list[Element]:
    """The elements of a data set from ``pos`` to ``end``."""
    return _parse_until(buf, pos, end, implicit, 0, False)[0]


def _parse_until(buf: bytes, pos: int, end: int, implicit: bool, depth: int,
                 item_delimited: bool, stop_after: int = -1) -> tuple[list[Element], int]:
    """The elements from ``pos`` up to ``end`` or the item delimiter (``item_delimited``), or up to and
    including ``stop_after``; and the position after them."""
    if depth > 12:
        raise NotHandled("sequences nested too deep")
    out: list[Element] = []
    append = out.append
    unpack_tag, unpack_u32, unpack_u16 = _HH.unpack_from, _U32.unpack_from, _U16.unpack_from
    vrs = _VR_NAMES
    last = -1
    while pos < end:
        if pos + 8 > end:
            raise NotHandled("truncated")
        group, number = unpack_tag(buf, pos)
        tag = group << 16 | number
        if tag <= last or group == 0xFFFE:
            if tag == ITEM_END and item_delimited and unpack_u32(buf, pos + 4)[0] == 0:
                return out, pos + 8
            raise NotHandled("elements out of order or repeated, or a stray item tag")
        if 0 <= stop_after < tag:
            return out, pos
        last = tag
        start = pos
        vr: str | None
        if implicit:
            vr = None
            length = unpack_u32(buf, pos + 4)[0]
            pos += 8
        else:
            vr = vrs.get(buf[pos + 4:pos + 6])
            if vr is None:
                raise NotHandled("unknown VR")
            if vr in LONG_VRS:
                length = unpack_u32(buf, pos + 8)[0]
                pos += 12
            else:
                length = unpack_u16(buf, pos + 6)[0]
                pos += 8
        known = _vr(tag)
        is_sq = vr == "SQ" if vr is not None else known == "SQ"
        if vr is not None and known and (known == "SQ") != is_sq:
            raise NotHandled("VR and dictionary disagree about a sequence")
        if length == UNDEFINED:
            if vr == "UN":
                raise NotHandled("undefined length UN")
            if vr is None and not is_sq and not known:  # pydicom: a sequence when items follow
                is_sq = unpack_tag(buf, pos) == (0xFFFE, 0xE000) if pos + 4 <= end else False
            if is_sq:
                items, pos = _items(buf, pos, end, implicit, depth, -1)
                append((tag, vr, start, start, pos, length, items, known))
                continue
            # encapsulated pixel data: up to the sequence delimiter, as pydicom finds it
            at = buf.find(b"\xfe\xff\xdd\xe0", pos, end)
            if at < 0 or buf[at + 4:at + 8] != b"\0\0\0\0":
                raise NotHandled("no sequence delimiter")
            append((tag, vr, start, pos, at, length, None, known))
            pos = at + 8
            continue
        value_end = pos + length
        if value_end > end:
            raise NotHandled("truncated value")
        append((tag, vr, start, pos, value_end, length,
                _items(buf, pos, value_end, implicit, depth, value_end)[0] if is_sq else None, known))
        pos = value_end
        if tag == stop_after:
            return out, pos
    if item_delimited:
        raise NotHandled("no item delimiter")
    return out, pos


def _items(buf: bytes, pos: int, end: int, implicit: bool, depth: int,
           defined_end: int) -> tuple[list[tuple[bool, list[Element]]], int]:
    """The items of a sequence from ``pos``: up to ``defined_end``, or (-1) its sequence delimiter."""
    items: list[tuple[bool, list[Element]]] = []
    while True:
        if pos == defined_end:
            return items, pos
        if pos + 8 > end:
            raise NotHandled("truncated sequence")
        group, number = _HH.unpack_from(buf, pos)
        length = _U32.unpack_from(buf, pos + 4)[0]
        tag = group << 16 | number
        pos += 8
        if tag == SEQ_END and defined_end < 0:
            if length != 0:
                raise NotHandled("bad sequence delimiter")
            return items, pos
        if tag != ITEM:
            raise NotHandled("not an item")
        if length == UNDEFINED:
            elements, pos = _parse_until(buf, pos, end, implicit, depth + 1, True)
            items.append((True, elements))
        else:
            if pos + length > end:
                raise NotHandled("truncated item")
            items.append((False, _parse_until(buf, pos, pos + length, implicit, depth + 1, False)[0]))
            pos += length


_VR_NAMES = {v.encode(): v for v in KNOWN_VRS}
_VR_CACHE: dict[int, str] = {}


def _vr(tag: int) -> str:
    """``vr_of`` through a plain dict (two cached calls per element cost more than the parse)."""
    vr = _VR_CACHE.get(tag)
    if vr is None:
        if len(_VR_CACHE) > 100_000:
            _VR_CACHE.clear()
        vr = _VR_CACHE[tag] = vr_of(tag)
    return vr


# -- values, as ``_strings`` and ``_put`` read and write undecoded elements ---------------------------
def _strings(raw: bytes) -> list[str]:
    if raw and (not raw.isascii() or b"\x1b" in raw):
        raise NotHandled("not ASCII")
    text = raw.decode("ascii") if raw else ""
    return [v.strip(" \0") for v in text.split("\\")] if text.strip(" \0") else []


def _value(values: list[str], ui: bool) -> bytes:
    data = "\\".join(values).encode("ascii")
    if len(data) % 2:
        data += b"\0" if ui else b" "
    return data


def _header(tag: int, vr: str | None, length: int, implicit: bool) -> bytes:
    if implicit:
        return _HHI.pack(tag >> 16, tag & 0xFFFF, length)
    assert vr is not None
    if vr in LONG_VRS:
        return _EXPLICIT_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    if length > 0xFFFF:
        raise NotHandled("value too long for its VR")
    return _EXPLICIT_SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length)


class _Walk:
    """One instance through the compiled table (``Deidentifier._walk``'s decisions, on element lists)."""

    def __init__(self, d: Deidentifier, buf: bytes, implicit: bool, table: Compiled,
                 shift: timedelta | None, patient: str, state: _State) -> None:
        self.d, self.buf, self.view, self.implicit, self.table = d, buf, memoryview(buf), implicit, table
        self.actions = table.actions
        self.mask_hi = state.mask_hi
        self.shift, self.patient = shift, patient
        self.charset = b""  # the encoded Specific Character Set in force ("": none)
        self.state = state  # the pydicom path's, for ``via_pydicom``
        self.value: bytes | None = None  # the value ``put`` wrote last (None: ``keep``)
        self.stored: dict[int, str] = {}  # STORED_TAGS at the top level, as ``deid.text`` reads them

    def raw(self, e: Element) -> bytes:
        return self.buf[e[VALUE]:e[END]]

    def dataset(self, elements: list[Element], depth: int, out: list[bytes | memoryview],
                replace: dict[int, bytes] | None = None, skip: frozenset[int] = frozenset()) -> int:
        """Append the de-identified encoding of ``elements`` to ``out`` (``replace``: encoded elements
        that take the place of their tag, present or not); the number of bytes appended."""
        n = 0
        pending = sorted(replace.items()) if replace else []
        k = 0
        outer = self.charset
        for c in elements:  # an item's own character set holds inside it (pydicom's reading)
            if c[TAG] >= 0x00080005:
                if c[TAG] == 0x00080005:
                    self.charset = self.buf[c[START]:c[END]]
                break
        element = self.element
        for e in elements:
            tag = e[TAG]
            if pending:
                while k < len(pending) and pending[k][0] < tag:
                    n += len(pending[k][1])
                    out.append(pending[k][1])
                    k += 1
                if k < len(pending) and pending[k][0] == tag:
                    n += len(pending[k][1])
                    out.append(pending[k][1])
                    k += 1
                    continue
            if tag in skip or ((tag & 0xFFFF) == 0 and (tag >> 16) > 6):  # retired group lengths: not written
                continue
            if depth == 0 and tag in _STORED:
                self.value = None
                size = element(e, depth, out)
                if size:
                    self.stored[tag] = "\\".join(_strings(self.raw(e) if self.value is None else self.value))
                n += size
                continue
            n += element(e, depth, out)
        for _, data in pending[k:]:
            n += len(data)
            out.append(data)
        self.charset = outer
        return n

    def element(self, e: Element, depth: int, out: list[bytes | memoryview]) -> int:
        tag = e[TAG]
        act = self.actions.get(tag)
        if act is None:
            if (tag >> 16) & 1:
                return 0  # private: removed (a safe list takes the pydicom path)
            if (tag >> 24) in self.mask_hi:
                act = next((m.action for m in self.table.masks if tag & m.mask == m.value), None)
        if act == "X":
            return 0
        vr = e[KNOWN]
        if not vr:  # a public attribute pydicom's dictionary does not know
            if act is None and self.table.unknown == "X":
                return 0
            raise NotHandled("an attribute pydicom's dictionary does not know")  # pydicom decodes it
        items = e[ITEMS]
        if act is None or act == "K":  # kept; a sequence's items walked, dates shifted
            if items is not None:
                return self.sequence(e, items, depth, out)
            if act is None and (vr == "DA" or vr == "DT") and self.shift is not None:
                return self.dates(e, vr, out)
            return self.keep(e, out)
        if items is not None:
            if act == "Z":  # an empty sequence of defined length (pydicom's Sequence())
                return self.put_new(tag, "SQ", out)
            if act == "D":
                return self.via_pydicom(e, act, depth, out)
            raise NotHandled(f"action {act} on a sequence")
        if act == "U":
            values = _strings(self.raw(e))
            if not values:
                return self.keep(e, out)
            return self.put(e, _value([self.d._remap(v) for v in values], self.ui(e)), out)
        if act == "V":  # keyed unless a well-known UID
            values = _strings(self.raw(e))
            if not values:
                return self.keep(e, out)
            return self.put(e, _value([v if well_known_uid(v) else self.d._remap(v) for v in values],
                                      self.ui(e)), out)
        if act == "S":
            if (vr == "DA" or vr == "DT") and self.shift is not None:
                return self.dates(e, vr, out)
            return self.keep(e, out)
        if act == "Z":
            if vr in _STRING_VRS:
                return self.put(e, b"", out)
            return self.put_new(tag, vr, out)
        if act == "D":
            if vr == "UI":
                return self.put(e, _value([self.d._remap(v) for v in _strings(self.raw(e)) or [""]],
                                          self.ui(e)), out)
            if vr in _STRING_VRS:
                return self.put(e, _value([_DUMMY[vr]], self.ui(e)), out)
            return self.via_pydicom(e, act, depth, out)
        if act == "P":
            value = "\\".join(_strings(self.raw(e)))
            if depth == 0:
                new = [self.patient]
            elif vr == "LO":  # another patient's id in a nested item: that patient's pseudonym
                new = [_patient_pseudonym(self.d, value)] if value else []
            else:
                new = []
            return self.put(e, _value(new, self.ui(e)), out)
        if act == "A":
            value = "\\".join(_strings(self.raw(e)))
            if not value:
                return self.keep(e, out)
            return self.put(e, _value([_accession(self.d, value)], self.ui(e)), out)
        if act == "C":  # the text decoded and cleaned
            return self.via_pydicom(e, act, depth, out)
        raise NotHandled(f"action {act}")

    def via_pydicom(self, e: Element, act: str, depth: int, out: list[bytes | memoryview]) -> int:
        """An action this module does not do itself (D on a sequence or a binary attribute, C): the
        element read by pydicom after the Specific Character Set in force (decoding depends on it), the
        pydicom path's own ``Deidentifier._act`` on it, encoded by pydicom's ``write_data_element`` as
        the pydicom path encodes it."""
        if e[TAG] in _STORED:
            raise NotHandled("a filing value through pydicom")
        ds = read_dataset(io.BytesIO(self.charset + self.buf[e[START]:e[END]]), self.implicit, True)
        self.d._act(ds, e[TAG], act, self.state, depth)
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, self.implicit
        write_data_element(fp, ds.get_item(e[TAG]), ds.get("SpecificCharacterSet", default_encoding))
        data = fp.getvalue()
        out.append(data)
        return len(data)

    @staticmethod
    def ui(e: Element) -> bool:
        return (e[VR] or e[KNOWN]) == "UI"

    def keep(self, e: Element, out: list[bytes | memoryview]) -> int:
        start, end = e[START], e[END]
        out.append(self.view[start:end])  # the pixel data too: not copied before the one join
        if e[LENGTH] == UNDEFINED and e[ITEMS] is None:  # encapsulated pixel data: then its delimiter
            out.append(_SEQ_DELIMITER)
            return end - start + 8
        return end - start

    def put(self, e: Element, value: bytes, out: list[bytes | memoryview]) -> int:
        """``_put`` of an undecoded element: its VR as received, the new value."""
        head = _header(e[TAG], e[VR], len(value), self.implicit)
        out.append(head)
        out.append(value)
        self.value = value
        return len(head) + len(value)

    def put_new(self, tag: int, vr: str, out: list[bytes | memoryview]) -> int:
        """A new empty element of ``vr`` (pydicom's ``DataElement(tag, vr, None)``, or ``Sequence()``)."""
        head = _header(tag, vr, 0, self.implicit)
        out.append(head)
        self.value = b""
        return len(head)

    def dates(self, e: Element, vr: str, out: list[bytes | memoryview]) -> int:
        from sinks.dicom.deid import _shift

        values = _strings(self.raw(e))
        if not values:
            return self.keep(e, out)
        assert self.shift is not None
        return self.put(e, _value([_shift(v, self.shift, vr) for v in values], self.ui(e)), out)

    def sequence(self, e: Element, items: list[tuple[bool, list[Element]]], depth: int,
                 out: list[bytes | memoryview]) -> int:
        """A kept sequence, its items walked: lengths recomputed, undefined lengths kept (as pydicom
        writes a ``Sequence``)."""
        body: list[bytes | memoryview] = []
        n = 0
        for undefined, elements in items:
            inner: list[bytes | memoryview] = []
            size = self.dataset(elements, depth + 1, inner)
            if undefined:
                body.append(_ITEM_UNDEFINED)
                body.extend(inner)
                body.append(_ITEM_DELIMITER)
                n += size + 16
            else:
                body.append(_HHI.pack(0xFFFE, 0xE000, size))
                body.extend(inner)
                n += size + 8
        undefined_seq = e[LENGTH] == UNDEFINED
        head = _header(e[TAG], "SQ" if e[VR] is not None else None, UNDEFINED if undefined_seq else n,
                       self.implicit)
        out.append(head)
        out.extend(body)
        if undefined_seq:
            out.append(_SEQ_DELIMITER)
            return len(head) + n + 8
        return len(head) + n


_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
                         "UI", "UR", "UT"})
_DUMMY = {"AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DT": "19000101000000",
          "TM": "000000", "DS": "0", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "PN": "ANONYMIZED",
          "SH": "ANONYMIZED", "ST": "ANONYMIZED", "UC": "ANONYMIZED", "UT": "ANONYMIZED",
          "UR": "http://anonymized.invalid"}


# keyed per value, the same for every instance of a study: an HMAC each, 4-5 per instance otherwise
@lru_cache(maxsize=1024)
def _patient(key: bytes, site: str, patient_id: str) -> tuple[str, int]:
    """A patient's research pseudonym and the days its dates move back."""
    from processors.ingest.pseudonym import date_shift_days, pseudonym

    patient = pseudonym(key, site, patient_id)
    return patient, date_shift_days(key, patient)


def _patient_pseudonym(d: Deidentifier, value: str) -> str:
    return _patient(d.key, d.site, value)[0]


@lru_cache(maxsize=1024)
def _keyed_accession(key: bytes, value: str) -> str:
    from sinks.dicom.deid import pseudonym

    return pseudonym(key, "accession", value)


def _accession(d: Deidentifier, value: str) -> str:
    return _keyed_accession(d.key, value)


@lru_cache(maxsize=256)
def _table(options: DeidOptions) -> tuple[Compiled, frozenset[int]]:
    """The compiled table of ``options`` (as ``Deidentifier._apply`` finds it) and the top bytes of its
    repeating-group rows, once per options."""
    from sinks.dicom.deid import _COLUMNS
    from sinks.dicom.deid.table import compile_table

    table = compile_table(frozenset(c for f, c in _COLUMNS.items() if getattr(options, f)))
    return table, frozenset(m.value >> 24 for m in table.masks)


@lru_cache(maxsize=256)
def _closing(options: DeidOptions, implicit: bool) -> dict[int, bytes]:
    """The closing attributes, each encoded as ``encode_file`` writes them (once per options)."""
    from sinks.dicom.deid import _closing_elements, _encode

    out = {}
    for raw in _closing_elements(options, implicit):
        one = Dataset()
        one._dict[raw.tag] = raw
        out[int(raw.tag)] = _encode(one, implicit)
    return out


def deidentify(d: Deidentifier, parsed: Parsed, project_id: str, options: DeidOptions,
               pixels_reviewed: bool = False, why: list[str] | None = None
               ) -> tuple[bytes, dict[int, str]] | None:
    """The de-identified Part 10 file of ``parsed`` and its ``STORED_TAGS`` values (as ``deid.text``
    reads them), exactly as ``Deidentifier.apply_file_pydicom`` makes it; None: take the pydicom path
    (``why`` given: the reason is appended to it)."""
    from sinks.dicom.deid import _State

    try:
        if options.private_safe_list:
            raise NotHandled("a private safe list")  # the creators' text decides
        if not pixels_reviewed and "YES" in parsed.values(0x00280301).upper().split("\\"):
            raise NotHandled("burned in annotation")  # the pydicom path raises DeidError
        table, mask_hi = _table(options)
        pid = parsed.top.get(0x00100020)
        patient_id = "\\".join(_strings(parsed.body[pid[VALUE]:pid[END]])) if pid else ""
        patient, days = _patient(d.key, d.site, patient_id)
        shift = timedelta(days=days) if options.retain_modified_dates else None
        closing = _closing(options, parsed.implicit)
        state = _State(table, mask_hi, shift, patient, frozenset(), frozenset())
        body: list[bytes | memoryview] = []
        walk = _Walk(d, parsed.body, parsed.implicit, table, shift, patient, state)
        walk.dataset(parsed.elements, 0, body, closing, _OUR_ATTRIBUTE_SET)
        meta: list[bytes | memoryview] = []
        mwalk = _Walk(d, parsed.meta, False, table, shift, patient, state)
        size = mwalk.dataset(parsed.meta_elements, 1, meta, skip=_META_SKIP)
        data = b"".join([_PREAMBLE, _GROUP_LENGTH.pack(2, 0, b"UL", 4, size), *meta, *body])
        return data, {t: walk.stored.get(t, "") for t in STORED_TAGS}
    except Exception as exc:  # whatever went wrong here: the pydicom path decides (DeidError there)
        if why is not None:
            why.append(f"{type(exc).__name__}: {exc}")
        return None
