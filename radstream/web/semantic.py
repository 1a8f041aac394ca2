"""Semantic report search for the web app: the search text ranks reports by meaning (all-MiniLM-L6-v2,
the ``[ml]`` extra) among the reports that the search's structured filters select.

The text is embedded in the web process (the model loads once, on the first semantic search) and
compared with ``report_embeddings`` (one vector per impression and findings sentence of the
de-identified text, written by the worker with ``ml.embed``) exactly as ``radstream similar`` does
(``radstream.cli.similar``): a report scores by its best sentence, only its latest version counts. The
filters are ``queries.where`` of the same search without its text, as a subquery; every value is bound by
clickhouse-connect's binder (``queries.bind``), never concatenated.

Embeddings ignore negation ("no effusion" lies next to "effusion"): combine with the finding filter
("present") to ask for reports that have the finding.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from radstream.cli.similar import similar_sql_text
from radstream.web import queries as q

K = q.PAGE
_embedders: dict[int, Any] = {}
_lock = threading.Lock()


def available() -> bool:
    from processors.ml import ml_available

    return ml_available()


def embed(text: str, threads: int = 1) -> list[float]:
    """The query's vector (unit length); the model is loaded once per process."""
    from processors.ml.embed import default_embedder

    with _lock:
        if threads not in _embedders:
            _embedders[threads] = default_embedder(threads)
        return [float(x) for x in _embedders[threads].embed_one(text).tolist()]


def search_sql(s: q.Search, vector: list[float], database: str, k: int = K) -> str:
    """The k reports nearest to ``vector`` among those the search's filters (not its text) select."""
    filters = replace(s, text="")
    where = None
    if not filters.empty:
        frm, params = q.where(filters)
        where = f"(site, accession) IN (SELECT t.site, t.accession FROM {q.bind(frm, params)})"
    return similar_sql_text(database, vector, k=k, where=where)
