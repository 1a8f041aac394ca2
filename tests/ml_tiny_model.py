"""A tiny randomly initialised BERT classifier saved as a local Hugging Face directory (no downloads)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

# a report, the sentences a classifier forced to one label finds in it, and a label map entry
REPORT = (
    "FINDINGS:\n"
    "Filling defect in the right pulmonary artery. No pleural effusion.\n"
    "IMPRESSION:\n"
    "Acute pulmonary embolism.\n"
)
SENTENCES = ["Filling defect in the right pulmonary artery.", "No pleural effusion.",
             "Acute pulmonary embolism."]
PE = {"concept": "pulmonary embolism", "category": "finding"}

WORDS = ["filling", "defect", "in", "the", "right", "pulmonary", "artery", "no", "pleural", "effusion",
         "acute", "embolism", "findings", "impression", "normal", ".", ":", ","]


def tokenizer(tmp: Path) -> Any:
    transformers: Any = importlib.import_module("transformers")  # untyped use: the stubs vary by version
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return transformers.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def tiny_model(tmp: Path, task: str, labels: list[str], force: str | None = None,
               multi_label: bool = False) -> Path:
    """BertConfig(tiny) -> random weights -> save_pretrained; ``force`` makes one label always win."""
    import torch
    transformers: Any = importlib.import_module("transformers")
    tok = tokenizer(tmp)
    cfg = transformers.BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else None)
    torch.manual_seed(0)
    token = task == "token"
    cls = transformers.BertForTokenClassification if token else transformers.BertForSequenceClassification
    model = cls(cfg)
    if force is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(-8.0)
            model.classifier.bias[labels.index(force)] = 8.0
    out = tmp / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def classifier_config(tmp: Path, model_dir: Path, name: str = "tiny", **extra: object) -> Path:
    """The JSON config of ``settings.ml.classifiers`` (model_dir relative to the config file)."""
    cfg = {"name": name, "model_dir": model_dir.name, **extra}
    path = tmp / "classifier.json"
    path.write_text(json.dumps(cfg))
    return path
