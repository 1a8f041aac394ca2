"""The requestor (SCU) side: C-MOVE and C-FIND exchanges sent and read directly on pynetdicom's association.

Through pynetdicom, every C-MOVE pending response (the PACS sends one per image moved) is read and
decoded by the DUL thread, which polls the socket every 1 ms, turned into a pydicom Dataset, queued
for our thread, and turned into a second Dataset for the status. That cost about as much CPU in the
worker as the storage SCP spent on the image itself, on the same two cores as the PACS and the SCP.

Here, after pynetdicom has negotiated the association, our thread sends the C-MOVE-RQ itself (the
command set encoded directly, PS3.7 9.3.4.1; the identifier encoded by pydicom) and reads the C-MOVE-RSP
messages (PS3.7 9.3.4.2) straight from the socket: the command set is decoded directly, every status
and sub-operation count is returned to the caller. pynetdicom's association reactor is paused (as its
own ``send_c_move`` does) and its DUL thread is kept off the socket meanwhile (it waits instead of polling
every 1 ms); the state machine stays in Sta6 (PS3.8 9.2), which P-DATA does not change. A C-FIND
(PS3.7 9.3.2.1 / 9.3.2.2) goes the same way. ``start_move``/``start_find`` set an exchange up on the
presentation context pynetdicom would use; ``sinks.dicom.find``/``move`` call them only when the self-check
of ``sinks.dicom.wire.compat`` passes.

Anything unexpected fails safely and hands the association back to pynetdicom:
- a PDU other than P-DATA (A-ABORT, A-RELEASE-RQ, ...) is replayed into the DUL as its reader would have
  queued it; the connection closed by the peer is left for the DUL to see; both end as "no response";
- a message other than the C-MOVE-RSP to our request, a malformed one, or no response within the DIMSE
  timeout: we abort the association (what pynetdicom does) and return "no response".
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pynetdicom.dsutils import encode

from sinks.dicom.wire import pdu

LOG = logging.getLogger(__name__)

C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
PENDING = (0xFF00, 0xFF01)
POLL = 0.5  # seconds between checks for a killed association while waiting for data
GATE_WAIT_S = 2.0  # longest wait for the DUL thread to come through a new gate (about one reactor loop)


@dataclass(frozen=True)
class MoveRsp:
    """One C-MOVE response; ``status`` None: none came (timeout, abort, connection closed, bad message)."""

    status: int | None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    why: str = ""


def _ae_value(ae: str) -> bytes:
    b = ae.encode("ascii")
    return b + b" " if len(b) % 2 else b


def move_rq_command(message_id: int, sop_class: str, destination: str, priority: int = 2) -> bytes:
    """The C-MOVE-RQ command set (PS3.7 9.3.4.1), Implicit VR Little Endian, as pynetdicom encodes it."""
    return pdu.command_set(
        pdu.implicit_element(0x00000002, pdu.uid_value(sop_class)),
        pdu.implicit_element(0x00000100, struct.pack("<H", C_MOVE_RQ)),
        pdu.implicit_element(0x00000110, struct.pack("<H", message_id)),
        pdu.implicit_element(0x00000600, _ae_value(destination)),
        pdu.implicit_element(0x00000700, struct.pack("<H", priority)),
        pdu.implicit_element(0x00000800, struct.pack("<H", 0x0001)),  # an identifier follows
    )


def _us(cmd: dict[int, bytes], elem: int) -> int | None:
    v = cmd.get(elem)
    if v is None:
        return None
    if len(v) != 2:
        raise ValueError(f"element (0000,{elem:04X}) is not a US value")
    return int(struct.unpack("<H", v)[0])


def parse_rsp(data: bytes, field: int) -> tuple[int, int, dict[int, bytes], bool] | None:
    """(MessageIDBeingRespondedTo, Status, the command elements, whether a data set follows) of a
    response with CommandField ``field``, else None."""
    try:
        cmd = pdu.decode_command(data)
        got, responded = _us(cmd, 0x0100), _us(cmd, 0x0120)
        status, ds_type = _us(cmd, 0x0900), _us(cmd, 0x0800)
    except ValueError:
        return None
    if got != field or responded is None or status is None or ds_type is None:
        return None
    return responded, status, cmd, ds_type != pdu.NO_DATASET


def parse_move_rsp(data: bytes) -> tuple[int, MoveRsp, bool] | None:
    """(MessageIDBeingRespondedTo, the response, whether a data set follows) of a C-MOVE-RSP, else None."""
    parsed = parse_rsp(data, C_MOVE_RSP)
    if parsed is None:
        return None
    responded, status, cmd, has_ds = parsed
    try:
        counts = _us(cmd, 0x1020), _us(cmd, 0x1021), _us(cmd, 0x1022), _us(cmd, 0x1023)
    except ValueError:
        return None
    return responded, MoveRsp(status, *counts), has_ds


def find_rq_command(message_id: int, sop_class: str, priority: int = 2) -> bytes:
    """The C-FIND-RQ command set (PS3.7 9.3.2.1), Implicit VR Little Endian, as pynetdicom encodes it."""
    return pdu.command_set(
        pdu.implicit_element(0x00000002, pdu.uid_value(sop_class)),
        pdu.implicit_element(0x00000100, struct.pack("<H", C_FIND_RQ)),
        pdu.implicit_element(0x00000110, struct.pack("<H", message_id)),
        pdu.implicit_element(0x00000700, struct.pack("<H", priority)),
        pdu.implicit_element(0x00000800, struct.pack("<H", 0x0001)),  # an identifier follows
    )


class _HandBack(Exception):
    """Stop reading; ``pdus`` are whole non-P-DATA PDUs to replay into the DUL; ``abort``: abort first."""

    def __init__(self, why: str, pdus: list[bytes] | None = None, abort: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.pdus = pdus or []
        self.abort = abort


class _Gate:
    """Keeps pynetdicom's DUL thread off an association's socket while a direct exchange owns it.

    Installed once per association and left in place: every read the DUL thread starts goes through
    ``check`` under the lock, so once ``take`` holds the lock no read is in progress and none starts.
    (Swapping the DUL's method per exchange left a window: a DUL thread that had looked the method up
    before the swap could still read the first response PDU, and the exchange then saw its data set
    without the command.) The same holds once, when the gate is installed: a read the DUL thread began
    through the original method may still be on its way, so the first exchange waits until the DUL thread
    has come through the gate (``seen``)."""

    def __init__(self, dul: Any) -> None:
        self.dul = dul
        self.active = False
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.seen = threading.Event()  # the DUL thread has called ``check``: no original call in flight
        self._orig = dul._is_transport_event
        dul._is_transport_event = self.check

    @classmethod
    def of(cls, dul: Any) -> _Gate:
        gate = getattr(dul, "_radstream_gate", None)
        if gate is None:
            gate = dul._radstream_gate = cls(dul)
        return gate

    def check(self) -> bool:
        # Runs on the DUL thread: while an exchange owns the socket it reads nothing and waits here
        # (instead of polling every 1 ms) until the socket is handed back.
        self.seen.set()
        if self.active:
            self.wake.wait(POLL)
        with self.lock:
            if self.active:
                return False
            return bool(self._orig())

    def take(self) -> None:
        with self.lock:  # a read the DUL had begun has ended once we hold the lock
            self.wake.clear()
            self.active = True

    def give_back(self) -> None:
        with self.lock:
            self.active = False
        self.wake.set()


class DirectExchange:
    """One request with an identifier and its responses on ``assoc``: ``start()`` takes the socket
    (False: use pynetdicom, nothing was sent), ``messages()`` sends the request and yields each response
    as (status, command elements, identifier bytes or None) until the final one, or (None, {}, None)
    when none came (then ``why`` says why)."""

    name = "DIMSE"
    rsp_field = 0

    def __init__(self, assoc: Any, context_id: int, command: bytes, identifier: bytes,
                 message_id: int = 1) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.context_id = context_id
        self.message_id = message_id
        self.command = command
        self.identifier = identifier
        self.why = ""
        self.request = (pdu.pdata_pdu([(context_id, 0x03, self.command)])
                        + pdu.pdata_pdu([(context_id, 0x02, identifier)]))
        self.sock: socket.socket | None = None
        self._gate: _Gate | None = None
        self._timeout: float | None = None
        self._pdvs: deque[tuple[int, int, memoryview]] = deque()
        self._taken = False

    # -- taking and giving back the socket ------------------------------------------------------
    def start(self) -> bool:
        assoc, dul = self.assoc, self.dul
        sock: Any = getattr(dul.socket, "socket", None)
        cx = assoc._accepted_cx.get(self.context_id)
        if (not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket) or not assoc.is_requestor
                or not assoc.is_established or cx is None
                or cx.transfer_syntax[0] == DeflatedExplicitVRLittleEndian):
            return False
        peer_max = assoc.acceptor.maximum_length  # of a PDU's PDV list: one PDV of 6 + n bytes each
        if peer_max and max(len(self.command), len(self.identifier)) + 6 > peer_max:
            return False  # would need fragments: pynetdicom fragments
        assoc._reactor_checkpoint.clear()  # pause the association reactor, as pynetdicom's send_c_* do
        while not assoc._is_paused:
            if not assoc.is_established or assoc._kill:
                assoc._reactor_checkpoint.set()
                return False
            time.sleep(0.0001)
        self._gate = _Gate.of(dul)
        if not self._gate.seen.wait(GATE_WAIT_S):  # the DUL thread is stuck or gone: pynetdicom decides
            assoc._reactor_checkpoint.set()
            return False
        self._gate.take()
        self._taken = True
        if (dul.state_machine.current_state != "Sta6" or not dul.event_queue.empty()
                or not dul.to_user_queue.empty() or not dul.to_provider_queue.empty()
                or not assoc.dimse.msg_queue.empty()):
            self._give_back()  # the peer said something first: pynetdicom deals with it
            return False
        self.sock = sock
        self._timeout = sock.gettimeout()
        sock.settimeout(POLL)
        return True

    def _give_back(self) -> None:
        if not self._taken:
            return
        self._taken = False
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self._timeout)
        assert self._gate is not None
        self._gate.give_back()
        self.dul._idle_timer.restart()
        self.assoc._reactor_checkpoint.set()

    def _inject(self, raw: bytes) -> None:
        decoded, event = self.dul._decode_pdu(bytearray(raw))
        self.dul._recv_pdu.put(decoded)
        self.dul.event_queue.put(event)

    # -- the exchange ---------------------------------------------------------------------------
    def messages(self) -> Iterator[tuple[int | None, dict[int, bytes], bytes | None]]:
        assert self.sock is not None, "start() first"
        try:
            self.sock.sendall(self.request)
            while True:
                status, cmd, data = self._read_response()
                yield status, cmd, data
                if status not in PENDING:
                    return
        except _HandBack as hb:
            for raw in hb.pdus:
                self._inject(raw)
            self._give_back()
            if hb.abort and self.assoc.is_established:
                LOG.error("%s: %s; aborting the association", self.name, hb.why)
                self.assoc.abort()
            else:
                self._wait_for_dul()
            self.why = hb.why
            yield None, {}, None
        except OSError as exc:  # connection reset while sending or reading
            self._give_back()
            self._wait_for_dul()
            self.why = f"connection failed: {exc}"
            yield None, {}, None
        finally:
            self._give_back()

    def _wait_for_dul(self, limit: float = 2.0) -> None:
        """Let the DUL act on what it now reads or was replayed (abort, closed connection)."""
        deadline = time.monotonic() + limit
        while self.assoc.is_established and time.monotonic() < deadline:
            if self.dul.state_machine.current_state != "Sta6" or self.assoc.acse.is_aborted():
                break
            time.sleep(0.005)

    def _read_response(self) -> tuple[int, dict[int, bytes], bytes | None]:
        deadline = None if self.assoc.dimse_timeout is None else time.monotonic() + self.assoc.dimse_timeout
        command: list[memoryview] = []
        data: list[memoryview] = []
        parsed: tuple[int, int, dict[int, bytes], bool] | None = None
        while True:
            cx, hdr, frag = self._next_pdv(deadline)
            if cx != self.context_id:
                raise _HandBack(f"message on presentation context {cx}, not {self.context_id}", abort=True)
            if parsed is None:
                if not hdr & 0x01:
                    raise _HandBack("data set fragment before a command set", abort=True)
                command.append(frag)
                if not hdr & 0x02:
                    continue
                parsed = parse_rsp(b"".join(command), self.rsp_field)
                if parsed is None:
                    raise _HandBack(f"a message other than a {self.name} response", abort=True)
                if parsed[0] != self.message_id:
                    raise _HandBack(f"a response to message {parsed[0]}, not {self.message_id}", abort=True)
                if not parsed[3]:
                    return parsed[1], parsed[2], None
                continue
            if hdr & 0x01:
                raise _HandBack("command set fragment inside a data set", abort=True)
            data.append(frag)
            if hdr & 0x02:
                return parsed[1], parsed[2], b"".join(data)

    def _next_pdv(self, deadline: float | None) -> tuple[int, int, memoryview]:
        while not self._pdvs:
            header = self._recv(6, deadline, at_boundary=True)
            pdu_type, _, length = struct.unpack(">BBI", header)
            body = self._recv(length, deadline, at_boundary=False) if length else b""
            if pdu_type != pdu.P_DATA_TF:
                raise _HandBack(f"PDU type 0x{pdu_type:02X} during the {self.name}",
                                pdus=[bytes(header) + body])
            try:
                self._pdvs.extend(pdu.pdvs(memoryview(body)))
            except ValueError as exc:
                raise _HandBack(f"malformed P-DATA-TF: {exc}", abort=True) from None
        return self._pdvs.popleft()

    def _recv(self, n: int, deadline: float | None, at_boundary: bool) -> bytes:
        assert self.sock is not None
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:])
            except TimeoutError:
                if self.assoc._kill or self.dul._kill_thread:
                    raise _HandBack("association killed") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise _HandBack(f"DIMSE timeout waiting for a {self.name} response", abort=True) from None
                continue
            if k == 0:
                if at_boundary and got == 0:
                    raise _HandBack("connection closed by the peer")
                raise _HandBack("connection closed inside a PDU", abort=True)
            got += k
        return bytes(buf)


class DirectMove(DirectExchange):
    """A C-MOVE: ``responses()`` yields MoveRsp values (status None: no response, see ``why``)."""

    name = "C-MOVE"
    rsp_field = C_MOVE_RSP

    def __init__(self, assoc: Any, context_id: int, identifier: bytes, destination: str, sop_class: str,
                 message_id: int = 1) -> None:
        super().__init__(assoc, context_id, move_rq_command(message_id, sop_class, destination), identifier,
                         message_id)

    def responses(self) -> Iterator[MoveRsp]:
        for status, cmd, _identifier in self.messages():  # a Failed SOP Instance UID List is not needed
            if status is None:
                yield MoveRsp(None, why=self.why)
                return
            try:
                counts = _us(cmd, 0x1020), _us(cmd, 0x1021), _us(cmd, 0x1022), _us(cmd, 0x1023)
            except ValueError:
                if self.assoc.is_established:
                    self.assoc.abort()
                yield MoveRsp(None, why="malformed sub-operation counts")
                return
            yield MoveRsp(status, *counts)


class DirectFind(DirectExchange):
    """A C-FIND: ``messages()`` yields (status, command, encoded identifier of a match or None)."""

    name = "C-FIND"
    rsp_field = C_FIND_RSP

    def __init__(self, assoc: Any, context_id: int, identifier: bytes, sop_class: str,
                 message_id: int = 1) -> None:
        super().__init__(assoc, context_id, find_rq_command(message_id, sop_class), identifier, message_id)


def _request(assoc: Any, sop_class: UID, identifier: Dataset) -> tuple[int, UID, bytes | None, int]:
    """The accepted presentation context for ``sop_class`` as SCU (the one pynetdicom's ``send_c_*``
    would use), ``identifier`` encoded in its transfer syntax, and the next message ID on ``assoc``."""
    cx = assoc._get_valid_context(sop_class, "", "scu")
    ts = cx.transfer_syntax[0]
    raw = encode(identifier, ts.is_implicit_VR, ts.is_little_endian)
    assoc._radstream_msg_id = msg_id = getattr(assoc, "_radstream_msg_id", 0) % 0xFFFF + 1
    return int(cx.context_id), ts, raw, msg_id


def start_move(assoc: Any, identifier: Dataset, destination: str, sop_class: UID) -> DirectMove | None:
    """A C-MOVE of ``identifier`` to ``destination`` that has taken ``assoc``'s socket (read its
    ``responses()``); None: it cannot take the association, nothing was sent, use pynetdicom."""
    context_id, _ts, raw, msg_id = _request(assoc, sop_class, identifier)
    if raw is None:
        return None
    direct = DirectMove(assoc, context_id, raw, destination, str(sop_class), msg_id)
    return direct if direct.start() else None


def start_find(assoc: Any, query: Dataset, sop_class: UID) -> tuple[DirectFind, UID] | None:
    """A C-FIND of ``query`` that has taken ``assoc``'s socket (read its ``messages()``), with the transfer
    syntax of the identifiers it returns; None: it cannot take the association, nothing was sent."""
    context_id, ts, raw, msg_id = _request(assoc, sop_class, query)
    if raw is None:
        return None
    direct = DirectFind(assoc, context_id, raw, str(sop_class), msg_id)
    return (direct, ts) if direct.start() else None
