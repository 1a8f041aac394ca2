"""P-DATA-TF PDUs, their PDV items and DIMSE command sets as bytes: what ``scu`` and ``scp`` both use.

- A P-DATA-TF PDU (PS3.8 9.3.5): PDU type 04H, a reserved byte, the PDU length (4 bytes, big endian),
  then one or more PDV items.
- A PDV item (PS3.8 9.3.5.1): the item length (4 bytes, big endian), the presentation context ID, then
  the message control header (PS3.8 E.2: bit 0 set, a command fragment; bit 1 set, the last fragment of
  the command or data set) and the fragment itself.
- A command set (PS3.7 6.3.1, E.1): group 0000 elements in ascending order, CommandGroupLength
  (0000,0000) first, always encoded in Implicit VR Little Endian (PS3.7 6.3.1; PS3.5 A.1).

Nothing here touches pynetdicom: plain functions on bytes, unit-tested byte for byte against pynetdicom's
own encoders.
"""

from __future__ import annotations

import struct

P_DATA_TF = 0x04  # PDU type (PS3.8 9.3.1)
NO_DATASET = 0x0101  # CommandDataSetType (0000,0800): no data set follows the command (PS3.7 E.1)


def implicit_element(tag: int, value: bytes) -> bytes:
    """One data element in Implicit VR Little Endian (PS3.5 7.1.3): tag, 4-byte length, value."""
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def uid_value(uid: str) -> bytes:
    """A UI value padded to even length with a trailing NUL (PS3.5 6.2, 9.1)."""
    b = uid.encode("ascii")
    return b + b"\0" if len(b) % 2 else b


def command_set(*elements: bytes) -> bytes:
    """A command set of encoded ``elements`` (in ascending tag order), preceded by its group length."""
    body = b"".join(elements)
    return implicit_element(0x00000000, struct.pack("<I", len(body))) + body


def decode_command(data: bytes) -> dict[int, bytes]:
    """The elements of an Implicit VR Little Endian command set: {element number: raw value}.

    Raises ValueError for anything that is not a well-formed group 0000 data set.
    """
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            raise ValueError("truncated command element header")
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if group != 0x0000 or length == 0xFFFFFFFF or pos + length > end:
            raise ValueError(f"not a command element: ({group:04X},{elem:04X}) length {length}")
        out[elem] = bytes(data[pos:pos + length])
        pos += length
    return out


def pdvs(body: memoryview) -> list[tuple[int, int, memoryview]]:
    """The PDV items of a P-DATA-TF PDU body: (context ID, message control header, fragment)."""
    out = []
    pos, end = 0, len(body)
    while pos < end:
        if end - pos < 6:
            raise ValueError("truncated PDV item")
        (length,) = struct.unpack_from(">I", body, pos)
        if length < 2 or pos + 4 + length > end:
            raise ValueError(f"bad PDV item length {length}")
        out.append((body[pos + 4], body[pos + 5], body[pos + 6:pos + 4 + length]))
        pos += 4 + length
    return out


def pdata_pdu(items: list[tuple[int, int, bytes | memoryview]]) -> bytes:
    """A P-DATA-TF PDU holding the given PDV items: (context ID, message control header, fragment)."""
    body = b"".join(struct.pack(">IBB", len(d) + 2, cx, hdr) + bytes(d) for cx, hdr, d in items)
    return struct.pack(">BBI", P_DATA_TF, 0, len(body)) + body
