"""sinks.dicom.wire.scu: C-FIND/C-MOVE command sets against pynetdicom's, and the DUL gate."""

from __future__ import annotations

import io

import pytest

from tests.sinks.dicom.wire.encoded import store_rq_command


@pytest.mark.parametrize("dest", ["RESEARCH", "ORTHANC", "A"])  # even, odd and short AE titles
def test_direct_move_request_equals_pynetdicoms(dest: str) -> None:
    from pynetdicom.dimse_messages import C_MOVE_RQ
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.dsutils import encode
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Move  # type: ignore[attr-defined]

    from sinks.dicom.wire.scu import move_rq_command

    for msg_id, priority in ((1, 2), (513, 0)):
        req = C_MOVE()
        req.MessageID = msg_id
        req.AffectedSOPClassUID = Move
        req.Priority = priority
        req.MoveDestination = dest
        req.Identifier = io.BytesIO(b"\x08\x00\x52\x00")
        msg = C_MOVE_RQ()
        msg.primitive_to_message(req)
        assert move_rq_command(msg_id, str(Move), dest, priority) == encode(msg.command_set, True, True)


def _move_rsp_command(status: int, counts: tuple[int | None, ...], identifier: bool = False,
                      msg_id: int = 1) -> bytes:
    from pynetdicom.dimse_messages import C_MOVE_RSP
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Move  # type: ignore[attr-defined]

    rsp = C_MOVE()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = Move
    rsp.Status = status
    (rsp.NumberOfRemainingSuboperations, rsp.NumberOfCompletedSuboperations,
     rsp.NumberOfFailedSuboperations, rsp.NumberOfWarningSuboperations) = counts
    if identifier:
        rsp.Identifier = io.BytesIO(b"\x08\x00\x58\x11\x04\x00\x00\x001.2\x00")
    msg = C_MOVE_RSP()
    msg.primitive_to_message(rsp)
    from pynetdicom.dsutils import encode

    out = encode(msg.command_set, True, True)
    assert out is not None
    return out


@pytest.mark.parametrize(("status", "counts", "identifier"), [
    (0xFF00, (47, 3, 0, 0), False),  # pending
    (0x0000, (None, 50, 0, 0), False),  # success: no remaining count
    (0xB000, (None, 40, 9, 1), True),  # warning, with a Failed SOP Instance UID List
    (0xA702, (0, 0, 0, 0), True),  # Orthanc after a refused image: zero counters
    (0xC000, (None, None, None, None), False),  # failure without counts
])
def test_direct_move_response_parsing_agrees_with_pynetdicom(
        status: int, counts: tuple[int | None, ...], identifier: bool) -> None:
    from pynetdicom.dimse_messages import C_MOVE_RSP as Msg
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.dsutils import decode

    from sinks.dicom.wire.scu import MoveRsp, parse_move_rsp

    raw = _move_rsp_command(status, counts, identifier, msg_id=9)
    # what pynetdicom's own decoder makes of the same command set
    msg = Msg()
    msg.command_set = decode(io.BytesIO(raw), True, True)
    msg.data_set = io.BytesIO(b"\x00" if identifier else b"")
    prim = msg.message_to_primitive()
    assert isinstance(prim, C_MOVE)
    ref = MoveRsp(prim.Status, prim.NumberOfRemainingSuboperations, prim.NumberOfCompletedSuboperations,
                  prim.NumberOfFailedSuboperations, prim.NumberOfWarningSuboperations)
    assert parse_move_rsp(raw) == (9, ref, identifier)
    assert ref == MoveRsp(status, counts[0], counts[1], counts[2], counts[3])


def test_direct_move_response_parsing_refuses_other_messages() -> None:
    from sinks.dicom.wire.scu import parse_move_rsp

    assert parse_move_rsp(store_rq_command("1.2.3")) is None  # a C-STORE-RQ
    raw = _move_rsp_command(0xFF00, (1, 2, 0, 0))
    assert parse_move_rsp(raw[:-1]) is None  # truncated
    assert parse_move_rsp(b"") is None


def test_direct_find_request_equals_pynetdicoms() -> None:
    from pynetdicom.dimse_messages import C_FIND_RQ
    from pynetdicom.dimse_primitives import C_FIND
    from pynetdicom.dsutils import encode
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find  # type: ignore[attr-defined]

    from sinks.dicom.wire.scu import C_FIND_RSP, find_rq_command, parse_rsp

    for msg_id, priority in ((1, 2), (65535, 1)):
        req = C_FIND()
        req.MessageID = msg_id
        req.AffectedSOPClassUID = Find
        req.Priority = priority
        req.Identifier = io.BytesIO(b"\x08\x00\x52\x00")
        msg = C_FIND_RQ()
        msg.primitive_to_message(req)
        assert find_rq_command(msg_id, str(Find), priority) == encode(msg.command_set, True, True)
    # a C-MOVE response is not a C-FIND response
    assert parse_rsp(_move_rsp_command(0xFF00, (1, 2, 0, 0)), C_FIND_RSP) is None


class _FakeDul:
    """Only what the gate touches: the DUL's socket-reading method (here it blocks until released)."""

    def __init__(self) -> None:
        import threading

        self.reading = threading.Event()
        self.release = threading.Event()
        self.reads = 0

    def _is_transport_event(self) -> bool:
        self.reads += 1
        self.reading.set()
        self.release.wait(5)
        return True


def test_direct_exchange_gate_waits_for_a_dul_read_in_progress_and_blocks_new_ones() -> None:
    import threading
    import time

    from sinks.dicom.wire.scu import _Gate

    dul = _FakeDul()
    gate = _Gate.of(dul)
    assert _Gate.of(dul) is gate  # installed once per association, not per exchange
    reader = threading.Thread(target=dul._is_transport_event)  # the DUL thread, mid-read
    reader.start()
    assert dul.reading.wait(5)
    took = threading.Event()
    taker = threading.Thread(target=lambda: (gate.take(), took.set()))
    taker.start()
    time.sleep(0.05)
    assert not took.is_set()  # the exchange may not start while the DUL is reading the socket
    dul.release.set()
    reader.join(5)
    assert took.wait(5)
    taker.join(5)
    reads = dul.reads
    assert dul._is_transport_event() is False  # owned by the exchange: the DUL reads nothing
    assert dul.reads == reads
    gate.give_back()
    assert dul._is_transport_event() is True
    assert dul.reads == reads + 1


def test_a_new_gate_is_passed_only_once_the_dul_thread_came_through_it() -> None:
    """A read the DUL thread began through the original method before the gate was installed is not
    stopped by it: the first exchange must wait until the DUL thread has called the gate once."""
    import threading

    from sinks.dicom.wire.scu import _Gate

    dul = _FakeDul()
    original = dul._is_transport_event  # looked up by the DUL thread before the gate existed
    reader = threading.Thread(target=original)
    reader.start()
    assert dul.reading.wait(5)
    gate = _Gate.of(dul)
    assert not gate.seen.wait(0.05)  # that read is still on its way: no exchange may take the socket
    dul.release.set()
    reader.join(5)
    next_loop = threading.Thread(target=dul._is_transport_event)  # the DUL thread's next iteration
    next_loop.start()
    assert gate.seen.wait(5)
    next_loop.join(5)
