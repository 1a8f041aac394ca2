"""``radstream similar "text" [--k 20] [--where SQL] [--require-finding CONCEPT] [--direct]``.

Similar-report search. The query text is embedded in the calling process with the same model as the
reports (all-MiniLM-L6-v2) and compared by cosine distance with the vectors in ``report_embeddings``
(one per impression and findings sentence; a report scores by its best unit). Only the latest version
of each accession is searched; cancelled reports are not.

Where the nearest-neighbour query runs: like ``radstream sql``, through the read-only ``POST /sql``
page of the running worker when that worker owns our embedded store (chDB: one process per store
path, so opening it here would fail while the worker runs), else directly on the store or the
ClickHouse server (``--direct``: always directly). Either way the query runs with readonly=1.

Embeddings ignore negation: "No pulmonary embolism." lies next to "Pulmonary embolism.". To ask for
reports that *have* a finding, ``--require-finding`` keeps only accessions whose latest NLP result has
that concept neither negated nor hypothetical (``findings_latest``, any source: rules or a site
model). See docs/ml.md.

Python: ``similar_reports(settings, text, ...)`` (same routing as the command),
``search_vector(settings, vector, ...)`` with a vector you already have, or
``find_similar(client, database, vector, ...)`` on a client you hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click

from radstream.cli import settings_of
from radstream.config import Settings

CANDIDATES_PER_REPORT = 10   # units fetched per wanted report before grouping by report


@dataclass(frozen=True)
class SimilarReport:
    site: str
    accession: str
    report_version: int
    score: float          # cosine similarity of the best-matching unit (1 = same direction)
    unit: str             # impression | findings:<n> | report
    text: str             # that unit's text
    modality: str
    body_part: str


def _q(name: str) -> str:
    return "`" + name.replace("`", "\\`") + "`"


def normalize_concept(concept: str) -> str:
    """``"Pulmonary_Embolism "`` -> ``"pulmonary embolism"``: rule concepts are ids with underscores
    (``pulmonary_embolism``), site models' label maps often use words; both match either spelling."""
    return " ".join(concept.lower().replace("_", " ").split())


def _placeholder(name: str, typ: str) -> str:
    return f"{{{name}:{typ}}}"


def similar_sql(database: str, *, where: str | None = None, n_required: int = 0,
                value: Callable[[str, str], str] = _placeholder) -> str:
    """The search query; values ``q`` (vector), ``n`` (candidate units), ``k``, ``c0``.. (normalised
    concepts). ``value(name, type)`` writes each: a query parameter by default, or a literal."""
    db = _q(database)
    conds = [
        "unit != '-'",
        f"(site, accession, report_version) IN (SELECT site, accession, v FROM (SELECT site, accession, "
        f"max(report_version) AS v, argMax(status, report_version) AS st FROM {db}.report_embeddings "
        f"GROUP BY site, accession) WHERE st NOT IN ('cancelled', 'entered_in_error'))",
    ]
    if where:
        if ";" in where:
            raise click.BadParameter("one condition, no ';'", param_hint="--where")
        conds.append(f"({where})")
    for i in range(n_required):
        conds.append(f"(site, accession) IN (SELECT site, accession FROM {db}.findings_latest "
                     f"WHERE replaceAll(lower(concept), '_', ' ') = {value(f'c{i}', 'String')} "
                     "AND NOT negated AND NOT hypothetical)")
    return (
        "SELECT site, accession, report_version, 1 - min(d) AS score, argMin(unit, d) AS unit, "
        "argMin(text, d) AS text, any(modality) AS modality, any(body_part) AS body_part FROM ("
        f"SELECT site, accession, report_version, unit, text, modality, body_part, "
        f"cosineDistance(vector, {value('q', 'Array(Float32)')}) AS d FROM {db}.report_embeddings "
        f"WHERE {' AND '.join(conds)} ORDER BY d ASC LIMIT {value('n', 'UInt32')}) "
        f"GROUP BY site, accession, report_version ORDER BY score DESC, site, accession "
        f"LIMIT {value('k', 'UInt32')}"
    )


def _params(vector: Sequence[float], k: int, require_findings: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {"q": [float(x) for x in vector], "k": int(k),
                              "n": int(k) * CANDIDATES_PER_REPORT}
    for i, concept in enumerate(require_findings):
        params[f"c{i}"] = normalize_concept(concept)
    return params


def _literal(value: Any, typ: str) -> str:
    """A ClickHouse literal for one parameter (the worker's /sql page takes SQL text only)."""
    from radstream.warehouse import quote

    if typ == "Array(Float32)":
        # 9 significant digits give every float32 back exactly: the same vector as a bound parameter
        return "CAST([" + ",".join(f"{float(x):.9g}" for x in value) + "] AS Array(Float32))"
    if typ == "UInt32":
        return str(int(value))
    if typ == "String":
        return "'" + quote(str(value)) + "'"
    raise ValueError(f"no literal for type {typ}")


def similar_sql_text(database: str, vector: Sequence[float], *, k: int = 20, where: str | None = None,
                     require_findings: Sequence[str] = ()) -> str:
    """The search query with every value written in (for ``POST /sql`` or ``radstream sql``)."""
    params = _params(vector, k, require_findings)
    return similar_sql(database, where=where, n_required=len(require_findings),
                       value=lambda name, typ: _literal(params[name], typ))


def _hit(row: Sequence[Any]) -> SimilarReport:
    return SimilarReport(site=str(row[0]), accession=str(row[1]), report_version=int(row[2]),
                         score=round(float(row[3]), 4), unit=str(row[4]), text=str(row[5]),
                         modality=str(row[6]), body_part=str(row[7]))


_COLUMNS = ("site", "accession", "report_version", "score", "unit", "text", "modality", "body_part")


def find_similar(client: Any, database: str, vector: Sequence[float], *, k: int = 20,
                 where: str | None = None, require_findings: Sequence[str] = ()) -> list[SimilarReport]:
    """Nearest reports to ``vector`` (unit length), best first, on a client the caller holds."""
    sql = similar_sql(database, where=where, n_required=len(require_findings))
    res = client.query(sql, parameters=_params(vector, k, require_findings))
    return [_hit(r) for r in res.result_rows]


def search_vector(settings: Settings, vector: Sequence[float], *, k: int = 20, where: str | None = None,
                  require_findings: Sequence[str] = (), direct: bool = False) -> list[SimilarReport]:
    """Nearest reports to ``vector`` in the warehouse of ``settings``, read-only: through the running
    worker when it owns our embedded store (``radstream.warehouse.query_text``), else directly."""
    from radstream.warehouse import query_text, run_direct

    sql = similar_sql_text(settings.clickhouse.database, vector, k=k, where=where,
                           require_findings=require_findings)
    text = str(run_direct(settings, sql, "jsonl")) if direct else query_text(settings, sql, "jsonl")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [_hit([r[c] for c in _COLUMNS]) for r in rows]


def similar_reports(settings: Settings, text: str, *, k: int = 20, where: str | None = None,
                    require_findings: Sequence[str] = (), client: Any | None = None,
                    direct: bool = False) -> list[SimilarReport]:
    """Embed ``text`` here (the model loads in this process, ``settings.ml.torch_threads`` threads) and
    search: on ``client`` when given, else as :func:`search_vector` (the worker's store or directly)."""
    from processors.ml.embed import default_embedder

    vector = default_embedder(settings.ml.torch_threads).embed_one(text).tolist()
    if client is not None:
        return find_similar(client, settings.clickhouse.database, vector, k=k, where=where,
                            require_findings=require_findings)
    return search_vector(settings, vector, k=k, where=where, require_findings=require_findings,
                         direct=direct)


def _one_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else type(exc).__name__
    if "report_embeddings" in str(exc) and ("UNKNOWN_TABLE" in str(exc) or "does not exist" in str(exc)):
        msg += " (no embeddings yet: run the worker with ml.embed = true)"
    return msg


@click.command()
@click.argument("text")
@click.option("--k", "k", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="Number of reports.")
@click.option("--where", default=None,
              help="Extra SQL condition on report_embeddings columns, e.g. \"modality = 'CT'\".")
@click.option("--require-finding", "require", multiple=True, metavar="CONCEPT",
              help="Keep reports whose latest NLP has CONCEPT neither negated nor hypothetical (repeatable).")
@click.option("--direct", is_flag=True, help="Open the store directly, never ask a running worker.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def similar(ctx: click.Context, text: str, k: int, where: str | None, require: tuple[str, ...],
            direct: bool, as_json: bool) -> None:
    """Reports most similar to TEXT (needs the [ml] extra and the report_embeddings table)."""
    from processors.ml import ml_available

    if not ml_available():
        raise click.ClickException("needs the [ml] extra (RADSTREAM_ML=1 scripts/venv.sh)")
    try:
        hits = similar_reports(settings_of(ctx), text, k=k, where=where, require_findings=require,
                               direct=direct)
    except click.UsageError:
        raise
    except click.ClickException as e:
        raise click.ClickException(_one_line(Exception(e.message))) from e
    except Exception as e:  # noqa: BLE001 - a missing table or a bad --where: say it in one line
        raise click.ClickException(_one_line(e)) from e
    for h in hits:
        if as_json:
            click.echo(json.dumps(asdict(h)))
        else:
            click.echo(f"{h.score:.3f}\t{h.site}|{h.accession}\t{h.modality}\t{h.unit}\t{h.text}")
