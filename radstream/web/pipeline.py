"""The pipeline page and the dashboard's per-project panels: their warehouse queries and the scrape of the
processes' ``/metrics``.

Queries are fixed texts; values are bound by clickhouse-connect's binder (``queries.bind``), never pasted,
and run through the same role-checked read path as every page (``radstream.web.data``). The metrics come
from the processes' own ``/metrics`` pages (docs/monitoring.md), fetched with the signed-in user's token
(every valid token may read them), only from processes that are ours (``streams.peer``); they count since
each process started.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from radstream.warehouse import open_ours
from radstream.web.queries import bind
from streams.peer import PeerRefused

# the bucket of the throughput chart: a fixed fragment chosen by name, never user text
STEPS = {"minute": "toStartOfMinute", "hour": "toStartOfHour"}
SPANS = {"minute": 3 * 3600, "hour": 7 * 86400}  # how far back each bucket looks, seconds


def reports_per_hour(hours: int = 48) -> str:
    """Report versions and NLP results stored in the warehouse per hour (``inserted_at``), over the last
    ``hours``. Not the reports' own times: the research copy shifts them per patient (de-identification),
    so ``received_time`` and ``processed_time`` of a report received now lie up to a year back.
    ``inserted_at`` of these tables is the real storage time, which only stewards may read (ddl/026,
    ``roles/analyst.json`` denied_columns): the query layer refuses this query for an analyst."""
    return bind("""SELECT toString(hour) AS hour, sum(received) AS received, sum(analysed) AS analysed FROM (
  SELECT toStartOfHour(inserted_at) AS hour, count() AS received, 0 AS analysed FROM report_versions
  WHERE inserted_at >= now64(3) - toIntervalHour(%(hours)s) GROUP BY hour
  UNION ALL
  SELECT toStartOfHour(inserted_at) AS hour, 0 AS received, count() AS analysed FROM report_nlp
  WHERE inserted_at >= now64(3) - toIntervalHour(%(hours)s) GROUP BY hour)
GROUP BY hour ORDER BY hour""", {"hours": int(hours)})


def dead_letters() -> str:
    """Dead letters in the warehouse by stage and reason (the ``dead_letters`` table: stewards only)."""
    return """SELECT stage, error_type AS reason, count() AS n, toString(max(time)) AS last
FROM dead_letters GROUP BY stage, reason ORDER BY n DESC, stage, reason LIMIT 100"""


_LATEST = """SELECT request_id, argMax(state, time) AS state, any(project_id) AS project_id
FROM retrieval_events GROUP BY request_id"""


def throughput(project: str = "", step: str = "hour", identified: bool = False) -> str:
    """Instances received per bucket and project (``received_instances``, the SCP's stored instances),
    over the last ``SPANS[step]`` seconds; with ``identified`` (a steward's view) also the identified
    projects' instances, which only stewards may read (``received_instances_identified``)."""
    fn = STEPS[step]
    cond, p = "time >= now64(6) - toIntervalSecond(%(span)s)", dict[str, Any](span=SPANS[step])
    if project:
        cond += " AND project_id = %(project)s"
        p["project"] = project
    source = "received_instances"
    if identified:
        source = ("(SELECT project_id, time FROM received_instances UNION ALL "
                  "SELECT project_id, time FROM received_instances_identified)")
    return bind(f"""SELECT project_id AS project, toString({fn}(time)) AS t, count() AS instances
FROM {source} WHERE {cond} GROUP BY project, t ORDER BY t, project""", p)


def dashboard_marker() -> str:
    """A cheap look for a change under the dashboard: the rows of its three tables (the event stream
    runs the dashboard's queries again only when this moved)."""
    return """SELECT (SELECT count() FROM retrieval_requests) AS requests,
       (SELECT count() FROM retrieval_events) AS events,
       (SELECT count() FROM received_instances) AS instances"""


def waiting_for_window(project: str = "") -> str:
    """Requests whose latest state is ``waiting_for_window`` (the DICOM worker holds them until the
    PACS's research window opens), per project."""
    cond, p = "state = 'waiting_for_window'", dict[str, Any]()
    if project:
        cond += " AND project_id = %(project)s"
        p["project"] = project
    return bind(f"""SELECT project_id AS project, count() AS n FROM ({_LATEST}) WHERE {cond}
GROUP BY project ORDER BY project""", p)


def window_state(windows: str, timezone: str, now: datetime | None = None) -> dict[str, Any]:
    """The PACS windows (``pacs.windows``) and whether one is open now / when the next opens."""
    from zoneinfo import ZoneInfo

    from sinks.dicom.schedule import is_open, next_open, parse_windows

    tz = ZoneInfo(timezone) if timezone else None
    t = now or datetime.now(tz).astimezone(tz)
    parsed = parse_windows(windows)
    nxt = next_open(parsed, t)
    return {"spec": windows or "always open", "open": is_open(parsed, t),
            "next": nxt.isoformat(timespec="minutes") if nxt else None}


# --- metrics ---------------------------------------------------------------------------------------------

@dataclass
class Scrape:
    """One process's ``/metrics``, parsed (``error`` when it did not answer)."""

    name: str
    url: str
    error: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def targets(settings: Any) -> list[tuple[str, str]]:
    """Where the processes serve ``/metrics`` by the settings (docs/monitoring.md); a bind-all address is
    fetched on this host."""
    scheme = "https" if settings.auth.tls_cert else "http"
    m, w = settings.metrics, settings.worker
    host, web_host = (h if h not in ("0.0.0.0", "::", "") else "127.0.0.1" for h in (m.host, w.web_host))
    return [("worker", f"{scheme}://{web_host}:{w.web_port}/metrics"),
            ("dicom worker", f"{scheme}://{host}:{m.dicom_worker_port}/metrics"),
            ("dicom scp", f"{scheme}://{host}:{m.scp_port}/metrics"),
            ("hl7 listener", f"{scheme}://{host}:{m.hl7_port}/metrics")]


def scrape(settings: Any, name: str, url: str, token: str, timeout: float = 3.0) -> Scrape:
    """One process's ``/metrics`` with the user's token, only from a process that is ours
    (``radstream.warehouse.open_ours``: another user's process on a free metrics port gets nothing)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    out = Scrape(name, url)
    try:
        with open_ours(settings, req, timeout) as resp:
            text = resp.read().decode("utf-8", errors="replace")
    except PeerRefused as exc:
        out.error = str(exc)
        return out
    except urllib.error.HTTPError as exc:
        out.error = f"HTTP {exc.code}"
        return out
    except (OSError, ValueError) as exc:
        out.error = str(getattr(exc, "reason", exc))
        return out
    for fam in text_string_to_metric_families(text):
        out.samples += [(s.name, dict(s.labels), float(s.value)) for s in fam.samples]
    return out


def scrape_all(settings: Any, token: str) -> list[Scrape]:
    ts = targets(settings)
    with ThreadPoolExecutor(len(ts)) as pool:
        return list(pool.map(lambda t: scrape(settings, t[0], t[1], token), ts))


def _samples(scrapes: Iterable[Scrape], name: str) -> list[tuple[Scrape, dict[str, str], float]]:
    return [(sc, labels, v) for sc in scrapes for n, labels, v in sc.samples if n == name]


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative bucket counts (upper bound -> count): linear
    within the bucket; the highest finite bound when it falls in +Inf. None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return None
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if math.isinf(b):
                return prev_b
            return prev_b + (b - prev_b) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 1.0)
        prev_b, prev_c = b, c
    return prev_b


def summary(scrapes: list[Scrape]) -> dict[str, Any]:
    """What the pipeline page shows from the metrics."""
    # several processes may report one partition (a revoked one, until its series is dropped): max
    per_part: dict[tuple[str, str, str], float] = {}
    for _, lb, v in _samples(scrapes, "radstream_consumer_lag_messages"):
        k = (lb.get("group", ""), lb.get("topic", ""), lb.get("partition", ""))
        per_part[k] = max(per_part.get(k, 0.0), v)
    lag: dict[tuple[str, str], float] = {}
    for (g, t, _), v in per_part.items():
        lag[(g, t)] = lag.get((g, t), 0.0) + v
    dead: dict[tuple[str, str], float] = {}
    for _, lb, v in _samples(scrapes, "radstream_dead_letters_total"):
        sr = (lb.get("stage", ""), lb.get("reason", ""))
        dead[sr] = dead.get(sr, 0.0) + v
    buckets: dict[float, float] = {}
    for _, lb, v in _samples(scrapes, "radstream_nlp_latency_seconds_bucket"):
        b = float(lb["le"])
        buckets[b] = buckets.get(b, 0.0) + v
    count = sum(v for _, _, v in _samples(scrapes, "radstream_nlp_latency_seconds_count"))
    total = sum(v for _, _, v in _samples(scrapes, "radstream_nlp_latency_seconds_sum"))
    queued = {lb.get("state", ""): v for _, lb, v in _samples(scrapes, "radstream_retrieval_requests")}
    return {
        "lag": [{"group": g, "topic": t, "messages": int(v)} for (g, t), v in sorted(lag.items())],
        "dead": [{"stage": s, "reason": r, "n": int(v)} for (s, r), v in sorted(dead.items())],
        "nlp": {"reports": int(sum(v for _, _, v in _samples(scrapes, "radstream_nlp_reports_total"))),
                "count": int(count), "mean_s": total / count if count else None,
                "p50_s": quantile(0.5, buckets), "p95_s": quantile(0.95, buckets)},
        "retrieval_queue": queued,
    }
