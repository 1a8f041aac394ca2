"""API tokens: argon2id hashes in a 0600 file, one hash verified per request (the token id finds it), a
short cache of verified tokens, revocation seen by a running server on its next request."""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.auth import AuthError, Gate, Principal, TokenStore, authenticate, local_token, split_token


class Recorder:
    """An audit target that keeps the events (the real KafkaAudit/FileAudit are tested elsewhere)."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def emit(self, event: dict[str, object]) -> None:
        self.events.append(event)


def test_tokens_are_stored_hashed_private_and_verify_to_their_user(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "tokens.json"
    store = TokenStore(path)
    store.add_user("ana", ["analyst"])
    token = store.add_token("ana", note="laptop")
    tid, secret = split_token(token) or ("", "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert secret not in text and json.loads(text)["tokens"][tid]["hash"].startswith("$argon2id$")
    assert store.verify(token) == Principal("ana", frozenset({"analyst"}), tid)
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # wrong secret
    assert store.verify(f"rst_{'0' * 12}_{secret}") is None  # unknown id
    assert store.verify("Bearer nonsense") is None


def test_verification_is_one_argon2_check_then_cached_and_revocation_is_seen(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json", cache_s=60)
    store.add_user("stu", ["steward"])
    token = store.add_token("stu")
    server = TokenStore(tmp_path / "tokens.json", cache_s=60)  # another process's view of the same file
    t0 = time.perf_counter()
    assert server.verify(token) is not None
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(100):
        assert server.verify(token) is not None
    cached = (time.perf_counter() - t0) / 100
    assert first > 0.005 and cached < 0.002, (first, cached)  # argon2 once, then the cache
    tid = (split_token(token) or ("", ""))[0]
    time.sleep(0.01)  # a new mtime for the revocation
    assert store.revoke(tid) == [tid]
    assert server.verify(token) is None  # the file changed: cache dropped, revoked token refused
    store.add_token("stu")
    store.revoke("stu")  # a user: all its tokens, and disabled
    assert all(t.get("revoked") for t in store.tokens().values()) and store.users()["stu"]["disabled"]


def test_an_expired_token_verifies_to_nobody_also_from_the_cache(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json", cache_s=60)
    store.add_user("ana", ["analyst"])
    token = store.add_token("ana", expires_in=timedelta(seconds=3))
    lasting = store.add_token("ana")
    tid = (split_token(token) or ("", ""))[0]
    expires = datetime.fromisoformat(store.tokens()[tid]["expires"])
    assert store.verify(token) is not None  # valid, and now cached for up to 60 s
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    assert store.verify(token) is None  # the cache entry did not outlive the token
    assert store.verify(lasting) is not None and "expires" not in store.tokens()[lasting.split("_")[1]]
    with pytest.raises(ValueError):
        store.add_token("ana", expires_in=timedelta(0))


def test_a_token_that_replaces_its_note_revokes_the_users_earlier_ones_of_that_note(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.add_user("demo", ["analyst"])
    store.add_user("bob", ["analyst"])
    first = store.add_token("demo", note="demo sign-in", replaces_note=True)
    other = store.add_token("demo", note="laptop")
    bobs = store.add_token("bob", note="demo sign-in")
    second = store.add_token("demo", note="demo sign-in", replaces_note=True)
    assert store.verify(first) is None
    assert all(store.verify(t) is not None for t in (second, other, bobs))
    assert not store.users()["demo"].get("disabled")


def test_roles_are_checked_and_admin_holds_every_role(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    with pytest.raises(ValueError):
        store.add_user("x", ["superuser"])
    with pytest.raises(KeyError):
        store.add_token("nobody")
    ana = Principal("ana", frozenset({"analyst"}))
    ana.require("analyst", "steward")
    with pytest.raises(AuthError) as err:
        ana.require("ingest")
    assert err.value.status == 403
    Principal("root", frozenset({"admin"})).require("steward")


def test_gate_answers_401_and_audits_failed_logins_without_the_secret(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.add_user("ing", ["ingest"])
    token = store.add_token("ing")
    rec = Recorder()
    gate = Gate(store, rec, service="fhir")
    assert gate.check(f"Bearer {token}", None, client="127.0.0.1", endpoint="/fhir").user == "ing"
    assert gate.check(None, token, client="127.0.0.1", endpoint="/fhir").user == "ing"  # X-API-Key
    bad = token[:-2] + "xx"
    for auth in (None, "Basic abc", f"Bearer {bad}"):
        with pytest.raises(AuthError) as err:
            gate.check(auth, None, client="10.0.0.9", endpoint="/fhir")
        assert err.value.status == 401
    assert [e["action"] for e in rec.events] == ["login.failure"] * 3
    assert all(e["allowed"] is False for e in rec.events)
    detail = json.loads(str(rec.events[-1]["detail"]))
    assert detail["token_id"] == split_token(token)[0] and detail["client"] == "10.0.0.9"  # type: ignore[index]
    assert bad.split("_", 2)[2] not in json.dumps(rec.events, default=str)
    with pytest.raises(AuthError):
        authenticate(store, "Bearer ", None)


def test_local_token_is_the_os_users_admin_token_and_reused(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "auth" / "tokens.json")
    token = local_token(store)
    assert local_token(store) == token
    principal = store.verify(token)
    assert principal is not None and principal.user.startswith("os:") and principal.has("steward")
    assert stat.S_IMODE((tmp_path / "auth" / "local.token").stat().st_mode) == 0o600
