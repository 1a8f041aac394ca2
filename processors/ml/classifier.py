"""A site's own fine-tuned classifier (CheXbert-style labeler, critical-finding detector, ...).

A JSON config names a local Hugging Face model directory and maps the model's labels to our finding
vocabulary; the outputs are findings with ``source = "model:<name>"`` that travel next to the rule
engine's findings (``source = "rules"``) so analysts can compare the two.

Config (paths relative to the config file)::

    {
      "name": "pe-detector",
      "model_dir": "pe-detector-model",
      "task": "sequence",            # or "token" (BIO / IO tags, spans from the tokenizer's offsets),
                                     # or "linear" (``radstream model train`` output, numpy only)
      "unit": "sentence",            # sequence only: "sentence" (default) or "report"
      "multi_label": null,           # null = from the model config (problem_type)
      "threshold": 0.5,
      "max_length": 256,
      "labels": {
        "PE":      {"concept": "pulmonary embolism", "category": "finding"},
        "NO_PE":   {"concept": "pulmonary embolism", "category": "finding", "negated": true},
        "OTHER":   null
      }
    }

Every label of the model must appear in ``labels`` (``null`` = emit nothing), so a model swapped
under a config fails loudly instead of emitting wrong concepts. For token models the map's keys are
entity types without the ``B-``/``I-`` prefix (``"O"`` is always ignored).

``"task": "linear"``: ``model_dir`` holds a model trained by ``radstream model train``
(:mod:`processors.ml.linear`); it labels whole reports, with the per-label thresholds tuned at training
(the config's ``threshold``, ``unit``, ``max_length`` and ``batch_size`` do not apply), and needs neither
torch nor transformers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from processors.ml import DEFAULT_TORCH_THREADS, offline_env, quiet_transformers
from processors.ml.units import SectionFn, SentenceFn, SentenceSpan, report_sentences

log = logging.getLogger("radstream.ml")

TASKS = ("sequence", "token", "linear")
# a whole-report finding's sentence number: report_findings.sentence is unsigned (UInt32), so not -1 (a -1
# made the ClickHouse sink dead-letter the whole findings message)
REPORT_SENTENCE = 0
UNITS = ("sentence", "report")


class ClassifierConfigError(ValueError):
    pass


@dataclass(frozen=True)
class LabelTarget:
    concept: str
    category: str = "finding"
    negated: bool = False
    uncertain: bool = False
    hypothetical: bool = False


@dataclass(frozen=True)
class ClassifierConfig:
    name: str
    model_dir: Path
    task: str = "sequence"
    unit: str = "sentence"
    multi_label: bool | None = None
    threshold: float = 0.5
    max_length: int = 256
    batch_size: int = 16
    labels: dict[str, LabelTarget | None] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"model:{self.name}"


def load_config(path: str | Path) -> ClassifierConfig:
    path = Path(path)
    raw = json.loads(path.read_text())
    try:
        name = str(raw["name"])
        model_dir = Path(raw["model_dir"])
        labels_raw = raw["labels"]
    except KeyError as e:
        raise ClassifierConfigError(f"{path}: missing key {e}") from None
    if not model_dir.is_absolute():
        model_dir = (path.parent / model_dir).resolve()
    task = raw.get("task", "sequence")
    unit = raw.get("unit", "sentence")
    if task not in TASKS:
        raise ClassifierConfigError(f"{path}: task must be one of {TASKS}, not {task!r}")
    if unit not in UNITS:
        raise ClassifierConfigError(f"{path}: unit must be one of {UNITS}, not {unit!r}")
    labels: dict[str, LabelTarget | None] = {}
    for label, target in labels_raw.items():
        if target is None:
            labels[label] = None
        elif isinstance(target, dict) and "concept" in target:
            labels[label] = LabelTarget(**target)
        else:
            raise ClassifierConfigError(f"{path}: label {label!r} needs null or an object with 'concept'")
    return ClassifierConfig(name=name, model_dir=model_dir, task=task, unit=unit,
                            multi_label=raw.get("multi_label"), threshold=float(raw.get("threshold", 0.5)),
                            max_length=int(raw.get("max_length", 256)),
                            batch_size=int(raw.get("batch_size", 16)), labels=labels)


def load_configs(paths: Sequence[str]) -> list[ClassifierConfig]:
    """Classifier config files (``settings.ml.classifiers``)."""
    return [load_config(p) for p in paths if p.strip()]


@dataclass
class ModelFinding:
    """A finding from a model: the fields of the ``Finding`` Avro record plus the model's score."""

    concept: str
    category: str
    text: str
    start: int
    end: int
    sentence: int
    section: str
    score: float
    source: str
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    hypothetical: bool = False

    def to_record(self) -> dict[str, Any]:
        """The ``report_findings`` Finding record (score is not part of the contract yet)."""
        rec = asdict(self)
        rec.pop("score")
        rec.update(experiencer="patient", laterality=None, anatomy=[], severity=None, change=None,
                   size_mm=None)
        return rec


def _announce(msg: str, *args: object) -> None:
    """One INFO line per model load. A process where nobody configured logging (the worker's spawned
    NLP processes, where the models run) gets a stderr handler for ``radstream.ml``, so the line
    reaches the worker's log; elsewhere the process's own logging decides."""
    if not logging.getLogger().hasHandlers() and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    log.info(msg, *args)


def _entity_type(label: str) -> str:
    return label[2:] if label[:2] in ("B-", "I-", "E-", "S-") else label


class SiteClassifier:
    """Loads a config's model once; ``classify(text)`` gives the model's findings for one report."""

    def __init__(self, config: ClassifierConfig, threads: int | None = None):
        offline_env()
        import torch
        from transformers import (
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        self.config = config
        quiet_transformers()
        torch.set_num_threads(threads or DEFAULT_TORCH_THREADS)
        if not (config.model_dir / "config.json").is_file():
            raise ClassifierConfigError(f"{config.name}: no Hugging Face model in {config.model_dir}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(config.model_dir), local_files_only=True)
        token = config.task == "token"
        auto = AutoModelForTokenClassification if token else AutoModelForSequenceClassification
        self.model = auto.from_pretrained(str(config.model_dir), local_files_only=True)
        self.model.eval()
        self.id2label: dict[int, str] = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        keys = {(_entity_type(v) if config.task == "token" else v) for v in self.id2label.values()}
        if config.task == "token":
            keys.discard("O")
        missing = sorted(keys - set(config.labels))
        if missing:
            raise ClassifierConfigError(f"{config.name}: model labels missing from the label map: {missing}")
        multi = config.multi_label
        if multi is None:
            multi = getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        self.multi_label = bool(multi)
        if config.task == "token" and not getattr(self.tokenizer, "is_fast", False):
            raise ClassifierConfigError(f"{config.name}: token classification needs a fast tokenizer")
        self.torch_threads = int(torch.get_num_threads())  # read back: what the model really runs with
        _announce("site classifier %s (%s, %d labels) loaded from %s in pid %d, torch threads %d",
                  config.name, config.task, len(self.id2label), config.model_dir, os.getpid(),
                  self.torch_threads)

    @classmethod
    def from_config_file(cls, path: str | Path, threads: int | None = None) -> SiteClassifier:
        return cls(load_config(path), threads)

    def classify(self, text: str, sections: SectionFn | None = None,
                 sentences: SentenceFn | None = None) -> list[ModelFinding]:
        if self.config.unit == "report" and self.config.task == "sequence":
            start = len(text) - len(text.lstrip())
            end = len(text.rstrip())
            units = [SentenceSpan(REPORT_SENTENCE, "other", start, end)] if end > start else []
        else:
            units = report_sentences(text, sections, sentences)
        if not units:
            return []
        if self.config.task == "token":
            return self._tokens(text, units)
        return self._sequence(text, units)

    def _batches(self, units: Sequence[SentenceSpan]) -> list[list[SentenceSpan]]:
        n = self.config.batch_size
        return [list(units[i:i + n]) for i in range(0, len(units), n)]

    def _sequence(self, text: str, units: Sequence[SentenceSpan]) -> list[ModelFinding]:
        import torch

        cfg = self.config
        out: list[ModelFinding] = []
        with torch.inference_mode():
            for batch in self._batches(units):
                enc = self.tokenizer([text[u.start:u.end] for u in batch], padding=True, truncation=True,
                                     max_length=cfg.max_length, return_tensors="pt")
                logits = self.model(**enc).logits
                probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
                for u, row in zip(batch, probs.tolist(), strict=True):
                    if self.multi_label:
                        picked = [(i, p) for i, p in enumerate(row) if p >= cfg.threshold]
                    else:
                        best = max(range(len(row)), key=row.__getitem__)
                        picked = [(best, row[best])] if row[best] >= cfg.threshold else []
                    for i, p in picked:
                        target = cfg.labels.get(self.id2label[i])
                        if target is not None:
                            out.append(self._finding(text, u, u.start, u.end, target, p))
        return out

    def _tokens(self, text: str, units: Sequence[SentenceSpan]) -> list[ModelFinding]:
        import torch

        cfg = self.config
        out: list[ModelFinding] = []
        with torch.inference_mode():
            for batch in self._batches(units):
                enc = self.tokenizer([text[u.start:u.end] for u in batch], padding=True, truncation=True,
                                     max_length=cfg.max_length, return_tensors="pt",
                                     return_offsets_mapping=True)
                offsets = enc.pop("offset_mapping").tolist()
                probs = torch.softmax(self.model(**enc).logits, dim=-1)
                best_p, best_i = probs.max(dim=-1)
                for row, u in enumerate(batch):
                    spans = self._spans(offsets[row], best_i[row].tolist(), best_p[row].tolist())
                    for etype, s, e, p in spans:
                        target = cfg.labels.get(etype)
                        if target is not None and p >= cfg.threshold:
                            out.append(self._finding(text, u, u.start + s, u.start + e, target, p))
        return out

    def _spans(self, offsets: list[list[int]], labels: list[int],
               probs: list[float]) -> list[tuple[str, int, int, float]]:
        """Merge consecutive tokens of one entity type (``B-`` starts a new span)."""
        spans: list[tuple[str, int, int, list[float]]] = []
        open_: tuple[str, int, int, list[float]] | None = None
        for (s, e), li, p in zip(offsets, labels, probs, strict=True):
            if s == e:  # special or padding token
                continue
            label = self.id2label[li]
            etype = _entity_type(label)
            if etype == "O":
                open_ = None
                continue
            if open_ is not None and open_[0] == etype and not label.startswith("B-"):
                open_ = (etype, open_[1], e, open_[3] + [p])
                spans[-1] = open_
            else:
                open_ = (etype, s, e, [p])
                spans.append(open_)
        return [(t, s, e, sum(ps) / len(ps)) for t, s, e, ps in spans]

    def _finding(self, text: str, unit: SentenceSpan, start: int, end: int, target: LabelTarget,
                 score: float) -> ModelFinding:
        return ModelFinding(concept=target.concept, category=target.category, text=text[start:end],
                            start=start, end=end, sentence=unit.index, section=unit.section,
                            score=round(float(score), 4), source=self.config.source, negated=target.negated,
                            uncertain=target.uncertain, hypothetical=target.hypothetical)


class LinearSiteClassifier:
    """A ``radstream model train`` model: one finding per report label, spanning the report's text."""

    def __init__(self, config: ClassifierConfig):
        from processors.ml.features import FeatureExtractor
        from processors.ml.linear import LinearModel

        self.config = config
        self.model = LinearModel.load(config.model_dir)
        missing = sorted(set(self.model.labels) - set(config.labels))
        if missing:
            raise ClassifierConfigError(f"{config.name}: model labels missing from the label map: {missing}")
        self.features = FeatureExtractor()
        _announce("site classifier %s (linear, %d labels) loaded from %s in pid %d", config.name,
                  len(self.model.labels), config.model_dir, os.getpid())

    def classify(self, text: str, sections: SectionFn | None = None,
                 sentences: SentenceFn | None = None) -> list[ModelFinding]:
        start = len(text) - len(text.lstrip())
        end = len(text.rstrip())
        if end <= start:
            return []
        unit = SentenceSpan(REPORT_SENTENCE, "other", start, end)
        out = []
        for label, p in self.model.predict(self.features.features(text)):
            target = self.config.labels.get(label)
            if target is not None:
                out.append(ModelFinding(concept=target.concept, category=target.category,
                                        text=text[start:end], start=start, end=end, sentence=unit.index,
                                        section=unit.section, score=round(p, 4), source=self.config.source,
                                        negated=target.negated, uncertain=target.uncertain,
                                        hypothetical=target.hypothetical))
        return out


Classifier = SiteClassifier | LinearSiteClassifier


def site_classifier(config: ClassifierConfig, threads: int | None = None) -> Classifier:
    """The classifier of one config: a linear model (numpy only) or a Hugging Face model (torch)."""
    return LinearSiteClassifier(config) if config.task == "linear" else SiteClassifier(config, threads)


def load_site_classifiers(paths: Sequence[str], threads: int | None = None) -> list[Classifier]:
    """Every classifier of these config files (``settings.ml.classifiers``; none when empty)."""
    return [site_classifier(c, threads) for c in load_configs(paths)]


def model_findings(text: str, classifiers: Sequence[Classifier], sections: SectionFn | None = None,
                   sentences: SentenceFn | None = None) -> list[dict[str, Any]]:
    """The ``Finding`` records of every site classifier for one report, to append after the rule findings."""
    return [f.to_record() for clf in classifiers for f in clf.classify(text, sections, sentences)]
