"""Cached generation must reproduce the full forward: prefill + decode_step logits == forward logits.

Sequences run well past the window, Bar (global) tokens are spread through them, and the two rows of the batch
disagree on which tokens are global, so the per-row global masks of the cache are exercised.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/model/test_kv_cache.py -q
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from acemusic.errors import InputError
from acemusic.model import MusicTransformer


def run_cached(model, b, n_prompt, max_global=64):
    """Prefill n_prompt tokens, then decode the rest one by one; logits (B, T - n_prompt + 1, V) for positions
    n_prompt-1 .. T-1."""
    B, T = b["ids"].shape
    cache = model.new_cache(B, max_global=max_global)
    sl = slice(0, n_prompt)
    out = [model.prefill(b["ids"][:, sl], b["bar_idx"][:, sl], b["pos"][:, sl], b["is_global"][:, sl],
                         b["text_emb"], b["cond_mask"], cache)]
    for t in range(n_prompt, T):
        out.append(model.decode_step(b["ids"][:, t], b["bar_idx"][:, t], b["pos"][:, t], b["is_global"][:, t],
                                     cache))
    assert cache.pos == T
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("n_prompt", [1, 9, 40])  # prompt shorter than, and longer than, the window (16)
@pytest.mark.parametrize("global_tokens", [True, False])
def test_cached_decode_equals_full_forward(tiny, batch, n_prompt, global_tokens):
    torch.manual_seed(0)
    cfg = replace(tiny, global_tokens=global_tokens, n_kv_head=1, n_cross_head=1 if global_tokens else 0)
    model = MusicTransformer(cfg).eval()
    b = batch(2, 90, seed=5, bar_p=0.15)
    assert not torch.equal(b["is_global"][0], b["is_global"][1])
    b["cond_mask"] = torch.tensor([True, False])
    with torch.no_grad():
        full = model(**b)
    cached = run_cached(model, b, n_prompt)
    torch.testing.assert_close(cached, full[:, n_prompt - 1 :], atol=1e-4, rtol=1e-4)


def test_far_global_tokens_are_used_by_the_cache(tiny, batch):
    """Control for the test above: dropping the global flags changes the cached logits past the window."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    b = batch(2, 60, seed=6)
    flat = dict(b, is_global=torch.zeros_like(b["is_global"]))
    a, c = run_cached(model, b, 5), run_cached(model, flat, 5)
    assert torch.allclose(a[:, :10], c[:, :10], atol=1e-5)  # inside the window: same keys either way
    assert not torch.allclose(a[:, -10:], c[:, -10:], atol=1e-3)


def test_cache_limits_are_input_errors(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    b = batch(1, 30, seed=7, bar_p=0.5)
    cache = model.new_cache(1, max_global=4)
    with pytest.raises(InputError, match="global"):
        model.prefill(b["ids"], b["bar_idx"], b["pos"], b["is_global"], None, None, cache)
    assert cache.pos == 0 and (cache.ring_pos < 0).all()  # a refused prefill leaves the cache untouched
    cache = model.new_cache(1, max_global=64)
    with pytest.raises(InputError, match="prefill first"):
        model.decode_step(b["ids"][:, 0], b["bar_idx"][:, 0], b["pos"][:, 0], b["is_global"][:, 0], cache)
    model.prefill(b["ids"][:, :5], b["bar_idx"][:, :5], b["pos"][:, :5], b["is_global"][:, :5], None, None, cache)
    with pytest.raises(InputError, match="empty cache"):
        model.prefill(b["ids"][:, 5:9], b["bar_idx"][:, 5:9], b["pos"][:, 5:9], b["is_global"][:, 5:9], None, None,
                      cache)
    with pytest.raises(InputError, match="batch size"):
        model.decode_step(b["ids"][0].repeat(2)[:2], b["bar_idx"][0, :2], b["pos"][0, :2], b["is_global"][0, :2],
                          cache)
    cache.reset()
    assert cache.pos == 0 and cache.n_global == 0


def test_bf16_model_decodes_with_a_bf16_cache(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval().to(torch.bfloat16)
    b = batch(2, 30, seed=8)
    b["text_emb"] = b["text_emb"].to(torch.bfloat16)
    cache = model.new_cache(2)
    assert cache.k.dtype == torch.bfloat16
    sl = slice(0, 20)
    first = model.prefill(b["ids"][:, sl], b["bar_idx"][:, sl], b["pos"][:, sl], b["is_global"][:, sl],
                          b["text_emb"], b["cond_mask"], cache)
    out = model.decode_step(b["ids"][:, 20], b["bar_idx"][:, 20], b["pos"][:, 20], b["is_global"][:, 20], cache)
    assert first.shape == out.shape == (2, tiny.vocab_size) and out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
