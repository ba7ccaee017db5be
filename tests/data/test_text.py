"""TextEmbedder: same vectors as the reference MiniLM pipeline, unit norm, cached on disk."""

from __future__ import annotations

import numpy as np
import pytest

from acemusic.text import TextEmbedder

TEXTS = ["melancholic piano, slow", "A joyful Irish jig in D major for fiddle, fast, in 6/8.", "x"]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return TextEmbedder(cache=tmp_path_factory.mktemp("textcache"))


@pytest.mark.slow  # importing transformers alone takes 10-60 s on a shared 2-core machine
def test_matches_transformers_mean_pooling(embedder):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from acemusic.text import model_dir

    path = model_dir()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    ours = embedder.encode(TEXTS, use_cache=False)
    assert ours.shape == (3, 384) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_similar_prompts_are_closer(embedder):
    a, b, c = embedder.encode(["sad slow piano", "melancholic piano ballad", "fast drum and bass beat"],
                              use_cache=False)
    assert a @ b > a @ c


def test_disk_cache_serves_repeated_prompts(embedder, tmp_path):
    e = TextEmbedder(cache=tmp_path)
    e._model = embedder.model  # share the loaded weights
    first = e.encode(TEXTS)
    assert len(list(tmp_path.rglob("*.npy"))) == 3

    class Boom:
        def __call__(self, texts):
            raise AssertionError("cached texts must not reach the model")

    e._model = Boom()
    assert np.array_equal(e.encode(TEXTS), first)
    assert np.array_equal(e.encode(TEXTS[1]), first[1:2])


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ACEMUSIC_CACHE", str(tmp_path))
    assert TextEmbedder().cache == tmp_path / "text"
    assert TextEmbedder.dim == 384
