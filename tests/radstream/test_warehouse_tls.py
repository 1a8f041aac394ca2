"""Over HTTPS a token goes only to a peer that presents our certificate itself (auth.tls_cert's first
certificate, pinned), not to any certificate the same CA issued: a hospital CA signs many servers'
certificates, and ``auth.tls_cert`` is usually a chain file (leaf + CA). Real TLS listeners on loopback,
certificates made here for the test (one CA, two leaves)."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from radstream.config import Settings
from radstream.warehouse import open_ours, pinned
from streams.peer import PeerRefused, Trust, connect

TOKEN = "rst_0123456789ab_tls-pinned-secret"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One CA; two leaves it issued: ours and another server's. ``chain``: ours + the CA (a fullchain)."""
    d = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Hospital Test CA", ca_key, "Hospital Test CA", ca_key, ca=True)
    pem = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    out: dict[str, Path] = {}
    for who in ("ours", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        pem[who] = _cert(f"{who}.hospital.example", key, "Hospital Test CA", ca_key, ca=False).public_bytes(
            serialization.Encoding.PEM)
        out[f"{who}.key"] = d / f"{who}.key"
        out[f"{who}.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        out[who] = d / f"{who}.pem"
        out[who].write_bytes(pem[who])
    out["chain"] = d / "chain.pem"
    out["chain"].write_bytes(pem["ours"] + pem["ca"])
    return out


@contextmanager
def tls_listener(cert: Path, key: Path) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS listener on 127.0.0.1 serving ``cert``; records what each connection sends, answers 200."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                raw, _ = srv.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(3)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    size = [int(x.split(b":")[1]) for x in head.split(b"\r\n")
                            if x.lower().startswith(b"content-len")]
                    while size and len(body) < size[0] and (chunk := conn.recv(65536)):
                        body += chunk  # the whole request before answering: no reset under the client's send
                    got.append(head + b"\r\n\r\n" + body)
                    if data:
                        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok")
            except (OSError, ssl.SSLError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], got
    finally:
        srv.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        srv.close()
        thread.join(5)


def settings(tmp_path: Path, certs: dict[str, Path], tls_cert: str) -> Settings:
    return Settings(state_dir=str(tmp_path / "state")).replace(
        auth={"tls_cert": str(certs[tls_cert]), "tls_key": str(certs["ours.key"])})


def ask(s: Settings, port: int) -> bytes:
    req = urllib.request.Request(f"https://127.0.0.1:{port}/sql", data=b"SELECT 1", method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with open_ours(s, req, 5) as resp:
        body: bytes = resp.read()
        return body


@pytest.mark.parametrize("tls_cert", ["chain", "ours"])
def test_another_certificate_of_the_same_ca_is_sent_no_token(tmp_path: Path, certs: dict[str, Path],
                                                             tls_cert: str) -> None:
    s = settings(tmp_path, certs, tls_cert)
    with tls_listener(certs["other"], certs["other.key"]) as (port, got):
        if tls_cert == "chain":  # the CA in the file verifies the other certificate: the pin refuses it
            with pytest.raises(PeerRefused, match="TLS certificate is not ours"):
                ask(s, port)
        else:  # a leaf-only file: the handshake fails already (not issued by our leaf)
            with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
                ask(s, port)
    assert not any(TOKEN.encode() in x for x in got), got


@pytest.mark.parametrize("tls_cert", ["chain", "ours"])
def test_our_own_certificate_is_sent_the_token(tmp_path: Path, certs: dict[str, Path], tls_cert: str) -> None:
    # a chain file and a leaf-only file (the leaf is its own anchor) both work
    s = settings(tmp_path, certs, tls_cert)
    with tls_listener(certs["ours"], certs["ours.key"]) as (port, got):
        assert ask(s, port) == b"ok"
    assert any(f"Authorization: Bearer {TOKEN}".encode() in x for x in got), got


def test_readiness_over_tls_is_not_another_servers_port(tmp_path: Path, certs: dict[str, Path]) -> None:
    s = settings(tmp_path, certs, "chain")
    with tls_listener(certs["other"], certs["other.key"]) as (port, _), \
            pytest.raises(PeerRefused, match="not ours"):
        connect("127.0.0.1", port, Trust(), timeout=3, tls=pinned(s))
    with tls_listener(certs["ours"], certs["ours.key"]) as (port, _):
        connect("127.0.0.1", port, Trust(), timeout=3, tls=pinned(s))


def test_the_web_apps_readiness_over_tls_is_not_ready_on_another_servers_certificate(
        tmp_path: Path, certs: dict[str, Path]) -> None:
    # with the embedded store the web app is ready when the worker's port answers: under TLS that was a
    # bare connect, "ready" while another server held the port
    from radstream.web.data import Warehouse

    with tls_listener(certs["other"], certs["other.key"]) as (port, _):
        s = settings(tmp_path, certs, "chain").replace(worker={"web_port": port})
        with pytest.raises(PeerRefused, match="not ours"):
            Warehouse(s).reachable()
    with tls_listener(certs["ours"], certs["ours.key"]) as (port, _):
        assert Warehouse(settings(tmp_path, certs, "chain").replace(worker={"web_port": port})).reachable() \
            == "worker"
