"""sinks.dicom.wire.scp: the pre-encoded C-STORE response, against pynetdicom's."""

from __future__ import annotations

import pytest

from sinks.dicom import synth


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xB000])
def test_pre_encoded_store_response_equals_pynetdicoms(status: int) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    from sinks.dicom.wire.scp import store_rsp_command

    for sop in ("1.2.3.4", "1.2.3.45"):  # odd and even lengths
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = 7
        rsp.AffectedSOPClassUID = synth.CTImageStorage
        rsp.AffectedSOPInstanceUID = sop
        rsp.Status = status
        msg = C_STORE_RSP()
        msg.primitive_to_message(rsp)
        want = encode(msg.command_set, True, True)
        assert store_rsp_command(7, synth.CTImageStorage, sop, status) == want
