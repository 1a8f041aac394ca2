"""``radstream similar "text" [--k 20] [--where SQL] [--require-finding CONCEPT]``: similar-report search.

The query text is embedded with the same model as the reports (all-MiniLM-L6-v2) and compared by
cosine distance with the vectors in ``report_embeddings`` (one per impression and findings sentence;
a report scores by its best unit). Only the latest version of each accession is searched; cancelled
reports are not.

Embeddings ignore negation: "No pulmonary embolism." lies next to "Pulmonary embolism.". To ask for
reports that *have* a finding, ``--require-finding`` keeps only accessions whose latest NLP result has
that concept neither negated nor hypothetical (``findings_latest``). See docs/ml.md.

Python: ``find_similar(client, database, vector, ...)`` or ``similar_reports(settings, text, ...)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def similar_sql(database: str, *, where: str | None = None, n_required: int = 0) -> str:
    """The search query; parameters ``q`` (vector), ``n`` (candidate units), ``k``, ``c0``.. (concepts)."""
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
                     f"WHERE lower(concept) = lower({{c{i}:String}}) AND NOT negated AND NOT hypothetical)")
    return (
        "SELECT site, accession, report_version, 1 - min(d) AS score, argMin(unit, d) AS unit, "
        "argMin(text, d) AS text, any(modality) AS modality, any(body_part) AS body_part FROM ("
        f"SELECT site, accession, report_version, unit, text, modality, body_part, "
        f"cosineDistance(vector, {{q:Array(Float32)}}) AS d FROM {db}.report_embeddings "
        f"WHERE {' AND '.join(conds)} ORDER BY d ASC LIMIT {{n:UInt32}}) "
        "GROUP BY site, accession, report_version ORDER BY score DESC, site, accession LIMIT {k:UInt32}"
    )


def find_similar(client: Any, database: str, vector: Sequence[float], *, k: int = 20,
                 where: str | None = None, require_findings: Sequence[str] = ()) -> list[SimilarReport]:
    """Nearest reports to ``vector`` (unit length), best first."""
    params: dict[str, Any] = {"q": [float(x) for x in vector], "k": k, "n": k * CANDIDATES_PER_REPORT}
    for i, concept in enumerate(require_findings):
        params[f"c{i}"] = concept
    sql = similar_sql(database, where=where, n_required=len(require_findings))
    res = client.query(sql, parameters=params)
    return [SimilarReport(site=r[0], accession=r[1], report_version=int(r[2]), score=round(float(r[3]), 4),
                          unit=r[4], text=r[5], modality=r[6], body_part=r[7]) for r in res.result_rows]


def similar_reports(settings: Settings, text: str, *, k: int = 20, where: str | None = None,
                    require_findings: Sequence[str] = (), client: Any | None = None) -> list[SimilarReport]:
    """Embed ``text`` and search the warehouse of ``settings`` (read-only client unless one is given)."""
    from processors.ml.embed import default_embedder

    vector = default_embedder(settings.ml.torch_threads).embed_one(text)
    if client is not None:
        return find_similar(client, settings.clickhouse.database, vector.tolist(), k=k, where=where,
                            require_findings=require_findings)
    from sinks.clickhouse.client import open_readonly_client

    own = open_readonly_client(settings)
    try:
        return find_similar(own, settings.clickhouse.database, vector.tolist(), k=k, where=where,
                            require_findings=require_findings)
    finally:  # chDB: a process hosts one store at a time; leave it free for the caller's next one
        own.close()


@click.command()
@click.argument("text")
@click.option("--k", "k", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="Number of reports.")
@click.option("--where", default=None,
              help="Extra SQL condition on report_embeddings columns, e.g. \"modality = 'CT'\".")
@click.option("--require-finding", "require", multiple=True, metavar="CONCEPT",
              help="Keep reports whose latest NLP has CONCEPT neither negated nor hypothetical (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def similar(ctx: click.Context, text: str, k: int, where: str | None, require: tuple[str, ...],
            as_json: bool) -> None:
    """Reports most similar to TEXT (needs the [ml] extra and the report_embeddings table)."""
    from processors.ml import ml_available

    if not ml_available():
        raise click.ClickException("needs the [ml] extra (RADSTREAM_ML=1 scripts/venv.sh)")
    try:
        hits = similar_reports(settings_of(ctx), text, k=k, where=where, require_findings=require)
    except click.ClickException:
        raise
    except Exception as e:  # noqa: BLE001 - a missing table or a bad --where: say it in one line
        raise click.ClickException(str(e).strip().splitlines()[0]) from e
    for h in hits:
        if as_json:
            click.echo(json.dumps(asdict(h)))
        else:
            click.echo(f"{h.score:.3f}\t{h.site}|{h.accession}\t{h.modality}\t{h.unit}\t{h.text}")
