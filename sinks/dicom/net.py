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


def quiet_pynetdicom() -> None:
    """Drop pynetdicom's per-message logging handlers (they cost CPU on every DIMSE message)."""
    from pynetdicom import _config

    _config.LOG_HANDLER_LEVEL = "none"


def tune_process(switch_interval: float = 0.0005) -> None:
    """Process-wide settings for our long-running DICOM processes (``radstream dicom worker|scp``).

    - A shorter GIL switch interval: every image crosses three threads (pynetdicom's DUL reader, the
      association reactor, our writer); with the default 5 ms a busy thread delays each hand-off.
    - No value validation in pydicom: we pass through what the PACS sent (UIDs, command sets) and
      validating every element of every DIMSE message costs CPU on the critical path.
    """
    import sys

    import pydicom.config as pc

    sys.setswitchinterval(switch_interval)
    pc.settings.reading_validation_mode = pc.IGNORE
    pc.settings.writing_validation_mode = pc.IGNORE


def make_ae(ae_title: str, acse_timeout: float = 30.0, dimse_timeout: float = 120.0,
            network_timeout: float = 120.0) -> AE:
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        quiet_pynetdicom()
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
