"""Application Entity set-up shared by our SCUs and our SCP.

pynetdicom leaves Nagle's algorithm on, so every small DIMSE message (a C-MOVE
pending response, a C-STORE response) waits for the peer's delayed ACK (~40 ms).
We switch it off on every socket pynetdicom opens or accepts, through the
``EVT_CONN_OPEN`` notification: for a requestor it fires right after
``connect()``; for an acceptor right after the socket is wrapped, before the
association reactor starts. Both times ``event.assoc.dul.socket.socket`` is the
live TCP socket.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pynetdicom import AE, evt

LOG = logging.getLogger(__name__)

# Largest P-DATA PDU we accept; big PDUs cut per-fragment overhead in pynetdicom (0 = unlimited).
MAX_PDU = 4 * 1024 * 1024


def set_nodelay(event: evt.Event) -> None:
    """``EVT_CONN_OPEN`` handler: TCP_NODELAY on the association's socket."""
    sock: Any = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # socket already closed by the peer
            LOG.debug("TCP_NODELAY not set: %s", exc)


NODELAY_HANDLERS: list[Any] = [(evt.EVT_CONN_OPEN, set_nodelay)]


def make_ae(ae_title: str, acse_timeout: float = 30.0, dimse_timeout: float = 120.0,
            network_timeout: float = 120.0) -> AE:
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = acse_timeout
    ae.dimse_timeout = dimse_timeout
    ae.network_timeout = network_timeout
    ae.connection_timeout = min(acse_timeout, 10.0)
    ae.maximum_pdu_size = MAX_PDU
    return ae


def echo(host: str, port: int, called_ae: str, calling_ae: str, timeout: float = 5.0) -> bool:
    """C-ECHO: True when the peer answers with status 0x0000."""
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = make_ae(calling_ae, acse_timeout=timeout, dimse_timeout=timeout, network_timeout=timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=NODELAY_HANDLERS)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and int(getattr(status, "Status", -1)) == 0
    finally:
        assoc.release()
