"""Reference encodings made by pynetdicom, shared by the tests of sinks.dicom.wire."""

from __future__ import annotations

from sinks.dicom import synth


def store_rq_command(sop: str, message_id: int = 11, move: bool = True) -> bytes:
    """A C-STORE-RQ command set as pynetdicom encodes it (Implicit VR Little Endian)."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    rq = C_STORE()
    rq.MessageID = message_id
    rq.AffectedSOPClassUID = synth.CTImageStorage
    rq.AffectedSOPInstanceUID = sop
    rq.Priority = 0
    if move:
        rq.MoveOriginatorApplicationEntityTitle = "RADSTREAM"
        rq.MoveOriginatorMessageID = 3
    rq.DataSet = __import__("io").BytesIO(b"\x08\x00\x18\x00")
    msg = C_STORE_RQ()
    msg.primitive_to_message(rq)
    out = encode(msg.command_set, True, True)
    assert out is not None
    return out
