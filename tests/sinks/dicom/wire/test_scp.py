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


def test_a_request_sent_before_the_loop_starts_is_served_by_the_loop_not_stalled() -> None:
    """Regression: the peer sends its first C-STORE as soon as it has the A-ASSOCIATE-AC; the association
    thread reaches the receive loop later (here: an EVT_ACCEPTED handler delays it). The DUL thread used
    to read that request meanwhile into pynetdicom's queue, where the loop never looked: no response
    until the peer's DIMSE timeout (Orthanc: 30 s, ~1% of C-MOVEs)."""
    import time

    from pynetdicom import evt
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from sinks.dicom.net import make_ae
    from sinks.dicom.wire import compat
    from sinks.dicom.wire.scp import fast_store_responses, install

    assert compat.usable("scp")
    fast: list[str] = []
    slow: list[str] = []

    def store(raw: bytes, ts: str, sop_class: str, sop_instance: str, assoc: object) -> int:
        fast.append(sop_instance)
        return 0x0000

    def pynetdicom_store(event: evt.Event) -> int:
        slow.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    scp = make_ae("WIRESCP", network_timeout=10)
    scp.add_supported_context(CTImageStorage)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, pynetdicom_store), (evt.EVT_CONN_OPEN, fast_store_responses),
        (evt.EVT_CONN_OPEN, install(store)), (evt.EVT_ACCEPTED, lambda event: time.sleep(0.3))])
    port = server.server_address[1]
    try:
        scu = make_ae("WIRESCU", dimse_timeout=3)
        scu.add_requested_context(CTImageStorage)
        spec = synth.specs(1, 3)[0]
        assoc = scu.associate("127.0.0.1", port, ae_title="WIRESCP")
        assert assoc.is_established
        t0 = time.monotonic()
        statuses = [assoc.send_c_store(synth.instance(spec, i)) for i in range(3)]
        took = time.monotonic() - t0
        assoc.release()
    finally:
        server.shutdown()
    assert [s.Status if s else None for s in statuses] == [0, 0, 0]
    assert took < 2.0
    assert fast == spec.sop_uids() and slow == []
