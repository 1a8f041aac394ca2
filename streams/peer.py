"""Who answers before a token is sent: the one HTTP client for requests that carry a bearer token (or SQL) to
one of our own processes (the worker's /sql and /health, the processes' /metrics).

Over HTTPS the peer proves itself by presenting our certificate (``auth.tls_cert``'s first one, pinned:
``Pinned``; only the holder of its key can). Plain HTTP proves nothing: any local user may bind a port our
process is not listening on yet (a worker that is stopped, a DICOM worker that does not run here) and would
be sent the caller's token, and could answer the query. So a plain-HTTP connection is checked after it is
made and before a byte is sent: the other end must be a socket of this host (the kernel's sock_diag, or
/proc/net/tcp and tcp6, knows both ends of a local connection), owned by a trusted uid: this process's,
root's (it can read our memory anyway), or the configured service user's (``auth.service_user``: an
analyst's commands talking to the service's worker). A peer on another host gets a token over plain HTTP
only when ``auth.plain_http_remote`` says so. Checking the connection itself, not the listening port
beforehand, leaves no window between check and use (``peer_uid`` says whose socket it is, also before it is
accepted).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import os
import pwd
import re
import socket
import ssl
import struct
import sys
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_TIME_WAIT = "06"  # a closed socket's remains: no process reads it (and /proc shows it as uid 0)
_LISTEN = "0A"
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Listening:
    """A listening TCP socket: its address (a v4-mapped one as IPv4), port, owner, and whether it is
    V6ONLY (None: unknown, as in /proc)."""

    addr: IP
    port: int
    uid: int
    v6only: bool | None = None


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
    what: str = "a token"  # what would be sent, for the refusal
    setting: str = "auth.service_user (RADSTREAM_AUTH_SERVICE_USER)"  # names service_uid, for the refusal
    remote_hint: str = ("set auth.tls_cert/tls_key (HTTPS), or auth.plain_http_remote = true on a network "
                        "you trust")

    def uids(self) -> dict[int, str]:
        """Trusted uid -> why."""
        out = {0: "root", os.getuid(): "this process"}
        if self.service_uid is not None:
            out.setdefault(self.service_uid, "auth.service_user")
        return out

    def check(self, sock: socket.socket) -> None:
        """Raise PeerRefused unless the other end of the connected ``sock`` is a trusted peer."""
        host, port = _endpoint(sock.getpeername())
        why = self.refusal(host, port, peer_uid(sock, self.uids()))
        if why:
            raise PeerRefused(why)

    def refusal(self, host: IP, port: int, uid: int | None) -> str:
        """Why a token may not go to ``host:port`` whose socket has ``uid`` (None: not on this host);
        empty when it may."""
        where = f"{host}:{port}" if host.version == 4 else f"[{host}]:{port}"
        if uid is None:
            if host.is_loopback:  # should be listed; unreadable /proc or a vanished socket: unknown peer
                return (f"refusing to send {self.what} over plain HTTP to {where}: cannot tell which user's "
                        "process answers there (not found in /proc/net/tcp)")
            if not self.plain_http_remote:
                return (f"refusing to send {self.what} over plain HTTP to {where}, a peer on another host: "
                        f"{self.remote_hint}")
            return ""
        trusted = self.uids()
        if uid in trusted:
            return ""
        expected = ", ".join(f"{u} ({user_name(u)}: {why})" for u, why in sorted(trusted.items()))
        return (f"refusing to send {self.what} to {where}: the process listening on port {port} runs as uid "
                f"{uid} ({user_name(uid)}), expected uid {expected}; if uid {uid} is the user the radstream "
                f"services run as, set {self.setting}")


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


def peer_uid(sock: socket.socket, trusted: Collection[int] = (0,)) -> int | None:
    """The uid of the process at the other end of a connected TCP ``sock`` when it is on this host (in
    this network namespace), else None.

    The other end's socket is looked up by its four addresses (netlink sock_diag, one exact lookup; the
    /proc tables when that is not available: reading them walks the kernel's whole hash table, 10-30 ms).
    A socket not accepted yet shows uid 0 on kernels before 6.x's ``sk_uid`` (and a half-open one
    always, in sock_diag): for uid 0 the listener that holds it counts. Which one the kernel chose is not
    shown, and listeners of one port need not share a uid (a v4 socket and a V6ONLY v6 one bind the same
    port freely), so every listener that could have been chosen is a candidate (``_listener_uid``): the
    first one whose uid is not in ``trusted`` is returned (the check refuses it), else the most specific."""
    ours, theirs = _endpoint(sock.getsockname()), _endpoint(sock.getpeername())
    try:
        found = _diag_one(theirs, ours)
        if found is not None:
            state, uid = found
            if state == _TCP_TIME_WAIT:
                return None
            return uid or _listener_uid(theirs, _diag_listeners(theirs[1]), trusted)
    except OSError:
        pass
    entry, listeners = _proc_tables(theirs, ours)
    return entry or (_listener_uid(theirs, listeners, trusted) if entry == 0 else None)


def _listener_uid(theirs: tuple[IP, int], listeners: list[Listening],
                  trusted: Collection[int]) -> int | None:
    """The uid that decides for a connection to ``theirs`` that no process has accepted yet: of the
    listeners that could hold it (its exact address first, then a wildcard one: 0.0.0.0 or a dual-stack
    :: for IPv4, :: for IPv6; a :: one whose V6ONLY is unknown counts for IPv4 too), the first whose uid
    is not ``trusted``, else the most specific one's; None when there is none. Never one uid "for the
    port": taking the largest sent a token to another user's 127.0.0.1 listener beside our V6ONLY one."""
    host, port = theirs
    dual_stack = host.version == 4  # a v6 :: listener without V6ONLY takes IPv4 connections too
    exact = [lst.uid for lst in listeners if lst.port == port and lst.addr == host]
    wild = [lst.uid for lst in listeners if lst.port == port and lst.addr.is_unspecified
            and (lst.addr.version == host.version or dual_stack and not lst.v6only)]
    candidates = exact + wild
    untrusted = [uid for uid in candidates if uid not in trusted]
    return (untrusted or candidates)[0] if candidates else None


# --- netlink sock_diag (linux/inet_diag.h) ------------------------------------------------------------
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY = 4, 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_TIME_WAIT, _TCP_LISTEN = 6, 10
_NOCOOKIE = 0xFFFFFFFF
_INET_DIAG_SKV6ONLY = 11


def _diag_request(family: int, states: int, flags: int, sport: int = 0, dport: int = 0,
                  src: bytes = b"", dst: bytes = b"") -> list[tuple[int, Listening]]:
    """One sock_diag request -> (state, its local end: address, port, uid, V6ONLY) of each socket.
    OSError when the kernel gives no answer that says "none" (no netlink, no inet_diag, an error)."""
    sockid = struct.pack("!HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0") + struct.pack(
        "=LLL", 0, _NOCOOKIE, _NOCOOKIE)
    body = struct.pack("=BBBxL", family, socket.IPPROTO_TCP, 0, states) + sockid
    out: list[tuple[int, Listening]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2)
        nl.sendto(struct.pack("=LHHLL", 16 + len(body), _SOCK_DIAG_BY_FAMILY, flags, 1, 0) + body, (0, 0))
        while True:
            buf, off = nl.recv(65536), 0
            while off + 16 <= len(buf):
                length, kind = struct.unpack_from("=LH", buf, off)
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    err = struct.unpack_from("=i", buf, off + 16)[0]
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return out
                if kind == _SOCK_DIAG_BY_FAMILY:
                    msg = off + 16  # inet_diag_msg: family, state, timer, retrans, sockid, 4 u32, uid
                    fam, state = buf[msg], buf[msg + 1]
                    lport = struct.unpack_from("!H", buf, msg + 4)[0]
                    raw = buf[msg + 8:msg + 12] if fam == socket.AF_INET else buf[msg + 8:msg + 24]
                    addr = _endpoint((ipaddress.ip_address(bytes(raw)), lport))[0]
                    uid = struct.unpack_from("=L", buf, msg + 64)[0]
                    out.append((state, Listening(addr, lport, uid, _v6only(buf[msg + 72:off + length]))))
                off += max(16, (length + 3) & ~3)
            if not flags & _NLM_F_DUMP:
                return out


def _v6only(attrs: bytes) -> bool | None:
    """INET_DIAG_SKV6ONLY from the attributes after an inet_diag_msg (a v6 socket's), else None."""
    off = 0
    while off + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, off)
        if length < 4:
            return None
        if kind == _INET_DIAG_SKV6ONLY and length >= 5:
            return bool(attrs[off + 4])
        off += (length + 3) & ~3
    return None


def _diag_one(theirs: tuple[IP, int], ours: tuple[IP, int]) -> tuple[int, int] | None:
    """(state, uid) of the socket whose local end is ``theirs`` and remote end ``ours``."""
    family = socket.AF_INET if theirs[0].version == 4 else socket.AF_INET6
    # ENOENT (an OSError) for no such socket, but also for no diag module: the caller reads /proc then
    found = _diag_request(family, 0xFFFFFFFF, _NLM_F_REQUEST, theirs[1], ours[1], theirs[0].packed,
                          ours[0].packed)
    return (found[0][0], found[0][1].uid) if found else None


def _diag_listeners(port: int) -> list[Listening]:
    """The listening TCP sockets on ``port``, IPv4 and IPv6 (the port filtered here)."""
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for _, lst in _diag_request(family, 1 << _TCP_LISTEN, _NLM_F_REQUEST | _NLM_F_DUMP):
            if lst.port == port:
                out.append(lst)
    return out


# --- /proc/net/tcp, tcp6 --------------------------------------------------------------------------------
def _proc_tables(theirs: tuple[IP, int],
                 ours: tuple[IP, int]) -> tuple[int | None, list[Listening]]:
    """(uid of the connection's other end, or None; the listeners on its port) from /proc."""
    entry: int | None = None
    listeners: list[Listening] = []
    their_port, our_port = f":{theirs[1]:04X}", f":{ours[1]:04X}"
    for table in _TABLES:
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
            f = line.split()
            if len(f) < 8 or f[3] == _TIME_WAIT or not f[1].endswith(their_port):
                continue
            if f[3] == _LISTEN:
                listeners.append(Listening(*_proc_endpoint(f[1]), int(f[7])))  # V6ONLY unknown
            elif f[2].endswith(our_port) and _proc_endpoint(f[1]) == theirs and _proc_endpoint(f[2]) == ours:
                entry = int(f[7])  # a half-open one (SYN_RECV) shows its listener's uid here
    return entry, listeners


def _check_or_close(conn: http.client.HTTPConnection, check: Callable[[Any], None]) -> None:
    """``check`` the socket of a connection just made; closed (nothing sent) when it raises."""
    try:
        check(conn.sock)
    except BaseException:
        conn.sock.close()
        conn.sock = None
        raise


class _CheckedConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, trust: Trust, **kw: Any) -> None:
        super().__init__(host, **kw)
        self.trust = trust

    def connect(self) -> None:
        super().connect()
        _check_or_close(self, self.trust.check)


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, trust: Trust) -> None:
        super().__init__()
        self.trust = trust

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_CheckedConnection, trust=self.trust), req)


class _PinnedConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, pin: bytes, **kw: Any) -> None:
        super().__init__(host, **kw)
        self.pin = pin

    def connect(self) -> None:
        super().connect()  # TCP and the TLS handshake: nothing of the request is sent yet
        _check_or_close(self, lambda sock: check_pin(sock, self.pin, f"{self.host}:{self.port}"))


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, tls: Pinned) -> None:
        super().__init__(context=tls.context)
        self.tls = tls

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_PinnedConnection, pin=self.tls.der), req,
                            context=self.tls.context)


class _NoHTTPSHandler(urllib.request.HTTPSHandler):
    """Without our certificate, no HTTPS (urllib's default would trust any public CA's certificate)."""

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        raise PeerRefused(f"refusing to send a token to {req.full_url}: HTTPS without auth.tls_cert")


@dataclass(frozen=True)
class Pinned:
    """Our endpoints' certificate (``auth.tls_cert``): a peer must present exactly its first (leaf)
    certificate. Trusting the file as a CA is not enough: with a chain file (leaf + the hospital's CA)
    every certificate that CA issued, for any name, would pass, with the hostname not checked."""

    context: ssl.SSLContext
    der: bytes

    @classmethod
    def of(cls, cert_file: str) -> Pinned:
        text = Path(cert_file).read_text(encoding="ascii")
        found = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
        if not found:
            raise ValueError(f"{cert_file}: no PEM certificate")
        ctx = ssl.create_default_context(cafile=cert_file)
        ctx.check_hostname = False  # reached by its configured address; the pin below decides
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf-only file: the leaf is the anchor
        return cls(ctx, ssl.PEM_cert_to_DER_cert(found.group(0)))


def check_pin(sock: Any, pin: bytes, where: str) -> None:
    """PeerRefused unless the TLS peer of ``sock`` presented exactly the pinned certificate."""
    if sock.getpeercert(binary_form=True) != pin:
        raise PeerRefused(f"refusing to send a token to {where}: its TLS certificate is not ours "
                          "(not the first certificate in auth.tls_cert)")


def urlopen(req: urllib.request.Request, trust: Trust, *, timeout: float, tls: Pinned | None = None) -> Any:
    """``urllib.request.urlopen`` for a request to one of our processes: plain HTTP only to a peer
    ``trust`` accepts, HTTPS only to a peer that presents the ``tls`` certificate (PeerRefused
    otherwise, before anything is sent; no HTTPS at all without ``tls``); no proxy (our processes are
    addressed directly, a proxy would be sent the token)."""
    https = _PinnedHTTPSHandler(tls) if tls is not None else _NoHTTPSHandler()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _CheckedHTTPHandler(trust), https)
    return opener.open(req, timeout=timeout)


def connect(host: str, port: int, trust: Trust, timeout: float, tls: Pinned | None = None) -> None:
    """Connect to ``host:port`` and check the peer as ``urlopen`` would (readiness: nothing is sent):
    with ``tls``, the TLS handshake and the pinned certificate."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if tls is None:
            trust.check(sock)
            return
        with tls.context.wrap_socket(sock) as tsock:
            check_pin(tsock, tls.der, f"{host}:{port}")
