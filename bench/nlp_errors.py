"""NLP error analysis: where negation, history and the chest labels go wrong, grouped by cause.

    PYTHONPATH=. python bench/nlp_errors.py negex [--data FILE] [--show N] [--baseline TREE] [--json]
    PYTHONPATH=. python bench/nlp_errors.py openi [--data FILE] [--show N] [--baseline TREE] [--json]
    PYTHONPATH=. python bench/nlp_errors.py robust [--data FILE] [--rewrites a,b] [--baseline TREE] [--json]

``negex``: the NegEx/ConText test-set layout (shared/eval/negex_dev.tsv: line number, condition,
sentence, Negated/Affirmed, Recent/Historical/Not particular, experiencer). Each condition goes
through ``assert_term`` (as ``radstream nlp assert`` does; a condition not found in its sentence is
scored affirmed/recent). Scores: F1 of ``Negated`` and F1 of ``Historical``, on the whole file and on
two folds split by a fixed hash of the line number (tune on one fold, check on the other). Errors are
grouped by the trigger that fired (false positives) or, for misses, by the cue words next to the target
that no rule covered, so a class of error shows up as one line.

``openi``: the Open-i chest reports (shared/eval/openi_chest_xray_dev.csv). Each wrong label is grouped
by its cause: for a false positive the concept and the text that made it positive; for a miss the
ConText trigger that negated/hedged/historicised/hypothesised the mention, the section that excluded it,
or "no mention" (a lexicon gap).

``robust``: the Open-i chest labels again, after rewriting every report in a way that keeps its gold
labels (a paraphrase a radiologist could have written: "No X." -> "X is not seen.", "No X. Mild Y." ->
"No X, mild Y.", British spellings, numbered impressions, upper case, a report flattened to one line,
"may be due to" -> "possibly due to", "Possible X." -> "X is possible.", "Small X." -> "X, small.",
"No X." -> "X is absent.", "Neither A nor B", sentences joined by semicolons, ...). The dev score fits
the dev phrasings; how much a rewrite costs shows how much of it rests on them, i.e. what to expect
on reports written differently. Scores per rewrite on the whole set and both folds;
``--show N`` prints the first N labels each rewrite changed for the worse (the rewritten sentence), so a
class of error shows up.

``--baseline TREE`` runs the same analysis on another checkout (e.g. /work/main) in a subprocess and
prints both scores side by side. The texts are dev data: read them here, never copy them into tests.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = [REPO.parent / "shared/eval", Path("/work/shared/eval")]

_CUE_WORDS = 3  # words either side of a missed target shown as its "cue"


def fold_of(key: str) -> int:
    """Fold 0 or 1 by a fixed hash of the id (crc32: stable across runs and Python versions)."""
    return zlib.crc32(key.encode()) % 2


def _find(name: str, given: str | None) -> Path:
    if given:
        return Path(given)
    for d in SHARED:
        if (d / name).exists():
            return d / name
    raise SystemExit(f"{name} not found under {[str(d) for d in SHARED]}: pass --data")


def _f1(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


# ------------------------------------------------------------------------------------------ negex
def negex(path: Path) -> dict[str, Any]:
    from processors.nlp import assert_term

    counts = {
        (task, fold): [0, 0, 0] for task in ("negation", "historical") for fold in ("all", "fold0", "fold1")
    }
    groups: dict[str, collections.Counter[str]] = {
        k: collections.Counter() for k in ("neg_fp", "neg_fn", "hist_fp", "hist_fn")
    }
    examples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))[1:]
    for row in rows:
        line, cond, sent, neg, temp = row[0], row[1], row[2], row[3], row[4]
        try:
            res = assert_term(sent, cond.strip())
            triggers, p_neg, p_hist = res.triggers, res.negated, res.historical
            found = True
        except ValueError:
            triggers, p_neg, p_hist, found = [], False, False, False
        g_neg, g_hist = neg == "Negated", temp == "Historical"
        fold = f"fold{fold_of(line)}"
        for task, p, g in (("negation", p_neg, g_neg), ("historical", p_hist, g_hist)):
            for f in ("all", fold):
                c = counts[(task, f)]
                c[0] += p and g
                c[1] += p and not g
                c[2] += g and not p
            if p == g:
                continue
            kind = ("neg_" if task == "negation" else "hist_") + ("fp" if p else "fn")
            cats = ("NEGATED_EXISTENCE",) if task == "negation" else ("HISTORICAL", "CHRONIC")
            if not found:
                cause = "condition not found in sentence"
            elif p:
                cause = "trigger " + ", ".join(t for t in triggers if t.startswith(cats))
            else:
                others = [t for t in triggers if not t.startswith(cats)]
                cause = "cue: " + _cue(sent, cond) + (f"  (other: {', '.join(others)})" if others else "")
            groups[kind][cause] += 1
            examples[kind].append(
                {"line": line, "fold": fold, "condition": cond, "cause": cause, "sentence": sent}
            )
    scores = {f"{task}/{fold}": _f1(*c) for (task, fold), c in counts.items()}
    return {"scores": scores, "groups": {k: v.most_common() for k, v in groups.items()}, "examples": examples}


def _cue(sentence: str, cond: str) -> str:
    low = sentence.lower()
    i = low.find(cond.strip().lower())
    if i < 0:
        return "?"
    before = re.findall(r"\w+|[^\w\s]", low[:i])[-_CUE_WORDS:]
    after = re.findall(r"\w+|[^\w\s]", low[i + len(cond.strip()) :])[:_CUE_WORDS]
    return " ".join(before) + " [T] " + " ".join(after)


# ------------------------------------------------------------------------------------------ openi
def openi(path: Path) -> dict[str, Any]:
    from processors.nlp import analyze
    from processors.nlp.chest import LABELS14, ChestMapping, finding_state
    from processors.nlp.chest.evaluate import compose_report, read_rows, resolve_text_columns

    mapping = ChestMapping.load()
    counts = {f: [0, 0, 0] for f in ("all", "fold0", "fold1")}
    groups: collections.Counter[str] = collections.Counter()
    # trigger -> [labels it decided, of which gold 1]: how the gold codes each hedge/negation cue
    calib: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    examples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(read_rows(fh))
    cols = resolve_text_columns(list(rows[0]), None)
    for row in rows:
        rid = row["report_id"]
        fold = f"fold{fold_of(rid)}"
        text = compose_report(row, cols)
        res = analyze(text)
        for lab in LABELS14:
            gold = (row.get(lab) or "0").strip() in ("1", "1.0")
            state = res.chest_labels.get(lab, "absent")
            pred = state == "positive"
            decisive = [
                f
                for f in res.findings
                if lab in mapping.label_of.get(f.concept, ())
                and f.section in mapping.sections
                and finding_state(f) == state
            ]
            if decisive and decisive[0].triggers and len(decisive) == 1:
                key = f"{state}: " + ",".join(sorted(decisive[0].triggers))
                calib[key][0] += 1
                calib[key][1] += gold
            for f in ("all", fold):
                c = counts[f]
                c[0] += pred and gold
                c[1] += pred and not gold
                c[2] += gold and not pred
            if pred == gold:
                continue
            mentions = [f for f in res.findings if lab in mapping.label_of.get(f.concept, ())]
            if pred:
                pos = [
                    f for f in mentions if f.section in mapping.sections and finding_state(f) == "positive"
                ]
                f0 = pos[0]
                how = ",".join(t for t in f0.triggers) or "no trigger"
                cause = f"FP {lab}: {f0.concept} ({how})"
                snippet = _sentence_of(res, f0)
            elif not mentions:
                cause = f"FN {lab}: no mention"
                snippet = ""
            else:
                f0 = mentions[0]
                if f0.section not in mapping.sections:
                    cause = f"FN {lab}: only in section {f0.section}"
                else:
                    cause = f"FN {lab}: {finding_state(f0)} by " + (",".join(f0.triggers) or "-")
                snippet = _sentence_of(res, f0)
            groups[cause] += 1
            examples[cause].append({"id": rid, "fold": fold, "sentence": snippet})
    scores = {f"micro/{f}": _f1(*c) for f, c in counts.items()}
    cal = sorted(calib.items(), key=lambda kv: -kv[1][0])
    return {
        "scores": scores,
        "groups": {
            "labels": groups.most_common(),
            "triggers (state: cues -> gold 1 / labels decided)": [
                (f"{k}  -> {v[1]}/{v[0]}", v[0]) for k, v in cal
            ],
        },
        "examples": examples,
    }


def _sentence_of(res: Any, finding: Any) -> str:
    s = res.sentences[finding.sentence]
    return " ".join(res.text[s.start : s.end].split())


# ------------------------------------------------------------------------------------------ robust
def _numbered(text: str) -> str:
    def rep(m: re.Match[str]) -> str:
        sents = re.split(r"(?<=\.)\s+(?=[A-Z])", m.group(2).strip())
        return m.group(1) + " " + " ".join(f"{i + 1}. {s}" for i, s in enumerate(sents))

    return re.sub(r"(IMPRESSION:)(.*)$", rep, text, flags=re.S)


def _not_seen(text: str) -> str:
    # "No pleural effusion." -> "Pleural effusion is not seen." (only verbless sentences)
    def rep(m: re.Match[str]) -> str:
        if re.search(
            r"\b(?:is|are|seen|noted|identified|present|visualized|demonstrated|change)\b", m.group(2)
        ):
            return m.group(0)
        return m.group(1) + m.group(2)[:1].upper() + m.group(2)[1:] + " is not seen."

    return re.sub(r"(^|\.\s+|: )No ([a-z ]+?)\.", rep, text)


_HEDGES = {
    "may represent": "could reflect",
    "could represent": "might represent",
    "might represent": "may represent",
    "may reflect": "may represent",
    "could reflect": "may reflect",
    "concerning for": "suspicious for",
    "suspicious for": "worrisome for",
    "worrisome for": "concerning for",
    "consistent with": "compatible with",
    "compatible with": "in keeping with",
    "in keeping with": "consistent with",
}
_BRITISH = {
    "edema": "oedema",
    "hemorrh": "haemorrh",
    "tumor": "tumour",
    "esophag": "oesophag",
    "favor": "favour",
    "visualiz": "visualis",
    "recogniz": "recognis",
}
# a modal hedge said as an adverb with a link ("may be due to" -> "possibly due to"): the same hedge
_LINKS = {
    "may be due to": "possibly due to",
    "likely due to": "probably due to",
    "may represent": "possibly representing",
    "likely represents": "probably representing",
    "likely representing": "probably representing",
    "may be related to": "possibly related to",
    "may be secondary to": "perhaps secondary to",
    "could represent": "can represent",
}
# a finding named by another standard term for the same coded observation (the gold codes both alike)
_SYNONYMS = {
    "cardiomegaly": "cardiac enlargement",
    "atelectasis": "atelectatic change",
    "emphysema": "emphysematous change",
    "fibrosis": "fibrotic change",
    "infiltrates": "infiltrative opacities",
    "infiltrate": "infiltrative opacity",
    "pleural thickening": "thickening of the pleura",
    "nodules": "pulmonary nodules",
    "nodule": "pulmonary nodule",
}
_POSTPOSED = {
    "Possible": "possible",
    "Probable": "probable",
    "Likely": "likely",
    "Questionable": "questionable",
}


def _same_case(word: str, replacement: str) -> str:
    if word.isupper():
        return replacement.upper()
    return replacement[:1].upper() + replacement[1:] if word[:1].isupper() else replacement


def _verbless(body: str) -> bool:
    """A plain noun phrase (no verb, list or clause) that a rewrite may turn into a clause."""
    return not re.search(
        r"\b(?:is|are|seen|noted|identified|present|change|and|or|nor|with|versus|vs|of|in|which)\b|,", body
    )


def _copula(body: str) -> str:
    return "are" if body.endswith("s") and not body.endswith(("thorax", "sis", "us")) else "is"


def _reword(text: str, lead: str, build: Any) -> str:
    """Each sentence "<lead word> <plain noun phrase>." rewritten as ``build(lead word, Noun phrase)``."""

    def rep(m: re.Match[str]) -> str:
        body = m.group(3)
        if not _verbless(body):
            return m.group(0)
        return f"{m.group(1)}{build(m.group(2), body[:1].upper() + body[1:])}."

    # the full stop before is looked behind, not consumed, so that back-to-back sentences are all reworded
    return re.sub(r"(^|(?<=\.)\s+|: )(" + lead + r") ([a-z ]+?)\.", rep, text)


# name -> rewrite; each keeps the gold labels of a report
REWRITES: dict[str, Any] = {
    "upper": str.upper,
    "line_breaks": lambda t: re.sub(r"\.\s+", ".\n", t),
    "numbered": _numbered,
    "british": lambda t: re.sub("|".join(_BRITISH), lambda m: _BRITISH[m.group()], t),
    "there_is_no": lambda t: re.sub(r"(^|\.\s+|: )No (?!change)", r"\1There is no ", t),
    "negative_for": lambda t: re.sub(r"(^|\.\s+|: )No (?!change)", r"\1Negative for ", t),
    "not_seen": _not_seen,
    "comma_splice": lambda t: re.sub(
        r"(\bNo [^.]{3,80})\.\s+(?!No\b)([A-Z])([a-z])",
        lambda m: f"{m.group(1)}, {m.group(2).lower()}{m.group(3)}",
        t,
    ),
    # a report flattened to one line (line breaks lost in transport): its headers are inside the line
    "one_line": lambda t: re.sub(r"[ \t]*\r?\n\s*", "  ", t),
    # a report that lost its full stops: "No effusion. Mild cardiomegaly." -> "No effusion Mild cardiomegaly"
    "no_stops": lambda t: re.sub(r"\.(\s+)", r"\1", t),
    # "Stable mild cardiomegaly." -> "There has been no significant interval change in the mild cardiomegaly."
    "no_change": lambda t: re.sub(
        r"(^|\.\s+|: )(?:Stable|Unchanged) ([a-z][^.]*)\.",
        r"\1There has been no significant interval change in the \2.",
        t,
    ),
    "hedge_synonyms": lambda t: re.sub(
        r"\b(?:" + "|".join(_HEDGES) + r")\b", lambda m: _HEDGES[m.group()], t
    ),
    "evidence_of": lambda t: re.sub(
        r"\b([Nn])o (pneumothorax|pleural effusion|effusion|consolidation)\b", r"\1o evidence of a \2", t
    ),
    "hedge_links": lambda t: re.sub(r"\b(?:" + "|".join(_LINKS) + r")\b", lambda m: _LINKS[m.group()], t),
    # "Possible small effusion." -> "Small effusion is possible." (hedged either way, as "Probable X" is not)
    "postposed_hedge": lambda t: _reword(
        t, "|".join(_POSTPOSED), lambda w, b: f"{b} {_copula(b)} {_POSTPOSED[w]}"
    ),
    # "Mild cardiomegaly." -> "Mild cardiac enlargement."; "No atelectasis" -> "No atelectatic change"
    # (not after a word that makes another finding of it: "subcutaneous emphysema", "cystic fibrosis")
    "synonyms": lambda t: re.sub(
        r"\b(pulmonary |subcutaneous |cystic |bullous |calcified )?(" + "|".join(_SYNONYMS) + r")\b",
        lambda m: m.group() if m.group(1) else _same_case(m.group(2), _SYNONYMS[m.group(2).lower()]),
        t,
        flags=re.I,
    ),
    # "Stable mild cardiomegaly." -> "Mild cardiomegaly is stable."; "Unchanged X." -> "X, unchanged."
    "postposed_stable": lambda t: _reword(
        t,
        "Stable|Unchanged|Persistent",
        lambda w, b: f"{b} {_copula(b)} stable" if w == "Stable" else f"{b}, {w.lower()}",
    ),
    # "Small left pleural effusion." -> "Left pleural effusion, small."
    "postposed_size": lambda t: _reword(
        t, "Small|Mild|Moderate|Large|Minimal|Trace|Tiny", lambda w, b: f"{b}, {w.lower()}"
    ),
    # "No pleural effusion." -> "Pleural effusion is absent."
    "absent": lambda t: _reword(t, "No", lambda w, b: f"{b} {_copula(b)} absent"),
    # "No A or B." -> "Neither A nor B."
    "neither_nor": lambda t: re.sub(r"(^|\.\s+|: )No ([a-z ]+?) or ([a-z ]+?)\.", r"\1Neither \2 nor \3.", t),
    # sentences joined by semicolons: "No effusion; mild cardiomegaly."
    "semicolons": lambda t: re.sub(r"\.\s+(?=[A-Z])", "; ", t),
    # other negated predicates of the same family: "Pleural effusion is not visible / not depicted."
    "not_visible": lambda t: _not_seen(t).replace(" is not seen.", " is not visible."),
    "cannot_be_identified": lambda t: _not_seen(t).replace(" is not seen.", " cannot be identified."),
    # a postposed negation, then the next sentence after a semicolon or comma: "Effusion is not seen;
    # mild cardiomegaly.", "Pneumothorax is absent, mild cardiomegaly."
    "not_seen_joined": lambda t: re.sub(r" is not seen\.\s+(?=[A-Z])", " is not seen; ", _not_seen(t)),
    "absent_joined": lambda t: re.sub(
        r" (is|are) absent\.\s+(?!No\b)([A-Z])([a-z])",
        lambda m: f" {m.group(1)} absent, {m.group(2).lower()}{m.group(3)}",
        REWRITES["absent"](t),
    ),
}


def robust(path: Path, names: list[str], show: int) -> dict[str, Any]:
    from processors.nlp import analyze
    from processors.nlp.chest import LABELS14
    from processors.nlp.chest.evaluate import compose_report, read_rows, resolve_text_columns

    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(read_rows(fh))
    cols = resolve_text_columns(list(rows[0]), None)
    texts = [compose_report(row, cols) for row in rows]
    gold = [{lab for lab in LABELS14 if (row.get(lab) or "0").strip() in ("1", "1.0")} for row in rows]
    base = [analyze(t).chest_labels for t in texts]
    scores: dict[str, Any] = {}
    examples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for name in ["original", *names]:
        counts = {f: [0, 0, 0] for f in ("all", "fold0", "fold1")}
        for row, text, g, b in zip(rows, texts, gold, base, strict=True):
            res = analyze(REWRITES[name](text)) if name != "original" else None
            labels = res.chest_labels if res is not None else b
            fold = f"fold{fold_of(row['report_id'])}"
            for lab in LABELS14:
                pred, want = labels.get(lab) == "positive", lab in g
                for f in ("all", fold):
                    c = counts[f]
                    c[0] += pred and want
                    c[1] += pred and not want
                    c[2] += want and not pred
                was = b.get(lab) == "positive"
                if res is not None and pred != was and was == want and len(examples[name]) < show:
                    mentions = [x for x in res.findings if lab.lower()[:5] in x.concept]
                    examples[name].append(
                        {
                            "id": row["report_id"],
                            "label": lab,
                            "now": labels.get(lab),
                            "triggers": mentions[0].triggers if mentions else [],
                            "sentence": _sentence_of(res, mentions[0]) if mentions else "",
                        }
                    )
        for f, c in counts.items():
            scores[f"{name}/{f}"] = _f1(*c)
    return {"scores": scores, "groups": {}, "examples": examples}


# ------------------------------------------------------------------------------------------ output
def _baseline(tree: str, task: str, data: Path, extra: list[str]) -> dict[str, Any]:
    """Run this script's analysis with another checkout's engine (its processors on sys.path)."""
    out = subprocess.run(
        [sys.executable, __file__, task, "--data", str(data), "--json", "--tree", tree, *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _print(result: dict[str, Any], base: dict[str, Any] | None, show: int) -> None:
    print(
        f"{'score':<22}{'P':>8}{'R':>8}{'F1':>8}{'TP':>6}{'FP':>6}{'FN':>6}"
        + ("   baseline F1" if base else "")
    )
    for name, s in result["scores"].items():
        extra = f"   {base['scores'][name]['f1']:.4f}" if base else ""
        print(
            f"{name:<22}{s['precision']:>8.4f}{s['recall']:>8.4f}{s['f1']:>8.4f}"
            f"{s['tp']:>6}{s['fp']:>6}{s['fn']:>6}{extra}"
        )
    for kind, items in result["groups"].items():
        if not items:
            continue
        print(f"\n== {kind}: {sum(n for _, n in items)} in {len(items)} groups")
        for cause, n in items[:show]:
            print(f"{n:>4}  {cause}")
    if show:
        print("\n(examples: --json, or --show-examples CAUSE_SUBSTRING)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=["negex", "openi", "robust"])
    ap.add_argument("--data", default=None, help="data file (default: shared/eval)")
    ap.add_argument("--show", type=int, default=30, help="error groups to print per kind")
    ap.add_argument("--show-examples", default=None, help="print the examples of groups containing this text")
    ap.add_argument(
        "--baseline", default=None, help="another checkout to score in the same run (e.g. /work/main)"
    )
    ap.add_argument(
        "--rewrites", default=",".join(REWRITES), help="robust: rewrites to apply (comma-separated)"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tree", default=str(REPO), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, args.tree)
    data = _find("negex_dev.tsv" if args.task == "negex" else "openi_chest_xray_dev.csv", args.data)
    if args.task == "negex":
        result = negex(data)
    elif args.task == "openi":
        result = openi(data)
    else:
        result = robust(data, [n for n in args.rewrites.split(",") if n], args.show)
    if args.json:
        print(json.dumps(result))
        return
    extra = ["--rewrites", args.rewrites, "--show", "0"] if args.task == "robust" else []
    base = _baseline(args.baseline, args.task, data, extra) if args.baseline else None
    _print(result, base, args.show)
    if args.task == "robust":
        for name, exs in result["examples"].items():
            print(f"\n== {name}: labels the rewrite changed for the worse (first {args.show})")
            for e in exs:
                cues = ",".join(e["triggers"]) or "-"
                print(f"{e['id']:<9}{e['label']:<19}{e['now']:<10}{cues:<40}{e['sentence'][:160]}")
    if args.show_examples:
        for cause, exs in result["examples"].items():
            for e in exs:
                if args.show_examples.lower() in e.get("cause", cause).lower():
                    print(json.dumps(e))


if __name__ == "__main__":
    main()
