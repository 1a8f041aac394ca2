"""Who answers before a token is sent: the one HTTP client for requests that carry a bearer token (or SQL)
to one of our own processes (the worker's /sql and /health, the processes' /metrics).

Over HTTPS the peer proves itself with our certificate (``auth.tls_cert``, trusted as the only CA). Plain
HTTP proves nothing: any local user may bind a port our process is not listening on yet (a worker that is
stopped, a DICOM worker that does not run here) and would be sent the caller's token, and could answer
the query. So a plain-HTTP connection is checked after it is made and before a byte is sent: the other end
must be a socket of this host (Linux lists both ends of a local connection in /proc/net/tcp and tcp6),
owned by a trusted uid: this process's, root's (it can read our memory anyway), or the configured
service user's (``auth.service_user``: an analyst's commands talking to the service's worker). A
peer on another host gets a token over plain HTTP only when ``auth.plain_http_remote`` says so.
Checking the connection itself, not the listening port beforehand, leaves no window between check and
use; the uid of an accepted socket is the accepting process's, before accept() the listener's.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import os
import pwd
import socket
import ssl
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_TIME_WAIT = "06"  # a closed socket's remains: no process reads it (and /proc shows it as uid 0)
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class PeerRefused(Exception):
    """The peer is not known to be ours: nothing was sent. Not an OSError, so that urllib does not turn
    it into a URLError that callers take for "nobody answers"."""


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "?"


def uid_of(user: str) -> int:
    """A user name or a numeric uid -> the uid; ValueError for an unknown name."""
    if user.strip().isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user.strip()).pw_uid
    except KeyError:
        raise ValueError(f"no OS user {user!r}") from None


@dataclass(frozen=True)
class Trust:
    """Whom a token may be sent to over plain HTTP."""

    service_uid: int | None = None  # auth.service_user
    plain_http_remote: bool = False  # auth.plain_http_remote: a peer on another host, unauthenticated

    def uids(self) -> dict[int, str]:
        """Trusted uid -> why."""
        out = {0: "root", os.getuid(): "this process"}
        if self.service_uid is not None:
            out.setdefault(self.service_uid, "auth.service_user")
        return out

    def check(self, sock: socket.socket) -> None:
        """Raise PeerRefused unless the other end of the connected ``sock`` is a trusted peer."""
        host, port = _endpoint(sock.getpeername())
        why = self.refusal(host, port, peer_uid(sock))
        if why:
            raise PeerRefused(why)

    def refusal(self, host: IP, port: int, uid: int | None) -> str:
        """Why a token may not go to ``host:port`` whose socket has ``uid`` (None: not on this host);
        empty when it may."""
        where = f"{host}:{port}" if host.version == 4 else f"[{host}]:{port}"
        if uid is None:
            if host.is_loopback:  # should be listed; unreadable /proc or a vanished socket: unknown peer
                return (f"refusing to send a token over plain HTTP to {where}: cannot tell which user's "
                        "process answers there (not found in /proc/net/tcp)")
            if not self.plain_http_remote:
                return (f"refusing to send a token over plain HTTP to {where}, a peer on another host: "
                        "set auth.tls_cert/tls_key (HTTPS), or auth.plain_http_remote = true on a network "
                        "you trust")
            return ""
        trusted = self.uids()
        if uid in trusted:
            return ""
        expected = ", ".join(f"{u} ({user_name(u)}: {why})" for u, why in sorted(trusted.items()))
        return (f"refusing to send a token to {where}: the process listening on port {port} runs as uid "
                f"{uid} ({user_name(uid)}), expected uid {expected}; if uid {uid} is the user the radstream "
                "services run as, set auth.service_user (RADSTREAM_AUTH_SERVICE_USER)")


def _endpoint(addr: Any) -> tuple[IP, int]:
    ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a v4 client of a dual-stack listener is listed in tcp6 as ::ffff:a.b.c.d
    return ip, int(addr[1])


def _proc_endpoint(text: str) -> tuple[IP, int]:
    """``0100007F:1F90`` (the kernel prints each 32-bit word of the address in host byte order)."""
    host, port = text.split(":")
    raw = b"".join(int(host[i:i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(host), 8))
    return _endpoint((ipaddress.ip_address(raw), int(port, 16)))


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the socket at the other end of a connected TCP ``sock`` when it is on this host (in
    this network namespace), else None."""
    ours, theirs = _endpoint(sock.getsockname()), _endpoint(sock.getpeername())
    their_port, our_port = f":{theirs[1]:04X}", f":{ours[1]:04X}"
    for table in _TABLES:
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
            f = line.split()
            if len(f) < 8 or f[3] == _TIME_WAIT:
                continue
            if not (f[1].endswith(their_port) and f[2].endswith(our_port)):  # cheap before parsing
                continue
            if _proc_endpoint(f[1]) == theirs and _proc_endpoint(f[2]) == ours:
                return int(f[7])
    return None


class _CheckedConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, trust: Trust, **kw: Any) -> None:
        super().__init__(host, **kw)
        self.trust = trust

    def connect(self) -> None:
        super().connect()
        try:
            self.trust.check(self.sock)
        except BaseException:
            self.sock.close()
            self.sock = None
            raise


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, trust: Trust) -> None:
        super().__init__()
        self.trust = trust

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_CheckedConnection, trust=self.trust), req)


def urlopen(req: urllib.request.Request, trust: Trust, *, timeout: float,
            context: ssl.SSLContext | None = None) -> Any:
    """``urllib.request.urlopen`` for a request to one of our processes: plain HTTP only to a peer
    ``trust`` accepts (PeerRefused otherwise, before anything is sent), HTTPS with ``context``; no
    proxy (our processes are addressed directly, a proxy would be sent the token)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _CheckedHTTPHandler(trust),
                                         urllib.request.HTTPSHandler(context=context))
    return opener.open(req, timeout=timeout)


def connect(host: str, port: int, trust: Trust, timeout: float) -> None:
    """Connect to ``host:port`` and check the peer as ``urlopen`` would (readiness: nothing is sent)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        trust.check(sock)
