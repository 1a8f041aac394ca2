"""sinks.dicom.wire.pdu: command sets and P-DATA-TF PDUs, against pydicom and pynetdicom."""

from __future__ import annotations

import io

import pytest

from sinks.dicom import synth
from tests.sinks.dicom.wire.encoded import store_rq_command


@pytest.mark.parametrize("sop", ["1.2.3.4", "1.2.3.45"])
def test_direct_command_decoding_agrees_with_pydicom(sop: str) -> None:
    from pydicom.filereader import read_dataset

    from sinks.dicom.wire.pdu import decode_command
    from sinks.dicom.wire.scp import parse_store_rq

    for move in (True, False):
        raw = store_rq_command(sop, move=move)
        ours = decode_command(raw)
        ref = read_dataset(io.BytesIO(raw), True, True)
        tags = sorted(ref.keys())
        assert sorted(ours) == [t.element for t in tags]
        for tag in tags:
            assert ours[tag.element] == ref.get_item(tag).value  # the raw, undecoded value bytes
        assert str(ref.AffectedSOPInstanceUID) == sop
        assert parse_store_rq(raw) == (11, synth.CTImageStorage, sop)


def test_direct_command_decoding_refuses_other_messages() -> None:
    from pynetdicom.dimse_messages import C_ECHO_RQ
    from pynetdicom.dimse_primitives import C_ECHO
    from pynetdicom.dsutils import encode

    from sinks.dicom.wire.pdu import decode_command
    from sinks.dicom.wire.scp import parse_store_rq

    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    msg = C_ECHO_RQ()
    msg.primitive_to_message(echo)
    raw = encode(msg.command_set, True, True)
    assert raw is not None
    assert parse_store_rq(raw) is None
    assert parse_store_rq(raw[:-3]) is None  # truncated
    with pytest.raises(ValueError):
        decode_command(b"\x08\x00\x10\x00\x02\x00\x00\x00AB")  # not group 0000


def test_pdata_pdus_equal_pynetdicoms_and_parse_back() -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from sinks.dicom.wire.pdu import pdata_pdu, pdvs
    from sinks.dicom.wire.scp import store_rsp_command

    items: list[tuple[int, int, bytes | memoryview]] = [
        (1, 0x03, store_rsp_command(5, synth.CTImageStorage, "1.2.3", 0)), (3, 0x00, b"\x01" * 9),
        (3, 0x02, b"")]
    prim = P_DATA()
    # pynetdicom wants [ID, PDV] lists at run time (its annotation says tuples)
    prim.presentation_data_value_list = [[cx, bytes([hdr]) + bytes(data)]  # type: ignore[misc]
                                         for cx, hdr, data in items]
    pdu = P_DATA_TF()
    pdu.from_primitive(prim)
    want = pdu.encode()
    assert pdata_pdu(items) == want
    assert [(cx, hdr, bytes(d)) for cx, hdr, d in pdvs(memoryview(want)[6:])] == items
    with pytest.raises(ValueError):
        pdvs(memoryview(want)[6:-1])
