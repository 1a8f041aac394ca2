"""``radstream web``: report search, cohorts, retrieval and the steward's pages, server-rendered
(Starlette + Jinja2, htmx for the live parts; no JavaScript build step).

Sign-in takes a token of ``radstream auth add-token``. The session is a signed cookie (HttpOnly,
SameSite=Strict, Secure under TLS) holding a random session id and the CSRF token; the user's token
stays in this process's memory (it is what the warehouse queries are sent with, so the query layer
checks and audits the user's own roles), and is sent only to processes that are ours
(``radstream.warehouse.open_ours``). Every response has the security headers of ``headers.py``. Every
POST carries the CSRF token. Every page checks the role; a refusal answers 403 and is audited
(``http.request``, allowed false), as are sign-ins
(``web.login`` / ``login.failure``), searches (``web.search``), saved cohorts (``cohort.save``),
retrievals sent (``web.retrieve``) and standing cohorts subscribed or ended (``cohort.watch`` /
``cohort.unwatch``). The retrieval dashboard updates by server-sent events (``/retrievals/events``),
polling when they are not connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import difflib
import hmac
import io
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from radstream.config import Settings
from radstream.web import pipeline as pl
from radstream.web import queries as q
from radstream.web import semantic as sem
from radstream.web import standing
from radstream.web.data import Refused, Unavailable, Warehouse
from radstream.web.headers import SecurityHeaders
from radstream.web.store import Cohort, Cohorts, session_secret
from streams import audit
from streams.auth import AuthError, Busy, Gate, Principal
from streams.cohort import WatchRegistry, watch_refusal
from streams.ops import PATHS as OPS_PATHS
from streams.ops import Ops, kafka_check

log = logging.getLogger("radstream.web")
HERE = Path(__file__).parent
READERS = ("analyst", "steward")  # admin holds every role
STEWARDS = ("steward",)
SESSION_S = 8 * 3600
SSE_EVERY_S = 1.0  # how often the event stream looks for a change
SSE_MAX_S = 300.0  # then the stream ends and the browser's EventSource reconnects (a fresh session check)


@dataclass
class Session:
    principal: Principal
    token: str
    expires: float


class Sessions:
    """Signed-in users by session id, in this process's memory (a restart signs everyone out)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def add(self, principal: Principal, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[sid] = Session(principal, token, time.monotonic() + SESSION_S)
        return sid

    def get(self, sid: str | None) -> Session | None:
        with self._lock:
            s = self._by_id.get(sid or "")
            if s is not None and s.expires < time.monotonic():
                self._by_id.pop(sid or "", None)
                return None
            return s

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)


class Forbidden(Exception):
    pass


def highlight(text: str, findings: list[dict[str, Any]]) -> Markup:
    """The report text with its findings marked: present, negated and uncertain differently."""
    out: list[str] = []
    at = 0
    for f in sorted(findings, key=lambda f: int(f["start"])):
        start, end = int(f["start"]), int(f["end"])
        if start < at or end > len(text) or end <= start:
            continue  # overlapping or out of range: shown unmarked
        kind = "negated" if f.get("negated") else "uncertain" if f.get("uncertain") else "present"
        out.append(str(escape(text[at:start])))
        label = f"{f['concept']} ({kind})"
        out.append(f'<mark class="f-{kind}" title="{escape(label)}">{escape(text[start:end])}</mark>')
        at = end
    out.append(str(escape(text[at:])))
    return Markup("".join(out))


def version_diffs(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version with the unified diff from the one before it."""
    out = []
    prev: dict[str, Any] | None = None
    for v in versions:
        diff = ""
        if prev is not None:
            diff = "\n".join(difflib.unified_diff(
                str(prev["text"]).splitlines(), str(v["text"]).splitlines(),
                f"version {prev['version']} ({prev['status']})", f"version {v['version']} ({v['status']})",
                lineterm=""))
        out.append({**v, "diff": diff})
        prev = v
    return out


def progress(row: dict[str, Any]) -> dict[str, Any]:
    """stored / expected of a request (percent), from its latest status event."""
    expected = _int(row.get("expected"))
    stored = _int(row.get("stored"))
    if stored is None:
        stored = _int(row.get("completed")) or 0
    pct = 0 if not expected else min(100, round(100 * stored / expected))
    if row.get("state") == "completed":
        pct = 100
    return {**row, "expected": expected, "stored": stored, "percent": pct}


def chart_of(rows: list[dict[str, Any]], step_s: int) -> dict[str, Any]:
    """Throughput rows (project, t, instances) as the chart's data: one series per project."""
    xs = sorted({str(r["t"]) for r in rows})
    series: dict[str, list[int]] = {}
    for r in rows:
        series.setdefault(str(r["project"]), [0] * len(xs))[xs.index(str(r["t"]))] = int(r["instances"])
    return {"x": xs, "step": step_s, "series": series}


def _int(v: Any) -> int | None:
    try:
        return None if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        return None


async def _no_rows() -> list[dict[str, Any]]:
    return []


def create_app(settings: Settings, *, audit_target: Any = None, gate: Gate | None = None,
               warehouse: Warehouse | None = None, producer: Any = None, projects: Any = None,
               https: bool = False, sse_max_s: float = SSE_MAX_S) -> Starlette:
    from radstream import access

    target = audit_target if audit_target is not None else access.audit_target(settings)
    gate = gate or access.gate(settings, "web", target)
    wh = warehouse or Warehouse(settings, target)
    semantic_ok = sem.available()  # the [ml] extra is installed
    web_dir = Path(settings.state_dir) / "web"
    cohorts = Cohorts(web_dir / "cohorts.json")
    sessions = Sessions()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["highlight"] = highlight
    state: dict[str, Any] = {"producer": producer, "projects": projects, "watches": None}

    def client_of(request: Request) -> str:
        return request.client.host if request.client else ""

    def current(request: Request) -> Session | None:
        return sessions.get(request.session.get("sid"))

    def csrf_of(request: Request) -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = request.session["csrf"] = secrets.token_urlsafe(32)
        return str(tok)

    async def csrf_ok(request: Request) -> dict[str, Any]:
        form = dict(await request.form())
        sent = str(form.get("csrf") or request.headers.get("X-CSRF-Token") or "")
        if not sent or not hmac.compare_digest(sent, str(request.session.get("csrf") or "")):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
        return form

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        sess = current(request)
        ctx.update(request=request, user=sess.principal if sess else None, csrf=csrf_of(request),
                   is_steward=bool(sess and sess.principal.has("steward")))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    async def checked(request: Request) -> Session | None:
        """The request's session with the roles its token has now (``radstream auth add-user`` may have
        changed them since sign-in: every check, page and query uses these); None, and the session ended,
        when the token was revoked or expired since sign-in."""
        sess = current(request)
        if sess is None:
            return None
        fresh = await run_in_threadpool(gate.store.verify, sess.token)
        if fresh is None:
            audit.record(target, sess.principal.user, "web.logout", allowed=True, service="web",
                         reason="token revoked or expired", token_id=sess.principal.token_id)
            sessions.drop(request.session.get("sid"))
            request.session.clear()
            return None
        sess.principal = fresh
        return sess

    def csrf_refused(request: Request, actor: str, exc: Forbidden) -> None:
        """A post without the form's CSRF token: audited and counted as the other refusals are
        (``radstream_auth_failures_total{status="403"}``), the sign-in form's too."""
        from streams import metrics

        metrics.AUTH_FAILURES.labels(gate.service, "403").inc()
        audit.record(target, actor, "http.request", allowed=False, service="web", endpoint=request.url.path,
                     client=client_of(request), reason=str(exc))

    async def still(request: Request, sess: Session) -> bool:
        """The session is still this one (``checked``); False too while token checks are busy (an event
        stream then ends, and the browser reconnects)."""
        try:
            return await checked(request) is sess
        except Busy:
            return False

    Handler = Callable[[Request, Session], Awaitable[Response]]

    def page(roles: tuple[str, ...], post: bool = False) -> Callable[[Handler], Callable[[Request],
                                                                                        Awaitable[Response]]]:
        """A route that needs a signed-in user holding one of ``roles`` (and a CSRF token on POST)."""
        def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
            async def route(request: Request) -> Response:
                try:
                    sess = await checked(request)
                except Busy as exc:  # a flood of token checks: answered at once, the session kept
                    return Response(exc.reason + "\n", exc.status, headers={"Retry-After": "2"})
                if sess is None:
                    if request.headers.get("HX-Request"):
                        return Response("signed out", 401, headers={"HX-Redirect": "/login"})
                    return RedirectResponse(f"/login?next={request.url.path}", 303)
                try:
                    sess.principal.require(*roles)
                    if post:
                        request.state.form = await csrf_ok(request)
                except AuthError as exc:
                    gate.refused(sess.principal, exc, client=client_of(request), endpoint=request.url.path)
                    return render(request, "error.html", 403, title="Not allowed", message=exc.reason)
                except Forbidden as exc:
                    csrf_refused(request, sess.principal.user, exc)
                    return render(request, "error.html", 403, title="Not allowed", message=str(exc))
                try:
                    return await fn(request, sess)
                except Refused as exc:
                    return render(request, "error.html", 403, title="Refused by the query layer",
                                  message=str(exc))
                except Unavailable as exc:
                    return render(request, "error.html", 503, title="Warehouse unavailable", message=str(exc))
                except ValueError as exc:
                    return render(request, "error.html", 400, title="Bad request", message=str(exc))
            return route
        return wrap

    async def rows(sess: Session, sql: str) -> list[dict[str, Any]]:
        return await run_in_threadpool(wh.rows, sess.principal, sess.token, sql)

    # --- sign-in ---------------------------------------------------------------------------------
    async def login(request: Request) -> Response:
        if request.method == "GET":
            return render(request, "login.html", next=request.query_params.get("next", "/search"))
        try:
            form = await csrf_ok(request)
        except Forbidden as exc:
            csrf_refused(request, "", exc)
            return render(request, "login.html", 403, error=str(exc), next="/search")
        token = str(form.get("token") or "").strip()
        nxt = str(form.get("next") or "/search")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/search"
        try:
            principal = await run_in_threadpool(gate.check, f"Bearer {token}", None,
                                                client=client_of(request), endpoint="/login")
            principal.require(*READERS)
        except AuthError as exc:
            if exc.status == 403:
                gate.refused(principal, exc, client=client_of(request), endpoint="/login")
            return render(request, "login.html", exc.status, error=exc.reason, next=nxt)
        sessions.drop(request.session.get("sid"))
        request.session.clear()
        request.session["sid"] = sessions.add(principal, token)
        request.session["csrf"] = secrets.token_urlsafe(32)
        audit.record(target, principal.user, "web.login", allowed=True, service="web",
                     client=client_of(request), token_id=principal.token_id)
        return RedirectResponse(nxt, 303)

    async def logout(request: Request) -> Response:
        sess = current(request)
        if sess is not None:
            try:
                await csrf_ok(request)
            except Forbidden as exc:
                csrf_refused(request, sess.principal.user, exc)
                return render(request, "error.html", 403, title="Not allowed", message=str(exc))
            audit.record(target, sess.principal.user, "web.logout", allowed=True, service="web")
        sessions.drop(request.session.get("sid"))
        request.session.clear()
        return RedirectResponse("/login", 303)

    async def home(request: Request) -> Response:
        return RedirectResponse("/search", 303)

    # --- search ----------------------------------------------------------------------------------
    @page(READERS)
    async def search(request: Request, sess: Session) -> Response:
        s = q.Search.of(request.query_params)
        meaning = bool(s.text) and request.query_params.get("semantic") == "1" and semantic_ok
        ctx: dict[str, Any] = {"s": s, "params": s.params(), "results": [], "total": None,
                               "semantic_ok": semantic_ok, "semantic": meaning, "hits": []}
        if meaning:
            return await semantic_search(request, sess, s, ctx)
        if not s.empty:
            started = time.monotonic()
            # the page in one query (results, counts and facets share one pass: queries.page)
            found = await rows(sess, q.page(s))
            res, summary, findings = q.page_parts(found[0]) if found else ([], [], [])
            total = sum(int(r["n"]) for r in summary if r["facet"] == "total")
            modalities = [r for r in summary if r["facet"] == "modality"][:20]
            months = [{"month": r["value"], "n": r["n"]} for r in summary if r["facet"] == "month"]
            by_acc: dict[str, list[dict[str, Any]]] = {}
            for site in {r["site"] for r in res}:
                accs = [r["accession"] for r in res if r["site"] == site]
                for f in await rows(sess, q.findings_of(site, accs)):
                    by_acc.setdefault(f"{site}|{f['accession']}", []).append(f)
            for r in res:
                r["findings"] = by_acc.get(f"{r['site']}|{r['accession']}", [])
            peak = max([int(m["n"]) for m in months] or [1])
            ctx.update(results=res, total=total, modalities=modalities, finding_facets=findings,
                       months=[{**m, "n": int(m["n"]), "pct": round(100 * int(m["n"]) / peak)}
                               for m in months],
                       ms=round((time.monotonic() - started) * 1000))
            audit.record(target, sess.principal.user, "web.search", allowed=True, rows=total,
                         duration_ms=ctx["ms"], search=s.params())
        return render(request, "search.html", **ctx)

    async def semantic_search(request: Request, sess: Session, s: q.Search,
                              ctx: dict[str, Any]) -> Response:
        """The search text ranks, by meaning, the reports the filters select (``radstream.web.semantic``);
        the facets and the count are those of the filters."""
        started = time.monotonic()
        filters = dataclasses.replace(s, text="")
        try:
            vector = await run_in_threadpool(sem.embed, s.text, settings.ml.torch_threads)
            sql = sem.search_sql(s, vector, settings.clickhouse.database)
        except Exception as exc:  # a filter value the similar-search guard refuses, e.g. with ';'
            return render(request, "search.html", 400, error=f"semantic search: {exc}", **ctx)
        hits, summary = await asyncio.gather(
            rows(sess, sql), rows(sess, q.summary(filters)) if not filters.empty else _no_rows())
        total = sum(int(r["n"]) for r in summary if r["facet"] == "total") if summary else None
        ctx.update(hits=hits, total=total, modalities=[r for r in summary if r["facet"] == "modality"][:20],
                   finding_facets=[], months=[], ms=round((time.monotonic() - started) * 1000))
        audit.record(target, sess.principal.user, "web.search", allowed=True, rows=len(hits),
                     duration_ms=ctx["ms"], search={**s.params(), "semantic": "1"})
        return render(request, "search.html", **ctx)

    # --- report ----------------------------------------------------------------------------------
    @page(READERS)
    async def report(request: Request, sess: Session) -> Response:
        site, acc = request.path_params["site"], request.path_params["accession"]
        found = await rows(sess, q.report(site, acc))
        if not found:
            return render(request, "error.html", 404, title="No such report", message=acc)
        rep = found[0]
        findings = await rows(sess, q.findings_of(site, [acc]))
        ctx: dict[str, Any] = {
            "r": rep, "findings": findings, "sections": await rows(sess, q.sections(site, acc)),
            "measurements": await rows(sess, q.measurements(site, acc)),
            "assessments": await rows(sess, q.assessments(site, acc)),
            "versions": version_diffs(await rows(sess, q.versions(site, acc))),
            "retrievals": [progress(r) for r in await rows(sess, q.retrievals(accession=acc))],
        }
        audit.record(target, sess.principal.user, "web.report", allowed=True, accession=acc)
        return render(request, "report.html", **ctx)

    # --- cohorts ---------------------------------------------------------------------------------
    @page(READERS)
    async def cohort_list(request: Request, sess: Session) -> Response:
        return render(request, "cohorts.html", cohorts=cohorts.all())

    @page(READERS, post=True)
    async def cohort_save(request: Request, sess: Session) -> Response:
        form = request.state.form
        s = q.Search.of(form)
        if s.empty:
            raise ValueError("an empty search is not a cohort")
        studies = await rows(sess, q.cohort_studies(s))
        name = str(form.get("name") or "").strip()[:120] or "cohort"
        c = cohorts.add(name, sess.principal.user, s.params(), len(studies))
        audit.record(target, sess.principal.user, "cohort.save", allowed=True, cohort=c.cohort_id,
                     name=name, search=s.params(), rows=len(studies))
        return RedirectResponse(f"/cohorts/{c.cohort_id}", 303)

    def cohort_of(request: Request) -> Cohort:
        c = cohorts.get(request.path_params["cid"])
        if c is None:
            raise ValueError("no such cohort")
        return c

    registry_lock = threading.Lock()  # one registry (one consumer thread) however many pages ask at once
    started: list[Any] = []  # registries this app started, stopped at shutdown (not those passed in)

    def project_registry() -> Any:
        """The registered projects (a registry this process starts on first use unless one was given)."""
        with registry_lock:
            reg = state["projects"]
            if reg is None:
                from sinks.dicom.projects import ProjectRegistry

                reg = state["projects"] = ProjectRegistry(settings.kafka, settings.topics)
                started.append(reg)
        return reg

    def project_list(sess: Session) -> list[Any]:
        """The projects this user may send studies to: every active one for a steward; the
        de-identified ones for an analyst (identified images are for stewards: docs/access.md)."""
        steward = sess.principal.has("steward")
        return [p for p in project_registry().all() if p.active and (steward or not p.identified)]

    def refusal_for(sess: Session, project: str, destination: str) -> str | None:
        """Why this user may not send studies of a cohort to ``project``/``destination`` (None: may)."""
        from sinks.dicom.projects import refusal

        registry = project_registry()
        why = refusal(registry, project, destination, wait_s=5)
        if why is None and registry.get(project).identified and not sess.principal.has("steward"):
            why = f"project {project!r} receives identified images: only a steward may send studies to it"
        return why

    def unwatch_refusal(sess: Session, w: dict[str, Any], wait_s: float = 5.0) -> str | None:
        """Why this user may not end the standing watch ``w`` of a cohort (None: may): the rule of
        ``radstream cohort unwatch`` too, ``streams.cohort.watch_refusal`` (docs/web.md)."""
        if sess.principal.has("steward"):  # reads no topic
            return None
        project = w["project"]
        registered = project_registry().get(project, wait_s)
        return watch_refusal(sess.principal, project, None if registered is None else registered.identified,
                             w.get("by"), "end", f"the watch of project {project!r}")

    def takeover_refusal(sess: Session, c: Cohort, project: str) -> str | None:
        """Why this user may not (re)subscribe ``c`` for ``project`` (None: may). The watch id is the same
        whoever subscribes (``standing.watch_id_of``), so a subscribe replaces the watch standing there:
        the same rule as ending it (``unwatch_refusal``), unless it was withdrawn elsewhere since."""
        ws = [w for w in c.watches if w["project"] == project]
        if not ws:
            return None
        ended = watches_ended().get(ws[0]["watch_id"])
        if ended is not None and ended > datetime.fromisoformat(ws[0]["since"]):
            return None
        return unwatch_refusal(sess, ws[0])

    def watches_ended() -> dict[str, datetime]:
        """Watch id -> when it was withdrawn, as the watches topic says (read by a registry this process
        starts on first use); empty until the registry has read the topic to its end."""
        with registry_lock:
            reg = state["watches"]
            if reg is None:
                reg = state["watches"] = WatchRegistry(settings.kafka, settings.topics)
                started.append(reg)
                reg.start()
        return reg.ended() if reg.loaded.is_set() else {}

    def stop_registries() -> None:
        """Stop the registries pages started (their consumers leave their groups); used again, a page
        starts a new one."""
        with registry_lock:
            regs = started[:]
            started.clear()
            for name in ("projects", "watches"):
                if state[name] in regs:
                    state[name] = None
        for reg in regs:
            reg.stop()

    @page(READERS)
    async def cohort_page(request: Request, sess: Session) -> Response:
        c = cohort_of(request)
        ended = await run_in_threadpool(watches_ended)
        gone = [w for w in c.watches if w["watch_id"] in ended
                and ended[w["watch_id"]] > datetime.fromisoformat(w["since"])]
        if gone:  # withdrawn elsewhere (`radstream cohort unwatch`, another web app) after it began here
            c.watches = [w for w in c.watches if w not in gone]
            cohorts.update(c)
        s = q.Search.of(c.search)
        n = len(await rows(sess, q.cohort_studies(s)))
        if c.size != n:  # the size over time: a new point whenever it changed
            c.sizes.append((datetime.now(UTC).isoformat(timespec="seconds"), n))
            cohorts.update(c)
        projects = await run_in_threadpool(project_list, sess)
        endable = {w["project"] for w in c.watches
                   if await run_in_threadpool(unwatch_refusal, sess, w, 0.0) is None}
        try:
            rule, why_not = standing.rule_of(c.search, f"web-cohort-{c.cohort_id}"), ""
        except ValueError as exc:
            rule, why_not = None, str(exc)
        return render(request, "cohort.html", c=c, projects=projects, endable=endable,
                      destinations=settings.research.allowed_destinations,
                      rule=json.dumps(rule, indent=1) if rule else "", why_not=why_not,
                      search_link=urlencode(c.search))

    @page(READERS)
    async def cohort_manifest(request: Request, sess: Session) -> Response:
        c = cohort_of(request)
        studies = await rows(sess, q.cohort_studies(q.Search.of(c.search)))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["accession", "study_ref", "modality", "exam_time"])
        w.writerows([[r["accession"], r["study_ref"], r["modality"], r["exam_time"]] for r in studies])
        audit.record(target, sess.principal.user, "cohort.manifest", allowed=True, cohort=c.cohort_id,
                     rows=len(studies))
        return Response(buf.getvalue(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="cohort-{c.cohort_id}.csv"'})

    def send(c: Cohort, sess: Session, project: str, destination: str, studies: list[dict[str, Any]],
             done: set[str]) -> int:
        from radstream.retrieval import cohort_request
        from radstream.text_deid import research_key
        from streams.producer import Deliveries, make_producer

        if destination not in settings.research.allowed_destinations:
            raise ValueError(f"destination {destination!r} is not on the allow-list")
        why = refusal_for(sess, project, destination)
        if why:
            raise ValueError(why)
        if state["producer"] is None:
            state["producer"] = make_producer(settings.kafka)
        sent = Deliveries(state["producer"])  # a refused request is not a sent one
        key, now, n = research_key(settings), datetime.now(UTC), 0
        for r in studies:
            if r["accession"] in done:
                continue
            rec = cohort_request(key, settings.ingest.site, {"accession": r["accession"],
                                                             "study_ref": r["study_ref"]},
                                 project=project, destination=destination, requester=sess.principal.user,
                                 now=now)
            # the worker checks them again when the request runs (the project may turn identified)
            rec["requester_roles"] = sorted(sess.principal.roles)
            sent.produce(settings.topics.retrieval_requests, "retrieval_requested", rec["request_id"], rec)
            n += 1
        left = sent.flush(30)
        if left:
            raise Unavailable(f"Kafka did not confirm {left} of {n} retrieval request(s)")
        return n

    @page(READERS, post=True)
    async def cohort_retrieve(request: Request, sess: Session) -> Response:
        c = cohort_of(request)
        form = request.state.form
        project, destination = str(form.get("project") or ""), str(form.get("destination") or "")
        studies = await rows(sess, q.cohort_studies(q.Search.of(c.search)))
        done = {r["accession"] for r in await rows(sess, q.completed_accessions(project, destination))}
        try:
            n = await run_in_threadpool(send, c, sess, project, destination, studies, done)
        except ValueError as exc:
            audit.record(target, sess.principal.user, "web.retrieve", allowed=False, project=project,
                         cohort=c.cohort_id, reason=str(exc))
            raise
        c.sent.append({"time": datetime.now(UTC).isoformat(timespec="seconds"), "project": project,
                       "destination": destination, "requests": n, "skipped": len(studies) - n})
        cohorts.update(c)
        audit.record(target, sess.principal.user, "web.retrieve", allowed=True, project=project,
                     cohort=c.cohort_id, destination=destination, rows=n)
        return RedirectResponse(f"/retrievals?project={project}", 303)

    # --- standing cohorts -------------------------------------------------------------------------
    def watch(c: Cohort, sess: Session, project: str, destination: str) -> dict[str, Any]:
        rule = standing.rule_of(c.search, f"web-cohort-{c.cohort_id}")
        why = refusal_for(sess, project, destination)
        if why:
            raise ValueError(why)
        return standing.subscribe(settings, rule, project, destination, sess.principal.user,
                                  standing.watch_id_of(c.cohort_id, project), web_dir / "rules",
                                  sorted(sess.principal.roles))

    @page(READERS, post=True)
    async def cohort_subscribe(request: Request, sess: Session) -> Response:
        """Subscribe the cohort for a project: new matching report versions become retrieval requests."""
        c = cohort_of(request)
        form = request.state.form
        project, destination = str(form.get("project") or ""), str(form.get("destination") or "")
        taken = await run_in_threadpool(takeover_refusal, sess, c, project)
        if taken:  # another user's watch: theirs to replace or end (or a steward's)
            audit.record(target, sess.principal.user, "cohort.watch", allowed=False, project=project,
                         cohort=c.cohort_id, reason=taken)
            return render(request, "error.html", 403, title="Not allowed", message=taken)
        try:
            rec = await run_in_threadpool(watch, c, sess, project, destination)
        except ValueError as exc:  # not expressible, destination not allowed, project not registered
            audit.record(target, sess.principal.user, "cohort.watch", allowed=False, project=project,
                         cohort=c.cohort_id, reason=str(exc))
            return render(request, "error.html", 400, title="Not subscribed", message=str(exc))
        c.watches = [w for w in c.watches if w["project"] != project] + [{
            "project": project, "destination": destination, "watch_id": rec["watch_id"],
            "since": rec["time"].isoformat(timespec="seconds"), "by": sess.principal.user}]
        cohorts.update(c)
        audit.record(target, sess.principal.user, "cohort.watch", allowed=True, project=project,
                     cohort=c.cohort_id, destination=destination, watch_id=rec["watch_id"])
        return RedirectResponse(f"/cohorts/{c.cohort_id}", 303)

    @page(READERS, post=True)
    async def cohort_unsubscribe(request: Request, sess: Session) -> Response:
        """End the project's standing cohort (requests already made are not cancelled)."""
        c = cohort_of(request)
        project = str(request.state.form.get("project") or "")
        ws = [w for w in c.watches if w["project"] == project]
        if not ws:
            raise ValueError(f"the cohort is not subscribed for project {project!r}")
        why = await run_in_threadpool(unwatch_refusal, sess, ws[0])
        if why:
            audit.record(target, sess.principal.user, "cohort.unwatch", allowed=False, project=project,
                         cohort=c.cohort_id, watch_id=ws[0]["watch_id"], reason=why)
            return render(request, "error.html", 403, title="Not allowed", message=why)
        await run_in_threadpool(standing.unsubscribe, settings, ws[0]["watch_id"])
        c.watches = [w for w in c.watches if w["project"] != project]
        cohorts.update(c)
        audit.record(target, sess.principal.user, "cohort.unwatch", allowed=True, project=project,
                     cohort=c.cohort_id, watch_id=ws[0]["watch_id"])
        return RedirectResponse(f"/cohorts/{c.cohort_id}", 303)

    # --- retrieval dashboard -----------------------------------------------------------------------
    async def retrieval_ctx(request: Request, sess: Session) -> dict[str, Any]:
        from sinks.dicom.worker import FINAL

        project = request.query_params.get("project", "")
        reqs = [progress(r) for r in await rows(sess, q.retrievals(project=project))]
        totals = await rows(sess, q.project_totals())
        waiting = {r["project"]: int(r["n"]) for r in await rows(sess, pl.waiting_for_window(project))}
        step = "minute" if request.query_params.get("step") == "minute" else "hour"
        tp = await rows(sess, pl.throughput(project, step, identified=sess.principal.has("steward")))
        return {"requests": reqs, "totals": [{**t, "waiting": waiting.get(t["project"], 0)} for t in totals],
                "project": project, "live": any(r.get("state") not in FINAL for r in reqs),
                "window": pl.window_state(settings.pacs.windows, settings.pacs.timezone), "step": step,
                "throughput": tp, "chart": chart_of(tp, 60 if step == "minute" else 3600)}

    @page(READERS)
    async def retrievals(request: Request, sess: Session) -> Response:
        return render(request, "retrievals.html", **await retrieval_ctx(request, sess))

    @page(READERS)
    async def retrievals_table(request: Request, sess: Session) -> Response:
        return render(request, "_retrievals_table.html", **await retrieval_ctx(request, sess))

    @page(READERS)
    async def retrievals_events(request: Request, sess: Session) -> Response:
        """Server-sent events: the dashboard's table (event ``retrievals``) whenever it changed, looked for
        every ``SSE_EVERY_S`` (a row count of its tables; every query is audited by the query layer, so
        an idle dashboard costs one a second); ends after ``sse_max_s`` (EventSource reconnects, the
        session is checked again) or when the session ended or lost its role (checked every tick)."""
        tmpl = templates.get_template("_retrievals_table.html")

        async def stream() -> AsyncIterator[str]:
            last, seen, started = "", "", time.monotonic()
            yield "retry: 2000\n\n"
            # the session checked again every tick, as a page would be (its token, its roles now)
            while time.monotonic() - started < sse_max_s and await still(request, sess) \
                    and any(sess.principal.has(r) for r in READERS):
                if await request.is_disconnected():
                    return
                try:
                    # one small query a tick; the dashboard's own queries only when it moved
                    marker = json.dumps([await rows(sess, pl.dashboard_marker()), pl.window_state(
                        settings.pacs.windows, settings.pacs.timezone)["open"]])
                    html = last if marker == seen else tmpl.render(
                        request=request, **await retrieval_ctx(request, sess))
                    seen = marker
                except (Refused, Unavailable) as exc:
                    html, seen = f'<p class="error">{escape(str(exc))}</p>', ""
                if html != last:
                    last = html
                    yield "event: retrievals\n" + "".join(f"data: {x}\n" for x in html.splitlines()) + "\n"
                await asyncio.sleep(SSE_EVERY_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # --- pipeline ----------------------------------------------------------------------------------
    @page(READERS)
    async def pipeline_page(request: Request, sess: Session) -> Response:
        scrapes = await run_in_threadpool(pl.scrape_all, settings, sess.token)
        # stored-per-hour reads inserted_at, the real time a row was stored: a steward's, since against a
        # report's shifted times it would give the patient's date shift (docs/analysts.md)
        steward = sess.principal.has("steward")
        hours = await rows(sess, pl.reports_per_hour()) if steward else []
        dead_rows: list[dict[str, Any]] | None = None
        if steward:  # the dead_letters table is a steward's (the query layer says so)
            dead_rows = await rows(sess, pl.dead_letters())
        return render(request, "pipeline.html", scrapes=scrapes, m=pl.summary(scrapes), hours=hours,
                      hours_shown=steward,
                      chart={"x": [h["hour"] for h in hours], "step": 3600,
                             "series": {"report versions": [int(h["received"]) for h in hours],
                                        "NLP results": [int(h["analysed"]) for h in hours]}},
                      dead_rows=dead_rows)

    @page(READERS)
    async def retrieval(request: Request, sess: Session) -> Response:
        rid = request.path_params["rid"]
        reqs = [progress(r) for r in await rows(sess, q.retrievals()) if r["request_id"] == rid]
        events = await rows(sess, q.timeline(rid, identified=sess.principal.has("steward")))
        return render(request, "retrieval.html", rid=rid, req=reqs[0] if reqs else None, events=events)

    # --- stewards ----------------------------------------------------------------------------------
    @page(STEWARDS)
    async def audit_page(request: Request, sess: Session) -> Response:
        user = request.query_params.get("user", "")
        return render(request, "audit.html", events=await rows(sess, q.audit_log(user)), who=user)

    @page(STEWARDS)
    async def quarantine_page(request: Request, sess: Session) -> Response:
        return render(request, "quarantine.html", items=await rows(sess, q.quarantine()))

    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/search", search),
        Route("/report/{site}/{accession}", report),
        Route("/cohorts", cohort_list),
        Route("/cohorts", cohort_save, methods=["POST"]),
        Route("/cohorts/{cid}", cohort_page),
        Route("/cohorts/{cid}/manifest.csv", cohort_manifest),
        Route("/cohorts/{cid}/retrieve", cohort_retrieve, methods=["POST"]),
        Route("/cohorts/{cid}/subscribe", cohort_subscribe, methods=["POST"]),
        Route("/cohorts/{cid}/unsubscribe", cohort_unsubscribe, methods=["POST"]),
        Route("/retrievals", retrievals),
        Route("/retrievals/table", retrievals_table),
        Route("/retrievals/events", retrievals_events),
        Route("/pipeline", pipeline_page),
        Route("/retrievals/{rid}", retrieval),
        Route("/steward/audit", audit_page),
        Route("/steward/quarantine", quarantine_page),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders),
                  Middleware(SessionMiddleware, secret_key=session_secret(web_dir),
                             session_cookie="rs_session", max_age=SESSION_S, same_site="strict",
                             https_only=https)]
    # /metrics, /health, /ready as on every long-running process (streams/ops.py, docs/monitoring.md):
    # bearer token of any role, not the browser session
    ops = Ops(health=lambda: {"service": "web", "sessions": len(sessions)},
              checks={"kafka": kafka_check(settings.kafka), "warehouse": wh.reachable})

    async def ops_endpoint(request: Request) -> Response:
        try:
            principal = await run_in_threadpool(gate.check, request.headers.get("authorization"),
                                                request.headers.get("x-api-key"), client=client_of(request),
                                                endpoint=request.url.path)
        except AuthError as exc:
            return Response(exc.reason + "\n", exc.status, media_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="radstream"'})
        status, body, ctype = await run_in_threadpool(ops.respond, request.url.path, principal)
        return Response(body, status, media_type=ctype)

    routes += [Route(path, ops_endpoint) for path in OPS_PATHS]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(stop_registries)

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.sessions = sessions
    app.state.cohorts = cohorts
    app.state.stop_registries = stop_registries
    return app
