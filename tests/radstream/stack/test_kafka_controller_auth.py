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

from radstream.stack import kafka as stack
from streams.acl import add_scram_user
from streams.config import KafkaConfig

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
            ("describe", "radstream", password))  # the super user gets in
        assert anonymous.startswith("REFUSED"), anonymous
        assert analyst.startswith("REFUSED"), analyst
        assert wrong.startswith("REFUSED"), wrong
        assert control == "OK described 0", control  # the port works, and no ACL was created
        props = (kdir / "server.properties").read_text()
        assert "super.users=User:radstream\n" in props and "ANONYMOUS" not in props
        # the data (and the password in server.properties) are not for other local users either
        assert (kdir.stat().st_mode & 0o777, (kdir / "server.properties").stat().st_mode & 0o777) == (
            0o700, 0o600)
    finally:
        stack.stop_kafka(kdir)


def before_the_fix(props: str) -> str:
    """``props`` as the stack wrote them before the controller listener authenticated."""
    lines = [ln for ln in props.splitlines(keepends=True)
             if not ln.startswith(("listener.name.controller.", "sasl.mechanism.controller.protocol="))]
    return "".join(lines).replace("CONTROLLER:SASL_PLAINTEXT", "CONTROLLER:PLAINTEXT").replace(
        "super.users=User:radstream\n", "super.users=User:radstream;User:ANONYMOUS\n")


def test_a_broker_started_with_an_open_controller_port_is_restarted_not_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SASL broker still running from an older radstream (anonymous super user on the controller port)
    is not taken as it is by the next ``start_kafka``: it is restarted with the current settings."""
    kdir = tmp_path / "kafka"
    current = stack._server_properties
    with monkeypatch.context() as m:
        m.setattr(stack, "_server_properties", lambda *a, **kw: before_the_fix(current(*a, **kw)))
        old = stack.start_kafka(kdir, tie_to_parent=True, scram=("radstream", "pw"))
    try:
        libs, controller = stack.fetch(old.version), f"127.0.0.1:{old.controller_port}"
        assert controller_admin(libs, controller, ("describe", "", "")) == ["OK described 0"]  # open before
        st = stack.start_kafka(kdir, tie_to_parent=True, scram=("radstream", "pw"))
        assert st.pid != old.pid
        again = stack.start_kafka(kdir, tie_to_parent=True, scram=("radstream", "pw"))
        assert again.pid == st.pid  # the current settings: reused as before
        anonymous, = controller_admin(libs, f"127.0.0.1:{st.controller_port}", ("create", "", ""))
        assert anonymous.startswith("REFUSED"), anonymous
    finally:
        stack.stop_kafka(kdir)
