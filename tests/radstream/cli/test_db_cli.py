"""``radstream db migrate``: the server GRANTs it prints (and applies on a server) follow the site's own
allowlists (``auth.roles_dir``), the same files the query check reads (a real embedded store)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from radstream.config import Settings, settings_env
from sinks.clickhouse.access import ROLES_DIR
from sinks.clickhouse.grants import SERVER_ROLES

ROOT = Path(__file__).resolve().parents[3]


def db(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "radstream", "db", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_printed_grants_follow_the_sites_roles_dir(kafka_settings: Settings, tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    shutil.copytree(ROLES_DIR, roles)
    narrow = json.loads((roles / "analyst.json").read_text())
    narrow["tables"] = ["reports_latest", "reports"]  # this site lets analysts read the reports only
    (roles / "analyst.json").write_text(json.dumps(narrow))
    s = kafka_settings.replace(state_dir=str(tmp_path / "state"), clickhouse={"url": "", "database": "rs"},
                               auth={"roles_dir": str(roles)})
    Path(s.state_dir).mkdir(parents=True)
    assert db(s, "migrate").returncode == 0
    out = db(s, "migrate", "--print-grants")
    assert out.returncode == 0, out.stderr
    to_analyst = [x for x in out.stdout.splitlines() if x.startswith("GRANT") and
                  x.rstrip(";").endswith(f"TO `{SERVER_ROLES['analyst']}`")]
    granted = {x.split("ON `rs`.")[1].split()[0].strip("`") for x in to_analyst}
    assert granted == {"reports_latest", "reports"}, to_analyst
