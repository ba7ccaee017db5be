"""What is particular to OnnxDecoder (its logits against the reference: tests/model/test_fast_decode.py).

    .venv/bin/python -m pytest tests/model/test_onnx_decode.py -q
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from acemusic.model import MusicTransformer, onnx_decode
from acemusic.model.fast_decode import FastDecoder
from acemusic.model.onnx_decode import OnnxDecoder, graph_bytes


def _prefilled(model, B, T0=12, spare=4):
    g = torch.Generator().manual_seed(0)
    cache = model.new_cache(B, max_global=32, spare=spare)
    ids = torch.randint(1, model.cfg.vocab_size, (B, T0), generator=g)
    z = torch.zeros(B, T0, dtype=torch.long)
    glob = torch.zeros(B, T0, dtype=torch.bool)
    glob[:, :4] = True
    model.prefill(ids, z, z, glob, torch.randn(B, 384, generator=g), torch.ones(B, dtype=torch.bool), cache)
    return cache


def test_outputs_do_not_depend_on_threads(tiny):
    """The reason `Engine` may give onnx decoding more threads without changing a seed's output: bit-identical
    logits and cache at 1 and 2 threads, for one token and for several, int8 and float."""
    torch.manual_seed(0)
    model = MusicTransformer(replace(tiny, d_model=128, d_ff=512, window=64)).eval()
    for quantize in (None, "int8"):
        dec = OnnxDecoder(model, quantize)
        runs = []
        for threads in (1, 2):
            dec.threads = threads
            cache = _prefilled(model, B=8)
            rng = np.random.default_rng(1)
            outs = []
            for T in (1, 4, 1, 3):
                ids = rng.integers(1, model.cfg.vocab_size, (8, T))
                z = np.zeros((8, T), np.int64)
                outs.append(dec.forward(ids, z, z, rng.random((8, T)) < 0.3, cache).numpy())
            runs.append((outs, cache.k.clone(), cache.v.clone()))
        (a, ka, va), (b, kb, vb) = runs
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert torch.equal(ka, kb) and torch.equal(va, vb)


def test_graph_is_cached_on_disk(tiny, tmp_path, monkeypatch):
    """Built once per weights: the second decoder reads the file (no `onnx` import), other weights get another."""
    monkeypatch.setattr(onnx_decode, "_CACHE_MIN_PARAMS", 0)
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    data = graph_bytes(model, int8=True, cache=tmp_path)
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and files[0].read_bytes() == data
    monkeypatch.setattr(onnx_decode, "_build", lambda *a: pytest.fail("rebuilt a cached graph"))
    assert graph_bytes(model, int8=True, cache=tmp_path) == data
    monkeypatch.undo()
    monkeypatch.setattr(onnx_decode, "_CACHE_MIN_PARAMS", 0)
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight.add_(0.01)
    assert graph_bytes(model, int8=True, cache=tmp_path) != data
    assert len(list(tmp_path.glob("*.onnx"))) == 2
    graph_bytes(model, int8=False, cache=tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 3


def test_damaged_cache_file_is_rebuilt(tiny, tmp_path, monkeypatch):
    """A cache file onnxruntime cannot read (truncated, edited) is replaced by a fresh build, not an error."""
    monkeypatch.setattr(onnx_decode, "_CACHE_MIN_PARAMS", 0)
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    good = graph_bytes(model, int8=False, cache=tmp_path)
    (path,) = tmp_path.glob("*.onnx")
    path.write_bytes(good[: len(good) // 3])
    cache = _prefilled(model, B=1)
    dec = OnnxDecoder(model, cache=tmp_path)
    assert path.read_bytes() == good
    ref = FastDecoder(model)
    c2 = _prefilled(model, B=1)
    ids = np.ones((1, 1), np.int64)
    z = np.zeros((1, 1), np.int64)
    torch.testing.assert_close(dec.forward(ids, z, z, z > 0, cache), ref.forward(ids, z, z, z > 0, c2),
                               atol=1e-4, rtol=1e-4)


def test_unwritable_cache_still_builds(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_decode, "_CACHE_MIN_PARAMS", 0)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    model = MusicTransformer(tiny).eval()
    assert len(graph_bytes(model, int8=False, cache=blocker / "sub")) > 0


def test_rejects_a_cache_it_cannot_read_in_place(tiny):
    model = MusicTransformer(tiny).eval()
    cache = model.new_cache(1, max_global=8, dtype=torch.float64)
    z = torch.zeros(1, 2, dtype=torch.long)
    model.double().prefill(torch.ones(1, 2, dtype=torch.long), z, z, torch.ones(1, 2, dtype=torch.bool), None, None,
                           cache)
    with pytest.raises(ValueError, match="float32"):
        OnnxDecoder(model.float()).step([1], [0], [0], np.zeros(1, bool), cache)
