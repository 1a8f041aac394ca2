"""The few header values the research store files an instance by, read straight from the received bytes.

pydicom's ``read_dataset`` builds a ``Dataset`` of every element up to the stop tag; for an image that
arrives every couple of milliseconds that was the largest CPU item of the storage SCP after the network
loop. The store needs seven values, all in groups 0008-0020 near the start of the data set:
SOP Class/Instance UID, Accession Number, Modality, Patient ID, Study and Series Instance UID.

``read_header`` walks the top-level elements of a Little Endian data set (implicit or explicit VR, as
received over the network, PS3.5 7.1) until it passes (0020,000E), skipping values it does not need,
sequences of undefined length included (PS3.5 7.5). It returns None, and the caller uses pydicom, for
anything it does not handle exactly as pydicom would: a value with non-ASCII bytes (the character set
then matters), a backslash (a multi-valued element), control characters, an undefined length on
anything but a sequence, or a malformed data set.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1)
LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"))
STOP_AFTER = 0x0020000E
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
# bytes that need pydicom's decoding: controls other than NUL padding, backslash (multi-value), non-ASCII
_NOT_PLAIN = re.compile(rb"[\x01-\x1f\\\x7f-\xff]")

WANTED = {
    0x00080016: "sop_class", 0x00080018: "sop_instance", 0x00080050: "accession", 0x00080060: "modality",
    0x00100020: "patient_id", 0x0020000D: "study", 0x0020000E: "series",
}


@dataclass(frozen=True)
class Header:
    study: str = ""
    series: str = ""
    sop_instance: str = ""
    sop_class: str = ""
    accession: str = ""
    patient_id: str = ""
    modality: str = ""


class _Unsupported(ValueError):
    pass


def _element(data: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, position of the value) of the element at ``pos``."""
    group, elem = _TAG.unpack_from(data, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, None, _U32.unpack_from(data, pos + 4)[0], pos + 8
    vr = data[pos + 4:pos + 6]
    if vr in LONG_VRS:
        return tag, vr, _U32.unpack_from(data, pos + 8)[0], pos + 12
    return tag, vr, _U16.unpack_from(data, pos + 6)[0], pos + 8


def _skip_sequence(data: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Position after the sequence delimiter of an undefined-length sequence whose items start at ``pos``."""
    if depth > 16:
        raise _Unsupported("sequences nested too deep")
    while True:
        tag, _, length, pos = _element(data, pos, True)
        if tag == SEQ_END:
            return pos
        if tag != ITEM:
            raise _Unsupported(f"unexpected tag {tag:08X} in a sequence")
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # the elements of an undefined-length item, up to its delimiter
            tag, vr, length, pos = _element(data, pos, implicit)
            if tag == ITEM_END:
                break
            pos = _skip_value(data, pos, implicit, vr, length, depth)
        if pos > len(data):
            raise _Unsupported("truncated item")


def _skip_value(data: bytes, pos: int, implicit: bool, vr: bytes | None, length: int, depth: int) -> int:
    if length != UNDEFINED:
        return pos + length
    if vr == b"SQ" or (implicit and vr is None):
        return _skip_sequence(data, pos, implicit, depth + 1)
    raise _Unsupported(f"undefined length on VR {vr!r}")


def _text(raw: bytes) -> str:
    if _NOT_PLAIN.search(raw):
        raise _Unsupported("value needs pydicom's decoding")
    return raw.decode("ascii").rstrip("\0 ")


def read_header(data: bytes, implicit: bool) -> Header | None:
    """The filing values of a Little Endian data set, or None when pydicom must read it instead."""
    found: dict[str, str] = {}
    pos, end = 0, len(data)
    try:
        while pos + 8 <= end:
            tag, vr, length, value_at = _element(data, pos, implicit)
            if tag >> 16 == 0xFFFE:
                raise _Unsupported("item tag at the top level")
            if tag > STOP_AFTER:
                break
            name = WANTED.get(tag)
            if name is not None:
                if length == UNDEFINED or value_at + length > end:
                    raise _Unsupported(f"bad length for {tag:08X}")
                found[name] = _text(data[value_at:value_at + length])
                pos = value_at + length
            else:
                pos = _skip_value(data, value_at, implicit, vr, length, 0)
            if pos > end:
                raise _Unsupported("truncated data set")
            if tag == STOP_AFTER:
                break
    except (_Unsupported, struct.error, UnicodeDecodeError):
        return None
    return Header(**found)
