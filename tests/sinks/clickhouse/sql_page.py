"""One HTTP call to a worker's or sink's page (``/sql``, ``/health``, ``/ready``) with a bearer token."""

from __future__ import annotations

import urllib.error
import urllib.request


def call(port: int, path: str, token: str, body: str | None = None, timeout: float = 60) -> tuple[int, str]:
    """(status, body text) of a GET, or of a POST when ``body`` is given; an HTTP error is an answer too."""
    data = body.encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
