"""``radstream web``: the researchers' web app (docs/web.md), a process of its own."""

from __future__ import annotations

import click

from radstream.cli import checked_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option("--port", default=8088, show_default=True, type=int)
@click.pass_context
def web(ctx: click.Context, host: str, port: int) -> None:
    """Serve report search, cohorts and the retrieval dashboard (HTTPS with auth.tls_cert/key)."""
    import uvicorn

    from radstream.web.app import create_app

    settings = checked_settings(ctx)  # a bad config (web.limit_concurrency, ...) stops it before it serves
    tls = bool(settings.auth.tls_cert and settings.auth.tls_key)
    app = create_app(settings, https=tls)
    scheme = "https" if tls else "http"
    click.echo(f"radstream web on {scheme}://{host}:{port}/ "
               "(sign in with a token of `radstream auth add-token`)")
    ssl = {"ssl_certfile": settings.auth.tls_cert, "ssl_keyfile": settings.auth.tls_key} if tls else {}
    # an open event stream (the dashboard's) would hold a shutdown until it ends: 5 s, then it is cut.
    # limit_concurrency: past web.limit_concurrency connections or running requests, uvicorn answers 503
    # (and logs "Exceeded concurrency limit.") instead of taking on more work
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5, limit_concurrency=settings.web.limit_concurrency,
                timeout_keep_alive=settings.web.timeout_keep_alive, **ssl)  # type: ignore[arg-type]
