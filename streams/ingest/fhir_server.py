"""FHIR R4 HTTP endpoint (aiohttp): DiagnosticReport and Bundle in, report events to Kafka.

- ``POST /fhir/DiagnosticReport``: one DiagnosticReport (related resources contained);
- ``POST /fhir/Bundle`` and ``POST /fhir`` (transaction/batch/collection): DiagnosticReports with
  their ServiceRequest, ImagingStudy, Patient and Encounter entries. A ``batch`` is per entry (FHIR):
  a bad report is refused alone (an error issue naming ``Bundle.entry[n]``, the body dead-lettered with
  that reason) and the others are accepted; a batch none of whose reports is usable is refused as a
  whole. Any other Bundle (``transaction``: all or nothing in FHIR) is accepted whole or not at all;
- a report with nothing to store yet (``registered``, ``partial`` without text) is skipped with an
  information issue "skipped, no report yet", never refused (as HL7's OBR-25 O/I/S);
- ``GET /fhir/metadata``: a minimal CapabilityStatement; ``GET /health``, ``/ready`` and ``/metrics``
  (``streams.ops``, docs/monitoring.md).

Every request needs a token (``streams.auth``: ``Authorization: Bearer <token>`` or ``X-API-Key``):
401 (issue type ``login``) without a valid one, audited as a login failure; the POSTs need the role
``ingest`` (or admin): 403 (``forbidden``) otherwise. HTTPS when a TLS context is given.

Success answers 201 (one report) or 200 (a Bundle, or a report skipped) with an OperationOutcome
(severity information) naming the event ids and the skipped reports, after Kafka confirmed delivery.
Errors answer an OperationOutcome: 400 invalid JSON/FHIR or unusable content (also a report whose text
is only a PDF), 413 too large, 415 not JSON, 422 a business rule (status ``unknown``), 503 Kafka did
not confirm (retry). Rejected bodies go to the dead-letter topic; a rejection is answered once Kafka
confirmed the dead letter (503, retry, when it did not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from typing import Any

from aiohttp import web

from processors.ingest.fhir import (
    MAX_RESOURCE_BYTES,
    issue,
    operation_outcome,
    outcome_of,
    parse_fhir_result,
)
from processors.ingest.model import ParseError
from streams import metrics
from streams.auth import AuthError, Gate, Principal
from streams.config import IngestConfig, KafkaConfig, TopicsConfig
from streams.ingest.publish import INTERACTIVE, Publisher
from streams.ops import Ops, kafka_check
from streams.producer import DeliveryError, make_producer

log = logging.getLogger(__name__)
STAGE = "fhir-endpoint"
FHIR_JSON = "application/fhir+json"
ISSUE_TYPES = {"invalid", "structure", "required", "value", "invariant", "not-supported", "code-invalid",
               "business-rule", "too-costly", "transient", "exception", "informational", "login", "forbidden"}
STATUS_OF = {"too-costly": 413, "business-rule": 422, "transient": 503, "exception": 500}
PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher", Publisher)
INGEST: web.AppKey[IngestConfig] = web.AppKey("ingest", IngestConfig)
STATS: web.AppKey[dict[str, int]] = web.AppKey("stats")
GATE: web.AppKey[Gate] = web.AppKey("gate", Gate)
OPS: web.AppKey[Ops] = web.AppKey("ops", Ops)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)  # the authenticated caller


def _outcome(status: int, severity: str, code: str, text: str, expression: str | None = None) -> web.Response:
    body = operation_outcome(severity, code, text, expression)
    return web.Response(status=status, text=json.dumps(body), content_type=FHIR_JSON)


async def _kept(pub: Publisher, raw: bytes, error: BaseException | str, where: str) -> bool:
    """Send the dead letter of a rejected body; True once Kafka confirmed it."""
    try:
        await pub.dead_letter_confirmed(raw, error, where=where)
    except Exception as exc:
        log.error("dead-letter write failed: %s: %s", type(exc).__name__, exc)
        return False
    return True


async def _rejected(pub: Publisher, raw: bytes, error: BaseException | str, where: str,
                    response: web.Response) -> web.Response:
    """``response`` once Kafka confirmed the dead letter of the rejected body; 503 (retry: the sender keeps
    the body) when it did not, or the rejection would be answered and the body lost."""
    if not await _kept(pub, raw, error, where):
        return _outcome(503, "error", "transient",
                        "temporarily unable to store the rejected body; retry later")
    return response


def _kafka_down(exc: Exception) -> web.Response:
    log.error("Kafka did not confirm FHIR events: %s", type(exc).__name__)
    return _outcome(503, "error", "transient", f"temporarily unable to store the report "
                    f"({type(exc).__name__}); retry later")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is longer. ``content.read(n)`` returns only
    what has arrived so far (a body in several TCP segments or TLS records): read until the end."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


async def _ingest(request: web.Request, expect: str | None) -> web.Response:
    app = request.app
    pub, ingest, stats = app[PUBLISHER], app[INGEST], app[STATS]
    stats["requests"] += 1
    metrics.INGEST_MESSAGES.labels(STAGE).inc()
    ctype = request.content_type
    if ctype not in ("application/fhir+json", "application/json"):
        stats["rejected"] += 1
        return _outcome(415, "error", "not-supported",
                        f"content type {ctype!r} not supported; send application/fhir+json")
    if request.content_length is not None and request.content_length > MAX_RESOURCE_BYTES:
        stats["rejected"] += 1
        too_large = _outcome(413, "error", "too-costly", f"body exceeds {MAX_RESOURCE_BYTES} bytes")
        return await _rejected(pub, b"", f"request body of {request.content_length} bytes exceeds the limit",
                               "fhir", too_large)
    raw = await read_body(request, MAX_RESOURCE_BYTES)
    try:
        if len(raw) > MAX_RESOURCE_BYTES:
            raise ParseError(f"body exceeds {MAX_RESOURCE_BYTES} bytes", code="too-costly")
        rtype = None
        with contextlib.suppress(ValueError):
            rtype = json.loads(raw).get("resourceType") if raw.strip().startswith(b"{") else None
        if expect and rtype is not None and rtype != expect:
            raise ParseError(f"this endpoint takes a {expect}, got {rtype}", code="not-supported")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, lambda: parse_fhir_result(raw, site=ingest.site))
        if result.refused and not result.events and not result.skipped:
            # a batch none of whose reports was usable: refused like a single bad report
            first = result.refused[0].error
            raise ParseError("; ".join(r.error.reason for r in result.refused), code=first.code,
                             field=first.field)
    except ParseError as exc:
        stats["rejected"] += 1
        code = exc.code if exc.code in ISSUE_TYPES else "invalid"
        # the reason (it may quote the body) goes to the sender and the dead letter, not the log
        log.info("POST %s rejected (%s, field %s)", request.path, code, exc.field or "-")
        return await _rejected(pub, raw, exc, f"fhir:{request.path}",
                               _outcome(STATUS_OF.get(code, 400), "error", code, exc.reason, exc.field))
    except Exception as exc:  # a parser bug: keep the body in the dead-letter topic with the reason
        stats["rejected"] += 1
        log.error("POST %s: parser failed with %s", request.path, type(exc).__name__)
        return await _rejected(pub, raw, f"body could not be processed ({type(exc).__name__}: {exc})",
                               f"fhir:{request.path}",
                               _outcome(500, "error", "exception",
                                        f"body could not be processed ({type(exc).__name__})"))
    events = result.events
    issues: list[dict[str, Any]] = []
    for ref in result.refused:  # entries of a batch refused on their own: the body is kept first
        if not await _kept(pub, raw, f"{ref.where}: {ref.error.reason}", f"fhir:{request.path}"):
            # retried whole: nothing of it was published yet, and its events are idempotent anyway
            return _outcome(503, "error", "transient",
                            "temporarily unable to store the rejected entries; retry later")
        code = ref.error.code if ref.error.code in ISSUE_TYPES else "invalid"
        issues.append(issue("error", code, f"refused (dead-lettered): {ref.error.reason}", ref.where))
    stats["rejected"] += len(result.refused)
    try:
        await pub.publish_confirmed(events)
    except DeliveryError as exc:
        if not exc.refused_for_good:
            return _kafka_down(exc)
        # a retry would be refused again: 413 and the dead letter, not a 503 the client retries forever
        stats["rejected"] += 1
        log.error("Kafka refused FHIR events for good: %s", exc)
        reason = f"Kafka refused a report of this body ({exc}): dead-lettered, not in the report stream"
        return await _rejected(pub, raw, reason, f"fhir:{request.path}",
                               _outcome(413, "error", "too-costly", reason))
    except Exception as exc:
        return _kafka_down(exc)
    stats["accepted"] += 1
    stats["events"] += len(events)
    stats["skipped"] += len(result.skipped)
    log.info("POST %s accepted: %d report event(s), %d skipped, %d refused", request.path, len(events),
             len(result.skipped), len(result.refused))
    ids = ", ".join(f"{e.accession} {e.status} event {e.event_id}" for e in events)
    issues.insert(0, issue("information", "informational", f"accepted {len(events)} report event(s)"
                           + (f": {ids}" if ids else "")))
    for note in result.skipped:  # nothing to store yet (registered, partial without text): not an error
        issues.append(issue("information", "informational", f"skipped, no report yet: {note}"))
    created = expect == "DiagnosticReport" and bool(events)
    return web.Response(status=201 if created else 200, text=json.dumps(outcome_of(issues)),
                        content_type=FHIR_JSON)


async def post_report(request: web.Request) -> web.Response:
    return await _ingest(request, "DiagnosticReport")


async def post_bundle(request: web.Request) -> web.Response:
    return await _ingest(request, "Bundle")


async def post_any(request: web.Request) -> web.Response:
    return await _ingest(request, None)


async def metadata(request: web.Request) -> web.Response:
    body: dict[str, Any] = {
        "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
        "format": ["json"], "date": "2026-03-01",
        "rest": [{"mode": "server", "resource": [
            {"type": "DiagnosticReport", "interaction": [{"code": "create"}]},
            {"type": "Bundle", "interaction": [{"code": "create"}]}],
            "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
    }
    return web.Response(text=json.dumps(body), content_type=FHIR_JSON)


async def ops_page(request: web.Request) -> web.Response:
    """``/metrics`` and ``/ready`` (``streams.ops``; the readiness probe blocks: off the event loop)."""
    status, body, ctype = await asyncio.get_running_loop().run_in_executor(
        None, request.app[OPS].respond, request.path)
    return web.Response(status=status, body=body, headers={"Content-Type": ctype})


async def health(request: web.Request) -> web.Response:
    stats: dict[str, Any] = {"ok": True}
    counts: dict[str, int] = request.app[STATS]
    stats.update(counts)
    return web.json_response(stats)


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every route: a valid token; the POSTs: the role ingest."""
    gate = request.app[GATE]
    client = request.remote or ""
    auth, key = request.headers.get("Authorization"), request.headers.get("X-API-Key")
    loop = asyncio.get_running_loop()
    try:  # a token not in the cache costs one argon2 check (up to ~1 s, docs/access.md): off the event loop
        principal = await loop.run_in_executor(
            None, lambda: gate.check(auth, key, client=client, endpoint=request.path))
    except AuthError as exc:
        resp = _outcome(exc.status, "error", "login", exc.reason)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="radstream"'
        return resp
    if request.method == "POST":
        try:
            principal.require("ingest")
        except AuthError as exc:
            refusal = exc
            await loop.run_in_executor(None, lambda: gate.refused(principal, refusal, client=client,
                                                                  endpoint=request.path))
            return _outcome(refusal.status, "error", "forbidden", refusal.reason)
    request[PRINCIPAL] = principal
    response: web.StreamResponse = await handler(request)
    return response


def make_app(kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig,
             publisher: Publisher | None = None, *, gate: Gate) -> web.Application:
    app = web.Application(client_max_size=MAX_RESOURCE_BYTES + 1024, middlewares=[authenticate])
    app[GATE] = gate
    pub = publisher or Publisher(kafka, topics, ingest, stage=STAGE,
                                 producer=make_producer(kafka, **INTERACTIVE))
    app[PUBLISHER] = pub
    app[INGEST] = ingest
    stats: dict[str, int] = {"requests": 0, "accepted": 0, "rejected": 0, "events": 0, "skipped": 0}
    app[STATS] = stats
    app.router.add_post("/fhir/DiagnosticReport", post_report)
    app.router.add_post("/fhir/Bundle", post_bundle)
    app.router.add_post("/fhir", post_any)
    app.router.add_get("/fhir/metadata", metadata)
    app.router.add_get("/health", health)
    app[OPS] = Ops(checks={"kafka": kafka_check(kafka)})
    app.router.add_get("/metrics", ops_page)
    app.router.add_get("/ready", ops_page)

    async def on_startup(app: web.Application) -> None:
        pub.start_polling()

    async def on_cleanup(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, pub.close)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def start_server(kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig, host: str,
                       port: int, *, gate: Gate,
                       tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Start the endpoint; returns the runner (``await runner.cleanup()`` stops it) and the bound port."""
    runner = web.AppRunner(make_app(kafka, topics, ingest, gate=gate), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    server: Any = site._server
    bound: int = server.sockets[0].getsockname()[1]
    return runner, bound


async def serve_forever(kafka: KafkaConfig, topics: TopicsConfig, ingest: IngestConfig, host: str,
                        port: int, *, gate: Gate, tls: ssl.SSLContext | None = None) -> None:
    import signal

    runner, bound = await start_server(kafka, topics, ingest, host, port, gate=gate, tls=tls)
    scheme = "https" if tls is not None else "http"
    print(f"fhir-server: {scheme}://{host}:{bound}/fhir -> {topics.reports}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    print("fhir-server: stopped", flush=True)
