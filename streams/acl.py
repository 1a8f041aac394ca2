"""Kafka users and ACLs per role (docs/access.md), through the Admin API of confluent-kafka: SCRAM
credentials (KIP-554) and ACL bindings for a broker with an authorizer (KRaft: StandardAuthorizer).
Which role reads or writes which topic is data: ``kafka_roles.json`` beside this file."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from streams.config import KafkaConfig, TopicsConfig
from streams.topics import admin_client

ROLES_FILE = Path(__file__).with_name("kafka_roles.json")


def topic_grants(topics: TopicsConfig, role: str, roles_file: Path = ROLES_FILE) -> dict[str, list[str]]:
    """{"read": [topic names], "write": [...]} of ``role``."""
    spec: dict[str, Any] = json.loads(roles_file.read_text())
    if role not in spec or role == "doc":
        raise ValueError(f"no Kafka grants for role {role!r} in {roles_file.name}")
    every = [f.name for f in fields(topics)]
    out: dict[str, list[str]] = {}
    for mode in ("read", "write"):
        names = every if "*" in spec[role].get(mode, []) else spec[role].get(mode, [])
        out[mode] = [str(getattr(topics, n)) for n in names]
    return out


def role_bindings(topics: TopicsConfig, role: str, user: str) -> list[AclBinding]:
    """The ACL bindings that give Kafka user ``user`` what ``role`` may do, and nothing else."""
    principal = f"User:{user}"

    def allow(rtype: ResourceType, name: str, op: AclOperation,
              pattern: ResourcePatternType = ResourcePatternType.LITERAL) -> AclBinding:
        return AclBinding(rtype, name, pattern, principal, "*", op, AclPermissionType.ALLOW)

    grants = topic_grants(topics, role)
    out: list[AclBinding] = []
    for topic in grants["read"]:
        out += [allow(ResourceType.TOPIC, topic, AclOperation.READ),
                allow(ResourceType.TOPIC, topic, AclOperation.DESCRIBE)]
    for topic in grants["write"]:
        out += [allow(ResourceType.TOPIC, topic, AclOperation.WRITE),
                allow(ResourceType.TOPIC, topic, AclOperation.DESCRIBE)]
    if grants["read"]:  # its own consumer groups: ids starting with "<user>."
        out.append(allow(ResourceType.GROUP, f"{user}.", AclOperation.READ, ResourcePatternType.PREFIXED))
    if grants["write"]:  # idempotent producers (our default) need IDEMPOTENT_WRITE on the cluster
        out.append(allow(ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE))
    # once each: a topic read and written gets DESCRIBE from both (create_acls refuses duplicates)
    return list(dict.fromkeys(out))


def _wait(futures: dict[Any, Any], timeout: float) -> None:
    for fut in futures.values():
        fut.result(timeout=timeout)


def add_scram_user(kafka: KafkaConfig, user: str, password: str, mechanism: str = "SCRAM-SHA-512",
                   iterations: int = 8192, timeout: float = 30.0) -> None:
    """Create or update a SCRAM credential (the caller's KafkaConfig must be allowed to: a super user)."""
    mech = ScramMechanism[mechanism.replace("-", "_")]
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(mech, iterations), password.encode())
    admin = admin_client(kafka)  # held until the futures are done (a destroyed handle fails them)
    _wait(admin.alter_user_scram_credentials([upsert]), timeout)


def grant_role(kafka: KafkaConfig, topics: TopicsConfig, role: str, user: str, timeout: float = 30.0) -> int:
    """Create the ACLs of ``role`` for ``user``; returns how many bindings (idempotent)."""
    bindings = role_bindings(topics, role, user)
    admin = admin_client(kafka)
    _wait(admin.create_acls(bindings), timeout)
    return len(bindings)
