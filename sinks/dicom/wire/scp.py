"""The acceptor (storage SCP) side: C-STORE requests received and answered on pynetdicom's association.

Two paths, both installed from ``EVT_CONN_OPEN`` by ``sinks.dicom.scp`` when the self-check in
``sinks.dicom.wire.compat`` passes:

``fast_store_responses``: pynetdicom builds, validates and encodes a pydicom Dataset for every
C-STORE-RSP; a response without optional fields is encoded directly here (``store_rsp_command``, the
C-STORE-RSP command set of PS3.7 9.3.1.2) and sent as one P-DATA-TF PDU through pynetdicom's DUL.

``FastStore`` (``research.fast_path``), a direct receive loop for C-STORE requests (PS3.7 9.3.1.1).
pynetdicom moves every received PDU through two threads: its DUL reader decodes the PDU, runs the state
machine and builds a DIMSE message (the command set as a pydicom Dataset); the association thread polls
for it every 1 ms, calls our handler, and hands the response back to the DUL thread, which polls its
queue every 1 ms too. For a PACS that sends the next image only after our response, that is most of the
time per image.

While the association is established and the peer sends plain C-STORE requests, this loop reads the
P-DATA-TF PDUs itself on the association thread, decodes the command set (a small Implicit VR Little
Endian group 0000 data set), calls the store function and writes the pre-encoded C-STORE-RSP straight to
the socket. The DUL thread does not read the socket in Sta6 (established, PS3.8 9.2, which P-DATA does
not change) until the loop hands the association back: from the moment the DUL sends the
A-ASSOCIATE-AC, not from when the association thread reaches the loop. (It used to be the latter: a
peer that sent its first C-STORE at once could have it read by the DUL thread and decoded into
pynetdicom's DIMSE queue, which the loop never looks at; the loop then waited on the socket for a next
request that the peer, waiting for our response, never sent, until the peer's DIMSE timeout aborted
the association. About 1% of Orthanc's C-MOVEs stalled 30 s so and failed.) If anything was queued
for pynetdicom all the same when the loop starts, it hands the association back at once.

Anything else hands the association back to pynetdicom unchanged: the PDUs of the message in progress
(any non-P-DATA PDU: release, abort; any DIMSE message other than a C-STORE-RQ; a deflated transfer
syntax; an unknown presentation context; an idle connection) are replayed into the DUL exactly as its
reader would have queued them, the DUL reads the socket again and pynetdicom's own reactor takes over
for the rest of the association.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom import evt

from sinks.dicom.wire import pdu

LOG = logging.getLogger(__name__)

# store(raw dataset bytes, transfer syntax UID, SOP class UID, SOP instance UID, assoc) -> status
StoreFn = Callable[[bytes, str, str, str, Any], int]

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
POLL = 0.5  # seconds between checks for a killed association while waiting for data
# pynetdicom's DUL thread sleeps this long between idle polls while it owns the socket, i.e. during the
# association's negotiation and its release (pynetdicom's default 1 ms: ~1.5 ms per association here)
NEGOTIATION_LOOP_DELAY = 0.0002
ENDING_PDUS = (0x05, 0x07)  # A-RELEASE-RQ, A-ABORT: the association ends, the short delay can stay


TIMING = os.environ.get("RADSTREAM_SCP_TIMING", "") not in ("", "0")


class Phases:
    """Wall time per phase of the C-STORE path, summed over threads: measured only with
    ``RADSTREAM_SCP_TIMING=1`` (the callers check ``TIMING``), logged by the store when it stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ns: dict[str, int] = {}
        self.count: dict[str, int] = {}

    def add(self, name: str, since_ns: int) -> int:
        """Add the time since ``since_ns`` (``perf_counter_ns``) to ``name``; returns now."""
        now = time.perf_counter_ns()
        with self._lock:
            self.ns[name] = self.ns.get(name, 0) + now - since_ns
            self.count[name] = self.count.get(name, 0) + 1
        return now

    def report(self) -> str:
        with self._lock:
            return ", ".join(f"{k} {self.ns[k] / 1e6 / max(self.count[k], 1):.3f} ms x{self.count[k]}"
                             for k in sorted(self.ns))


PHASES = Phases()


def _timeval(seconds: float) -> bytes:
    return struct.pack("@ll", int(seconds), int((seconds % 1) * 1_000_000))


def _us(cmd: dict[int, bytes], elem: int) -> int | None:
    v = cmd.get(elem)
    return struct.unpack("<H", v)[0] if v is not None and len(v) == 2 else None


def _uid(cmd: dict[int, bytes], elem: int) -> str | None:
    v = cmd.get(elem)
    return v.decode("ascii").rstrip("\0 ") if v is not None else None


def store_rsp_command(message_id: int, sop_class: str, sop_instance: str, status: int) -> bytes:
    """The C-STORE-RSP command set (PS3.7 9.3.1.2), Implicit VR Little Endian, without optional fields."""
    return pdu.command_set(
        pdu.implicit_element(0x00000002, pdu.uid_value(sop_class)),
        pdu.implicit_element(0x00000100, struct.pack("<H", C_STORE_RSP)),  # CommandField
        pdu.implicit_element(0x00000120, struct.pack("<H", message_id)),  # MessageIDBeingRespondedTo
        pdu.implicit_element(0x00000800, struct.pack("<H", pdu.NO_DATASET)),  # CommandDataSetType
        pdu.implicit_element(0x00000900, struct.pack("<H", status)),
        pdu.implicit_element(0x00001000, pdu.uid_value(sop_instance)),
    )


def fast_store_responses(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler for our storage SCP: send plain C-STORE responses pre-encoded.

    pynetdicom builds, validates and encodes a pydicom Dataset for every C-STORE-RSP (three encodings
    of the command set per response), about a third of its CPU per received image and on the critical
    path: the PACS sends the next image only after the response. A response without optional fields
    (no ErrorComment, no OffendingElement) is encoded directly into one P-DATA PDV; anything else goes
    through pynetdicom unchanged.
    """
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.pdu_primitives import P_DATA

    dimse = event.assoc.dimse
    original = dimse.send_msg

    def send_msg(primitive: Any, context_id: int) -> None:
        if (isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None
                and primitive.ErrorComment is None and primitive.OffendingElement is None
                and primitive.Status is not None):
            cmd = store_rsp_command(int(primitive.MessageIDBeingRespondedTo),
                                    str(primitive.AffectedSOPClassUID),
                                    str(primitive.AffectedSOPInstanceUID), int(primitive.Status))
            peer_max = dimse.maximum_pdu_size
            if not peer_max or len(cmd) + 6 <= peer_max:
                pdata = P_DATA()
                pdata.presentation_data_value_list.append((context_id, b"\x03" + cmd))  # command, last
                dimse.dul.send_pdu(pdata)
                return
        original(primitive, context_id)

    dimse.send_msg = send_msg  # type: ignore[method-assign]


def parse_store_rq(data: bytes) -> tuple[int, str, str] | None:
    """(MessageID, AffectedSOPClassUID, AffectedSOPInstanceUID) of a C-STORE-RQ with a data set, else None."""
    try:
        cmd = pdu.decode_command(data)
        if _us(cmd, 0x0100) != C_STORE_RQ or _us(cmd, 0x0800) == pdu.NO_DATASET:
            return None
        msg_id, sop_class, sop_instance = _us(cmd, 0x0110), _uid(cmd, 0x0002), _uid(cmd, 0x1000)
    except (ValueError, UnicodeDecodeError):
        return None
    if msg_id is None or not sop_class or not sop_instance:
        return None
    return msg_id, sop_class, sop_instance


class _Closed(Exception):
    """The peer closed the connection (or the association was killed) at a PDU boundary."""


class FastStore:
    """Installed per association from ``EVT_CONN_OPEN`` (acceptor only); see the module docstring."""

    def __init__(self, assoc: Any, store: StoreFn, after: Callable[[], None] | None = None) -> None:
        self.assoc = assoc
        self.store = store
        self.after = after
        # True until the loop hands the association back: in Sta6 the socket is the loop's alone, also
        # before the association thread reaches the loop (see the module docstring)
        self.active = True
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
        with self._lock:  # a read the DUL thread had begun is over once we hold the lock
            queued = self._queued()
        if (not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket) or self.assoc.is_requestor
                or queued):
            if queued:
                LOG.warning("the DUL had read data before the C-STORE loop started: %s; pynetdicom "
                            "serves this association", queued)
            self.dul._run_loop_delay = self._loop_delay
            return self._fallback([])
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

    def _queued(self) -> str:
        """What pynetdicom holds already of this association's data (should be nothing)."""
        dimse = self.assoc.dimse
        if not self.dul.event_queue.empty() or not self.dul._recv_pdu.empty():
            return "PDUs queued in the DUL"
        if not dimse.msg_queue.empty() or getattr(dimse, "message", None) is not None:
            return "a DIMSE message received or begun"
        return ""

    def _fallback(self, pending: list[Any]) -> None:
        """Replay what we read of the unfinished message into the DUL, then pynetdicom's reactor."""
        for item in pending:
            if isinstance(item, bytes):  # a whole non-P-DATA PDU
                self._inject(item)
            else:
                self._inject(pdu.pdata_pdu([item]))
        self.dul._idle_timer.restart()
        self.active = False
        self._wake.set()
        type(self.assoc)._run_reactor(self.assoc)

    def _inject(self, raw: bytes) -> None:
        decoded, event = self.dul._decode_pdu(bytearray(raw))
        self.dul._recv_pdu.put(decoded)
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
            t0 = time.perf_counter_ns() if TIMING else 0
            if not self._recv_exact(sock, hview, at_boundary=True):
                return pending  # idle: pynetdicom's reactor applies its network timeout
            if TIMING:
                t0 = PHASES.add("wire.wait", t0)
            pdu_type, _, length = struct.unpack(">BBI", header)
            body = bytearray(length)
            if length and not self._recv_exact(sock, memoryview(body), at_boundary=False):
                raise ConnectionError("unreachable")
            if TIMING:
                PHASES.add("wire.recv", t0)
            if pdu_type != pdu.P_DATA_TF:
                return [*pending, bytes(header) + bytes(body)]
            items = pdu.pdvs(memoryview(body))
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
        t0 = time.perf_counter_ns() if TIMING else 0
        try:
            status = int(self.store(raw, ts, sop_class, sop_instance, self.assoc))
        except Exception:
            LOG.exception("C-STORE handler failed")
            status = 0xC211  # what pynetdicom answers when a handler raises
        if TIMING:
            t0 = PHASES.add("wire.store", t0)
        try:
            sock.sendall(pdu.pdata_pdu([(context_id, 0x03, store_rsp_command(msg_id, sop_class, sop_instance,
                                                                            status))]))
            if TIMING:
                PHASES.add("wire.send", t0)
        finally:
            if self.after is not None:  # what the store left for after the response (its writer's work)
                self.after()


def install(store: StoreFn, after: Callable[[], None] | None = None) -> Callable[[evt.Event], None]:
    """An ``EVT_CONN_OPEN`` handler that installs the fast C-STORE loop on every accepted association;
    ``after()`` runs on the association thread after each response is sent (also when sending fails)."""

    def on_open(event: evt.Event) -> None:
        if not event.assoc.is_requestor:
            FastStore(event.assoc, store, after)

    return on_open

