"""docker-compose.yml against what each radstream command needs, from the code's config.

No Docker engine runs here, so the compose file cannot be started: this test reads the model that Docker's
own compose implementation resolves (`docker compose config --format json`, the CLI plugin that `make test`
builds), computes each service's Settings exactly as the process would (`load_settings` over the image's
and the service's environment), and checks the structure: the paths each command writes are on named
volumes, volumes are shared exactly where the code coordinates through files (and nowhere else), secrets
are mounted where they are read and only there, every bind address and port is reachable and published on
127.0.0.1 only, and every address a service connects to is a service of the file that it waits for.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from radstream.config import Settings, load_settings, settings_env

ROOT = Path(__file__).resolve().parents[2]
OURS = ("worker", "hl7-listener", "fhir-server", "dicom-worker", "research-scp", "radstream")
# variables read outside Settings: radstream.config (state dir, config file), streams.auth (client token)
OTHER_VARIABLES = {"RADSTREAM_STATE_DIR", "RADSTREAM_CONFIG", "RADSTREAM_TOKEN"}


@cache
def model() -> dict[str, Any]:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                        capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` plugin here "
                    "(`make compose-plugin`, which `make test` runs, builds it)")
    out = subprocess.run(["docker", "compose", "--profile", "cli", "config", "--format", "json"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def image_env() -> dict[str, str]:
    """ENV of the Dockerfile (every service of ours runs that image)."""
    env: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env.update(dict(item.split("=", 1) for item in shlex.split(line[4:])))
    return env


def service(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = model()["services"][name]
    return svc


def settings_of(name: str) -> Settings:
    return load_settings(env={**image_env(), **service(name).get("environment", {})})


def option(command: list[str], name: str, default: str) -> str:
    return command[command.index(name) + 1] if name in command else default


@dataclass
class Needs:
    """What one process reads, writes, serves and connects to (paths inside its container)."""

    writes: dict[str, str] = field(default_factory=dict)
    reads: dict[str, str] = field(default_factory=dict)
    serves: list[tuple[str, int]] = field(default_factory=list)
    connects: set[str] = field(default_factory=set)


def needs(name: str) -> Needs:
    """From the code: radstream/cli/*.py, radstream/access.py, sinks/dicom/{worker,scp,expect}.py."""
    s = settings_of(name)
    command = service(name).get("command") or []
    n = Needs(connects={"kafka"})
    auth = {"tokens": s.auth.token_file,  # access.gate writes the local admin token beside the store
            "audit log": s.auth.audit_log}
    key = {"pseudonym key": s.ingest.pseudonym_key_file}
    if command[:1] == ["worker"]:
        n.writes |= {"consumer slots": posixpath.join(s.state_dir, "slots"), **auth}
        n.reads |= key
        n.serves.append((s.worker.web_host, s.worker.web_port))
        n.connects.add("clickhouse")
    elif command[:2] == ["ingest", "hl7-listener"]:
        n.reads |= key
        n.writes |= auth  # its /metrics page checks tokens (streams.ops, docs/monitoring.md)
        n.serves.append((option(command, "--host", "127.0.0.1"), int(option(command, "--port", "2575"))))
        n.serves.append((s.metrics.host, s.metrics.hl7_port))
    elif command[:2] == ["ingest", "fhir-server"]:
        n.reads |= key
        n.writes |= auth
        n.serves.append((option(command, "--host", "127.0.0.1"), int(option(command, "--port", "8180"))))
    elif command[:2] == ["dicom", "worker"]:
        # research.coordination = "kafka": expected studies, outcomes and its done-ledger are topics
        # (sinks/dicom/expect.py); with "files" it would write <store>/.expected and <state>/dicom-worker
        assert s.research.coordination == "kafka", name
        n.writes |= auth
        n.reads |= key  # opens the analysts' study references (processors.ingest.research)
        n.connects.add("pacs")
        n.serves.append((s.metrics.host, s.metrics.dicom_worker_port))
    elif command[:2] == ["dicom", "scp"]:
        assert s.research.coordination == "kafka", name  # it replays the expected studies' topic
        n.writes |= {"research store": s.research.store_dir, "quarantine": s.research.quarantine_dir, **auth}
        n.reads |= key
        n.serves.append((s.research.host, s.research.port))
        n.serves.append((s.metrics.host, s.metrics.scp_port))
    elif not command:  # the one-off commands: auth add-user/add-token, db migrate, topics, retrieve, sql
        n.writes |= auth
        # a steward's `dicom quarantine list|release|purge` (radstream/cli/dicom.py): the SCP's quarantine,
        # and its store, where a released instance is written
        n.writes |= {"research store": s.research.store_dir, "quarantine": s.research.quarantine_dir}
        n.reads |= key
        n.connects |= {"clickhouse", "worker"}
    else:
        raise AssertionError(f"{name}: no needs known for {command}: describe them here")
    return n


def mount(name: str, path: str) -> tuple[str, str] | None:
    """(named volume, path inside it) that holds ``path`` in the service's container; None: not a volume."""
    best: tuple[str, str] | None = None
    depth = -1
    for v in service(name).get("volumes", []):
        target = v["target"].rstrip("/")
        if v.get("type") == "volume" and (path == target or path.startswith(target + "/")) \
                and len(target) > depth:
            best, depth = (v["source"], posixpath.relpath(path, target)), len(target)
    return best


def test_every_radstream_variable_names_a_setting() -> None:
    # a misspelt variable is silently ignored by radstream.config: the default would be used instead
    valid = set(settings_env(Settings())) | OTHER_VARIABLES
    given = {(n, k) for n, svc in model()["services"].items() for k in svc.get("environment", {})}
    given |= {("Dockerfile", k) for k in image_env()}
    given = {(n, k) for n, k in given if k.startswith("RADSTREAM_")}
    assert {k for _, k in given} and not {(n, k) for n, k in given if k not in valid}


def test_the_image_is_the_installed_command_and_declares_no_anonymous_volume() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["radstream"]' in text
    # a VOLUME would give every service that mounts nothing there an anonymous volume, hiding a missing mount
    assert not [line for line in text.splitlines() if line.startswith("VOLUME")]
    assert all(service(n)["image"] == "radstream:local" for n in OURS)


def test_what_each_service_writes_is_on_a_named_volume_and_it_mounts_nothing_else() -> None:
    declared = set(model()["volumes"])
    for name in OURS:
        n = needs(name)
        used = set()
        files = {k: v for k, v in n.reads.items() if not v.startswith("/run/secrets/")}
        for what, path in {**n.writes, **files}.items():
            assert path, (name, what)
            where = mount(name, path)
            assert where is not None, f"{name}: {what} ({path}) is not on a volume: lost with the container"
            assert where[0] in declared
            used.add(where[0])
        mounted = {v["source"] for v in service(name).get("volumes", [])}
        assert mounted == used, f"{name} mounts {sorted(mounted - used)} that it never uses"


def test_the_dicom_worker_and_the_scp_share_no_volume_but_the_token_store() -> None:
    # sinks/dicom/expect.py: with research.coordination = "kafka" (the default) the DICOM worker publishes
    # each expected study on a compacted topic, reads what the SCPs stored from their events and its
    # done-ledger from the status topic; so they share no disk and may run on different hosts.
    # The API token store: written by `radstream auth ...`, read (and its local token made) by the worker's
    # SQL page, the FHIR server and every /metrics page (the one volume every radstream service mounts)
    readers = ("worker", "fhir-server", "radstream", "hl7-listener", "dicom-worker", "research-scp")
    tokens = {mount(n, needs(n).writes["tokens"]) for n in readers}
    assert len(tokens) == 1 and None not in tokens, tokens
    token_volume = next(iter(tokens))
    assert token_volume is not None
    volumes = {n: {v["source"] for v in service(n).get("volumes", [])}
               for n in ("dicom-worker", "research-scp")}
    assert volumes["dicom-worker"] & volumes["research-scp"] == {token_volume[0]}
    assert volumes["dicom-worker"] == {token_volume[0]}  # nothing of its own to keep either
    assert mount("dicom-worker", settings_of("dicom-worker").research.store_dir) is None
    users: dict[str, set[str]] = {}
    for name, svc in model()["services"].items():
        for v in svc.get("volumes", []):
            users.setdefault(v["source"], set()).add(name)
    scp_store = mount("research-scp", settings_of("research-scp").research.store_dir)
    assert scp_store is not None and users[scp_store[0]] == {"research-scp", "radstream"}
    # the quarantine is outside the store's tree (sinks/dicom/quarantine.py): the SCP's, and the one-off
    # command's for a steward (`docker compose run radstream dicom quarantine list` sees what the SCP put)
    quarantine = mount("research-scp", needs("research-scp").writes["quarantine"])
    assert quarantine is not None and quarantine[0] != scp_store[0]
    assert users[quarantine[0]] == {"research-scp", "radstream"}
    cli = settings_of("radstream").research
    assert mount("radstream", cli.quarantine_dir) == quarantine  # the same volume, the same place in it
    assert mount("radstream", cli.store_dir) == scp_store
    for infra in ("kafka", "clickhouse", "orthanc"):
        assert users[f"{infra}-data"] == {infra}


def test_the_key_secret_is_mounted_where_it_is_read_and_nowhere_else() -> None:
    top = model()["secrets"]
    for name in OURS:
        n = needs(name)
        mounted = {s["target"]: s["source"] for s in service(name).get("secrets", [])}
        reads = {p for p in n.reads.values() if p.startswith("/run/secrets/")}
        # one key for every service that reads one: the pseudonyms of ingest, of the report text and of the
        # images must agree (a key generated per container would not)
        assert set(n.reads.values()) <= reads, (name, n.reads)
        assert reads == set(mounted), f"{name}: reads {sorted(reads)}, mounted {sorted(mounted)}"
        assert all(src in top for src in mounted.values())
        # the ClickHouse password (in the URL) only where ClickHouse is used
        has_url = "RADSTREAM_CLICKHOUSE_URL" in service(name).get("environment", {})
        assert has_url == ("clickhouse" in n.connects), name
    assert len({s["source"] for n in OURS for s in service(n).get("secrets", [])}) == 1


def test_every_served_port_is_reachable_and_published_on_loopback_only() -> None:
    for name in OURS:
        served = needs(name).serves
        published = service(name).get("ports", [])
        for host, port in served:
            # inside a container 127.0.0.1 is unreachable from the published port and from other services
            assert host == "0.0.0.0", f"{name} binds {host}:{port}"
            assert [p for p in published if p["target"] == port], f"{name}: port {port} is not published"
        assert {p["target"] for p in published} <= {port for _, port in served}, (name, published)
    for name, svc in model()["services"].items():
        assert all(p.get("host_ip") == "127.0.0.1" for p in svc.get("ports", [])), (name, svc.get("ports"))


def test_every_address_a_service_connects_to_is_a_service_it_waits_for() -> None:
    kafka, ch, orthanc = service("kafka")["environment"], service("clickhouse")["environment"], \
        service("orthanc")["environment"]
    modalities = {v[0]: (v[1], int(v[2])) for v in json.loads(orthanc["ORTHANC__DICOM_MODALITIES"]).values()}
    brokers = [n for n, svc in model()["services"].items()
               if "broker" in svc.get("environment", {}).get("KAFKA_PROCESS_ROLES", "")]
    scp = settings_of("research-scp")
    for name in OURS:
        s, n, waits = settings_of(name), needs(name), service(name).get("depends_on", {})
        assert s.kafka.bootstrap in kafka["KAFKA_ADVERTISED_LISTENERS"].replace("PLAINTEXT://", "").split(",")
        assert waits.get("kafka", {}).get("condition") == "service_healthy", name
        assert s.kafka.replication_factor <= len(brokers)
        if "clickhouse" in n.connects:
            url = urlparse(s.clickhouse.url)
            server = ("clickhouse", 8123, ch["CLICKHOUSE_USER"], ch["CLICKHOUSE_PASSWORD"],
                      ch["CLICKHOUSE_DB"])
            assert (url.hostname, url.port, url.username, url.password, s.clickhouse.database) == server, name
            assert waits.get("clickhouse", {}).get("condition") == "service_healthy", name
        if "pacs" in n.connects:
            assert (s.pacs.host, s.pacs.port, s.pacs.ae_title) == \
                ("orthanc", int(orthanc["ORTHANC__DICOM_PORT"]), orthanc["ORTHANC__DICOM_AET"])
            assert "orthanc" in waits
            assert s.pacs.http_port in {p["target"] for p in service("orthanc")["ports"]}
            # Orthanc knows the worker's calling AE, and moves to the AE of our SCP at its service and port
            assert modalities[s.pacs.calling_ae][0] == name
            assert modalities[s.research.ae_title] == ("research-scp", scp.research.port)
            assert s.research.ae_title == scp.research.ae_title and "research-scp" in waits
            assert orthanc["ORTHANC__DICOM_AET"] in scp.research.allowed_calling_aes
        if "worker" in n.connects:  # `radstream sql` etc. reach the worker's SQL page
            assert (s.worker.web_host, s.worker.web_port) == ("worker", settings_of("worker").worker.web_port)
    assert scp.research.ae_title in settings_of("worker").research.allowed_destinations
