"""The SASL stack's controller listener authenticates too: an Admin client that goes to the controller port
(KIP-919, ``bootstrap.controllers``) without credentials, or with an analyst's, cannot create ACLs there
(before: it came in as ANONYMOUS, a super user, and could grant anyone ALL on every topic). The client is
Kafka's own Java Admin (librdkafka cannot bootstrap from a controller), run against the stack's jars."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from radstream.stack import kafka as stack
from streams.acl import add_scram_user
from streams.config import KafkaConfig
from streams.topics import admin_client

pytestmark = pytest.mark.integration

CLIENT = Path(__file__).with_name("ControllerAdmin.java")


def controller_admin(libs: Path, controller: str, *cases: tuple[str, str, str]) -> list[str]:
    """One line per case ("OK ..." / "REFUSED ..."), from ControllerAdmin.java: (action, user, password)."""
    java = shutil.which("java") or "/usr/bin/java"
    run = subprocess.run([java, "-cp", f"{libs}/*", str(CLIENT), controller, *(",".join(c) for c in cases)],
                         capture_output=True, text=True, timeout=240)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("CASE ")]  # not the client's log lines
    assert run.returncode == 0 and len(lines) == len(cases), (run.stdout[-3000:], run.stderr[-3000:])
    return [ln.split(" ", 2)[2] for ln in lines]


def test_the_controller_port_refuses_clients_without_the_super_users_credentials(tmp_path: Path) -> None:
    password = uuid.uuid4().hex
    kdir = tmp_path / "kafka"
    st = stack.start_kafka(kdir, tie_to_parent=True, scram=("radstream", password))
    try:
        (tmp_path / "admin.pw").write_text(password)
        (tmp_path / "analyst.pw").write_text("analyst-pw")
        admin = KafkaConfig(bootstrap=st.bootstrap, security_protocol="SASL_PLAINTEXT",
                            sasl_mechanism=stack.SCRAM, sasl_username="radstream",
                            sasl_password_file=str(tmp_path / "admin.pw"))
        add_scram_user(admin, "analyst1", "analyst-pw")  # a real account of the broker port

        controller = f"127.0.0.1:{st.controller_port}"
        anonymous, analyst, wrong, control = controller_admin(
            stack.fetch(st.version), controller,
            ("create", "", ""),  # no credentials: was ANONYMOUS, a super user
            ("create", "analyst1", "analyst-pw"),  # an analyst's SCRAM account
            ("create", "radstream", "not-the-password"),
            ("describe", "radstream", password))  # the super user gets in: the port and client work
        assert anonymous.startswith("REFUSED"), anonymous
        assert analyst.startswith("REFUSED"), analyst
        assert wrong.startswith("REFUSED"), wrong
        assert control.startswith("OK described"), control

        # and nothing was granted: the broker's own view of the ACLs has no binding for the grantee
        flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:mallory", None,
                               AclOperation.ANY, AclPermissionType.ANY)
        assert admin_client(admin).describe_acls(flt).result(timeout=30) == []
        props = (kdir / "server.properties").read_text()
        assert "super.users=User:radstream\n" in props and "ANONYMOUS" not in props
    finally:
        stack.stop_kafka(kdir)
