"""A direct receive loop for C-STORE requests on an established pynetdicom association (acceptor side).

pynetdicom moves every received PDU through two threads: its DUL reader decodes the PDU, runs the state
machine and builds a DIMSE message (the command set as a pydicom Dataset); the association thread polls
for it every 1 ms, calls our handler, and hands the response back to the DUL thread, which polls its
queue every 1 ms too. For a PACS that sends the next image only after our response, that is most of the
time per image.

While the association is established and the peer sends plain C-STORE requests, this loop reads the
P-DATA-TF PDUs itself on the association thread, decodes the command set (a small Implicit VR Little
Endian group 0000 data set), calls the store function and writes the pre-encoded C-STORE-RSP straight to
the socket. The DUL thread is told not to read the socket while the loop runs (the state machine stays
in Sta6, which P-DATA does not change).

Anything else hands the association back to pynetdicom unchanged: the PDUs of the message in progress
(any non-P-DATA PDU: release, abort; any DIMSE message other than a C-STORE-RQ; a deflated transfer
syntax; an unknown presentation context; an idle connection) are replayed into the DUL exactly as its
reader would have queued them, the DUL reads the socket again and pynetdicom's own reactor takes over
for the rest of the association.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom import evt

from sinks.dicom.net import store_rsp_command

LOG = logging.getLogger(__name__)

# store(raw dataset bytes, transfer syntax UID, SOP class UID, SOP instance UID, assoc) -> status
StoreFn = Callable[[bytes, str, str, str, Any], int]

C_STORE_RQ = 0x0001
NO_DATASET = 0x0101
P_DATA_TF = 0x04
POLL = 0.5  # seconds between checks for a killed association while waiting for data
# pynetdicom's DUL thread sleeps this long between idle polls while it owns the socket, i.e. during the
# association's negotiation and its release (pynetdicom's default 1 ms: ~1.5 ms per association here)
NEGOTIATION_LOOP_DELAY = 0.0002
ENDING_PDUS = (0x05, 0x07)  # A-RELEASE-RQ, A-ABORT: the association ends, the short delay can stay


def _timeval(seconds: float) -> bytes:
    return struct.pack("@ll", int(seconds), int((seconds % 1) * 1_000_000))


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


def _us(cmd: dict[int, bytes], elem: int) -> int | None:
    v = cmd.get(elem)
    return struct.unpack("<H", v)[0] if v is not None and len(v) == 2 else None


def _uid(cmd: dict[int, bytes], elem: int) -> str | None:
    v = cmd.get(elem)
    return v.decode("ascii").rstrip("\0 ") if v is not None else None


def parse_store_rq(data: bytes) -> tuple[int, str, str] | None:
    """(MessageID, AffectedSOPClassUID, AffectedSOPInstanceUID) of a C-STORE-RQ with a data set, else None."""
    try:
        cmd = decode_command(data)
        if _us(cmd, 0x0100) != C_STORE_RQ or _us(cmd, 0x0800) == NO_DATASET:
            return None
        msg_id, sop_class, sop_instance = _us(cmd, 0x0110), _uid(cmd, 0x0002), _uid(cmd, 0x1000)
    except (ValueError, UnicodeDecodeError):
        return None
    if msg_id is None or not sop_class or not sop_instance:
        return None
    return msg_id, sop_class, sop_instance


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
    """A P-DATA-TF PDU holding the given PDV items."""
    body = b"".join(struct.pack(">IBB", len(d) + 2, cx, hdr) + bytes(d) for cx, hdr, d in items)
    return struct.pack(">BBI", P_DATA_TF, 0, len(body)) + body


class _Closed(Exception):
    """The peer closed the connection (or the association was killed) at a PDU boundary."""


class FastStore:
    """Installed per association from ``EVT_CONN_OPEN`` (acceptor only); see the module docstring."""

    def __init__(self, assoc: Any, store: StoreFn) -> None:
        self.assoc = assoc
        self.store = store
        self.active = False  # True while this loop owns the socket
        self._lock = threading.Lock()  # held by the DUL thread while it reads the socket
        self._wake = threading.Event()  # set when the loop hands the association back
        self.dul = assoc.dul
        self._orig_transport = self.dul._is_transport_event
        self.dul._is_transport_event = self._gated_transport
        self._loop_delay = self.dul._run_loop_delay
        self.dul._run_loop_delay = NEGOTIATION_LOOP_DELAY
        assoc._run_reactor = self.run

    # -- DUL side ------------------------------------------------------------------------------
    def _gated_transport(self) -> bool:
        # Runs on the DUL thread. Once established (Sta6) and while we own the socket, it stays unread,
        # and the DUL thread waits here (instead of polling every 1 ms) until we hand the socket back:
        # it then acts at once on what we replayed (a release request is answered without delay).
        if self.active and self.dul.state_machine.current_state == "Sta6":
            self._wake.wait(POLL)
        with self._lock:
            if self.active and self.dul.state_machine.current_state == "Sta6":
                return False
            return bool(self._orig_transport())

    # -- association thread ------------------------------------------------------------------
    def run(self) -> None:
        sock: Any = getattr(self.dul.socket, "socket", None)
        if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket) or self.assoc.is_requestor:
            self.dul._run_loop_delay = self._loop_delay
            return self._fallback([])
        with self._lock:  # a read the DUL thread had begun is over once we hold the lock
            self.active = True
        pending: list[Any] = []
        ending = False
        try:
            timeout = sock.gettimeout()
            # a blocking socket with a kernel receive timeout: one recv per PDU part (MSG_WAITALL) instead of
            # poll + recv per chunk; every system call releases and retakes the GIL, which the writer
            # threads and a second association contend for
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(POLL))
            try:
                pending = self._loop(sock)
            finally:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0.0))
                sock.settimeout(timeout)
            ending = bool(pending) and isinstance(pending[-1], bytes) and pending[-1][0] in ENDING_PDUS
        except _Closed:
            pending, ending = [], True
        except Exception:
            LOG.exception("fast C-STORE path failed; handing the association back to pynetdicom")
            pending = []
        if not ending:  # pynetdicom serves the rest of a live association: its own idle polling again
            self.dul._run_loop_delay = self._loop_delay
        return self._fallback(pending)

    def _fallback(self, pending: list[Any]) -> None:
        """Replay what we read of the unfinished message into the DUL, then pynetdicom's reactor."""
        for item in pending:
            if isinstance(item, bytes):  # a whole non-P-DATA PDU
                self._inject(item)
            else:
                self._inject(pdata_pdu([item]))
        self.dul._idle_timer.restart()
        self.active = False
        self._wake.set()
        type(self.assoc)._run_reactor(self.assoc)

    def _inject(self, raw: bytes) -> None:
        pdu, event = self.dul._decode_pdu(bytearray(raw))
        self.dul._recv_pdu.put(pdu)
        self.dul.event_queue.put(event)

    def _recv_exact(self, sock: socket.socket, buf: memoryview, at_boundary: bool) -> bool:
        """Fill buf; False when idle at a PDU boundary for longer than the network timeout."""
        got, idle_since = 0, time.monotonic()
        limit = self.assoc.network_timeout
        while got < len(buf):
            try:
                n = sock.recv_into(buf[got:], 0, socket.MSG_WAITALL)
            except (TimeoutError, BlockingIOError):  # SO_RCVTIMEO passed without data
                if self.assoc._kill or self.dul._kill_thread:
                    raise _Closed() from None
                if at_boundary and got == 0 and limit is not None and time.monotonic() - idle_since > limit:
                    return False
                continue
            if n == 0:
                if at_boundary and got == 0:
                    raise _Closed()
                raise ConnectionError("connection closed inside a PDU")
            got += n
        return True

    def _loop(self, sock: socket.socket) -> list[Any]:
        header = bytearray(6)
        hview = memoryview(header)
        command: list[memoryview] = []
        dataset: list[memoryview] = []
        pending: list[Any] = []  # what the unfinished message consumed, for a replay
        parsed: tuple[int, str, str] | None = None
        context_id = -1
        while not self.assoc._kill:
            if not self._recv_exact(sock, hview, at_boundary=True):
                return pending  # idle: pynetdicom's reactor applies its network timeout
            pdu_type, _, length = struct.unpack(">BBI", header)
            body = bytearray(length)
            if length and not self._recv_exact(sock, memoryview(body), at_boundary=False):
                raise ConnectionError("unreachable")
            if pdu_type != P_DATA_TF:
                return [*pending, bytes(header) + bytes(body)]
            items = pdvs(memoryview(body))
            for i, item in enumerate(items):
                cx, hdr, frag = item
                pending.append(item)
                if hdr & 0x01:  # command fragment
                    if parsed is not None or dataset:
                        return [*pending, *items[i + 1:]]
                    command.append(frag)
                    context_id = cx
                    if hdr & 0x02:
                        parsed = parse_store_rq(b"".join(command))
                        if parsed is None or not self._fast_context(cx):
                            return [*pending, *items[i + 1:]]
                    continue
                if parsed is None or cx != context_id:  # data before the command: let pynetdicom refuse it
                    return [*pending, *items[i + 1:]]
                dataset.append(frag)
                if hdr & 0x02:
                    self._serve(context_id, parsed, b"".join(dataset), sock)
                    command, dataset, pending, parsed = [], [], [], None
        raise _Closed()

    def _fast_context(self, context_id: int) -> bool:
        cx = self.assoc._accepted_cx.get(context_id)
        return cx is not None and cx.transfer_syntax[0] != DeflatedExplicitVRLittleEndian

    def _serve(self, context_id: int, parsed: tuple[int, str, str], raw: bytes, sock: socket.socket) -> None:
        msg_id, sop_class, sop_instance = parsed
        ts = str(self.assoc._accepted_cx[context_id].transfer_syntax[0])
        try:
            status = int(self.store(raw, ts, sop_class, sop_instance, self.assoc))
        except Exception:
            LOG.exception("C-STORE handler failed")
            status = 0xC211  # what pynetdicom answers when a handler raises
        sock.sendall(pdata_pdu([(context_id, 0x03, store_rsp_command(msg_id, sop_class, sop_instance,
                                                                        status))]))


def install(store: StoreFn) -> Callable[[evt.Event], None]:
    """An ``EVT_CONN_OPEN`` handler that installs the fast C-STORE loop on every accepted association."""

    def on_open(event: evt.Event) -> None:
        if not event.assoc.is_requestor:
            FastStore(event.assoc, store)

    return on_open

