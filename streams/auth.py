"""Who may call our HTTP endpoints: users with roles, API tokens stored as argon2id hashes.

Roles (docs/access.md): ``analyst`` reads de-identified data, ``steward`` also the restricted tables
(original text, ``deid_map``, dead letters, quarantine, identified projects), ``ingest`` may post
reports, ``admin`` may do everything. What a role may read in the warehouse is data
(``sinks/clickhouse/roles/<role>.json``); this module only knows who holds which role.

A token reads ``rst_<id>_<secret>``: ``<id>`` (public) finds the one stored hash to verify, so a
request costs at most one argon2 verification (deliberately slow: 0.66-1.2 s measured on our 2-core
machine under a load average of 8), and a verified token is trusted from an in-process cache for
``cache_s`` seconds. The store is one JSON file (mode 0600, directory 0700) that ``radstream auth``
edits; servers re-read it when it changes and drop the cache then, so a revocation takes effect on the
next request. A token may carry an expiry (``expires``, UTC): from then on it verifies to nobody, also
from the cache (a cache entry never outlives its token).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("analyst", "steward", "ingest", "admin", "monitor")  # monitor: /metrics, /health, /ready only
TOKEN_PREFIX = "rst"
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


class AuthError(Exception):
    """A request is not authenticated (``status`` 401) or not allowed (403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Busy(AuthError):
    """No argon2 verification could start in time (503): as many run as ``max_verifying`` allows, and one
    per token id at a time. A flood of bad tokens costs a bounded CPU and memory (64 MiB per check), and
    a caller that waits its turn past ``busy_wait_s`` is answered at once, without hashing."""

    def __init__(self) -> None:
        super().__init__(503, "too many token checks at once: retry in a moment")


@dataclass(frozen=True)
class Principal:
    user: str
    roles: frozenset[str]
    token_id: str = ""

    def has(self, role: str) -> bool:
        """True when the principal holds ``role`` (admin holds every role)."""
        return role in self.roles or "admin" in self.roles

    def require(self, *roles: str) -> None:
        """Raise 403 unless the principal holds one of ``roles``."""
        if not any(self.has(r) for r in roles):
            raise AuthError(403, f"user {self.user!r} (roles {', '.join(sorted(self.roles))}) lacks the role "
                                 f"{' or '.join(roles)}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def split_token(token: str) -> tuple[str, str] | None:
    """``rst_<id>_<secret>`` -> (id, secret), or None for anything else."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class TokenStore:
    """The users and token hashes of one file; safe to share between threads."""

    def __init__(self, path: str | Path, cache_s: float = 60.0, *, max_verifying: int = 2,
                 busy_wait_s: float = 2.0, failed_s: float = 30.0) -> None:
        self.path = Path(path)
        self.cache_s = cache_s
        self.max_verifying = max_verifying
        self.busy_wait_s = busy_wait_s
        self.failed_s = failed_s
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._data: dict[str, Any] = {"users": {}, "tokens": {}}
        self._cache: dict[str, tuple[Principal, float]] = {}
        # tokens (by digest) that failed the argon2 check lately: the same bad token again costs nothing
        self._failed: dict[str, float] = {}
        self._slots = threading.Condition()
        self._verifying: set[str] = set()  # token ids whose argon2 check runs now

    # --- reading -----------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        """The current file contents (re-read when the file changed; the cache is dropped then)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            data: dict[str, Any] = {"users": {}, "tokens": {}}
            if stamp is not None:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            self._data, self._stamp = data, stamp
            self._cache.clear()
            self._failed.clear()
        return self._data

    def users(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._load()["users"]))

    def tokens(self) -> dict[str, Any]:
        """Token id -> user, created, revoked, note (never the hash)."""
        with self._lock:
            toks = self._load()["tokens"]
            return {tid: {k: v for k, v in t.items() if k != "hash"} for tid, t in toks.items()}

    def _known(self, key: str, tid: str) -> tuple[Principal | None, dict[str, Any] | None, Any]:
        """(cached principal, token entry, user) of a token, under the lock; (None, None, None) for one
        that failed lately."""
        with self._lock:
            data = self._load()
            now = time.monotonic()
            hit = self._cache.get(key)
            if hit is not None and hit[1] > now:
                return hit[0], None, None
            if self._failed.get(key, 0.0) > now:
                return None, None, None
            entry = data["tokens"].get(tid)
            return None, entry, data["users"].get(entry["user"]) if entry else None

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token of an enabled user; None otherwise. Raises ``Busy``
        when its argon2 check could not start within ``busy_wait_s``."""
        parsed = split_token(token)
        if parsed is None:
            return None
        tid, secret = parsed
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, entry, user = self._known(key, tid)
        if hit is not None:
            return hit
        if entry is None or user is None or entry.get("revoked") or user.get("disabled"):
            return None
        if _seconds_left(entry) <= 0:
            return None
        self._take_slot(tid)
        try:
            # another request may have verified (or failed) the same token while this one waited
            hit, entry, user = self._known(key, tid)
            if hit is not None or entry is None or user is None:
                return hit
            if entry.get("revoked") or user.get("disabled"):
                return None
            left = _seconds_left(entry)
            if left <= 0:
                return None
            until = time.monotonic() + min(self.cache_s, left)  # taken before the slow check: never later
            try:
                _HASHER.verify(entry["hash"], secret)  # outside the lock: ~1 s by design (docs/access.md)
            except (VerificationError, InvalidHashError):
                self._remember_failure(key)
                return None
        finally:
            self._give_slot(tid)
        principal = Principal(entry["user"], frozenset(user.get("roles", ())), tid)
        with self._lock:
            if self._data["tokens"].get(tid) is entry:  # not revoked meanwhile
                self._cache[key] = (principal, until)
        return principal

    def _take_slot(self, tid: str) -> None:
        """Wait for an argon2 slot (at most ``max_verifying`` at once, one per token id); Busy after
        ``busy_wait_s``."""
        deadline = time.monotonic() + self.busy_wait_s
        with self._slots:
            while tid in self._verifying or len(self._verifying) >= self.max_verifying:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy()
                self._slots.wait(left)
            self._verifying.add(tid)

    def _give_slot(self, tid: str) -> None:
        with self._slots:
            self._verifying.discard(tid)
            self._slots.notify_all()

    def _remember_failure(self, key: str) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._failed) >= 4096:  # bounded: the expired ones first, else all
                self._failed = {k: t for k, t in self._failed.items() if t > now}
                if len(self._failed) >= 4096:
                    self._failed.clear()
            self._failed[key] = now + self.failed_s

    # --- editing (radstream auth) ------------------------------------------------------------------
    @contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        """The current contents, to change and save, under the thread lock and an exclusive lock on
        ``<file>.lock`` (another process, e.g. a server creating the local token, may edit too)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._stamp = None  # re-read under the lock
            yield self._load()

    def _save(self, data: dict[str, Any]) -> None:
        _write_private(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        self._stamp = None  # re-read on next use

    def add_user(self, name: str, roles: Iterable[str]) -> None:
        roles = sorted(set(roles))
        bad = [r for r in roles if r not in ROLES]
        if bad or not roles:
            raise ValueError(f"roles must be some of {', '.join(ROLES)}; got {', '.join(bad) or 'none'}")
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"bad user name {name!r}")
        with self._editing() as data:
            user = data["users"].setdefault(name, {"created": _now()})
            user["roles"] = roles
            user.pop("disabled", None)
            self._save(data)

    def add_token(self, user: str, note: str = "", expires_in: timedelta | None = None,
                  replaces_note: bool = False) -> str:
        """A new token for ``user``; the only time the secret is seen (only its hash is kept).

        ``expires_in``: the token verifies to nobody after that long. ``replaces_note``: revoke the user's
        active tokens with the same ``note`` first (a sign-in that supersedes the previous one)."""
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValueError("a token's lifetime must be positive")
        with self._editing() as data:
            if user not in data["users"]:
                raise KeyError(f"no user {user!r}: `radstream auth add-user {user} --role ...` first")
            if replaces_note:
                for old in data["tokens"].values():
                    if old["user"] == user and old.get("note") == note and not old.get("revoked"):
                        old["revoked"] = _now()
            tid = secrets.token_hex(6)
            while tid in data["tokens"]:
                tid = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            data["tokens"][tid] = {"user": user, "hash": _HASHER.hash(secret), "created": _now(),
                                   "note": note}
            if expires_in is not None:
                expires = datetime.now(UTC) + expires_in
                data["tokens"][tid]["expires"] = expires.isoformat(timespec="seconds")
            self._save(data)
        return f"{TOKEN_PREFIX}_{tid}_{secret}"

    def revoke(self, what: str) -> list[str]:
        """Revoke a token (by id) or every token of a user (and disable the user). Returns the token
        ids revoked."""
        with self._editing() as data:
            if what in data["tokens"]:
                ids = [what]
            elif what in data["users"]:
                ids = [t for t, e in data["tokens"].items() if e["user"] == what]
                data["users"][what]["disabled"] = True
            else:
                raise KeyError(f"no token id or user {what!r}")
            for tid in ids:
                data["tokens"][tid]["revoked"] = _now()
            self._save(data)
        return ids


def _seconds_left(entry: dict[str, Any]) -> float:
    """Seconds until a token entry expires (infinity without an expiry)."""
    expires = entry.get("expires")
    if not expires:
        return float("inf")
    return (datetime.fromisoformat(expires) - datetime.now(UTC)).total_seconds()


def request_token(authorization: str | None, api_key: str | None) -> str | None:
    """The token of a request: ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key.strip() if api_key and api_key.strip() else None


def authenticate(store: TokenStore, authorization: str | None, api_key: str | None) -> Principal:
    """The principal of a request, or AuthError(401) without a token or with a bad one."""
    token = request_token(authorization, api_key)
    if token is None:
        raise AuthError(401, "authentication required: send Authorization: Bearer <token>")
    principal = store.verify(token)
    if principal is None:
        raise AuthError(401, "invalid, revoked or unknown token")
    return principal


def token_id_of(authorization: str | None, api_key: str | None) -> str:
    """The public id part of a presented token (for the audit of a failed login; never the secret)."""
    token = request_token(authorization, api_key)
    parsed = split_token(token) if token else None
    return parsed[0] if parsed else ""


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext | None:
    """TLS for an HTTP endpoint when both a certificate and a key are configured (TLS 1.2 or newer)."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("TLS needs both auth.tls_cert and auth.tls_key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


LOCAL_TOKEN = "local.token"


def local_user() -> str:
    import getpass

    return f"os:{getpass.getuser()}"


def local_token(store: TokenStore, audit_log: str | Path | None = None) -> str:
    """The token of the OS user who owns the token store (role admin), kept beside the store in
    ``local.token`` (0600) and created on first use. Whoever can read that file can already read the
    store's files and edit the token store, so it grants nothing new: it lets local commands
    (``radstream sql``, ``cohort``, ``similar``) reach a running worker. ``RADSTREAM_TOKEN`` overrides it.
    Creating the user or the token is audited (``auth.add-user`` / ``auth.add-token``) to ``audit_log``
    as ``radstream auth`` does, and to the audit logger."""
    from streams.audit import FileAudit, record

    path = store.path.with_name(LOCAL_TOKEN)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token and store.verify(token) is not None:
        return token
    target = FileAudit(audit_log) if audit_log else None
    user = local_user()
    if user not in store.users() or store.users()[user].get("disabled"):
        store.add_user(user, ["admin"])
        record(target, user, "auth.add-user", user=user, roles=["admin"], why="local commands")
    note = "local commands of the store's OS user"
    token = store.add_token(user, note=note)
    _write_private(path, token + "\n")
    record(target, user, "auth.add-token", user=user, token_id=token.split("_")[1], note=note)
    return token


def client_token(store_path: str | Path, audit_log: str | Path | None = None) -> str:
    """The token a local command sends: ``RADSTREAM_TOKEN``, else the OS user's local token."""
    env = os.environ.get("RADSTREAM_TOKEN", "").strip()
    return env or local_token(TokenStore(store_path), audit_log)


class Gate:
    """Authentication of one HTTP endpoint: the token store, and the audit of failed logins."""

    def __init__(self, store: TokenStore, audit: Any = None, service: str = "http") -> None:
        self.store = store
        self.audit = audit  # a streams.audit target (or None: the audit logger only)
        self.service = service
        from streams import metrics

        for status in ("401", "403"):  # at 0 from the start, so that increase() sees the first refusal
            metrics.AUTH_FAILURES.labels(service, status)

    def check(self, authorization: str | None, api_key: str | None, *, client: str,
              endpoint: str) -> Principal:
        """The caller's principal; AuthError(401) (audited as ``login.failure``) otherwise."""
        from streams import audit, metrics

        try:
            return authenticate(self.store, authorization, api_key)
        except AuthError as exc:
            metrics.AUTH_FAILURES.labels(self.service, str(exc.status)).inc()
            audit.record(self.audit, "", "login.failure", allowed=False, service=self.service,
                         endpoint=endpoint, client=client, token_id=token_id_of(authorization, api_key),
                         reason=exc.reason)
            raise

    def refused(self, principal: Principal, exc: AuthError, *, client: str, endpoint: str) -> None:
        """Audit (and count) a 403."""
        from streams import audit, metrics

        metrics.AUTH_FAILURES.labels(self.service, str(exc.status)).inc()
        audit.record(self.audit, principal.user, "http.request", allowed=False, service=self.service,
                     endpoint=endpoint, client=client, token_id=principal.token_id, reason=exc.reason)
