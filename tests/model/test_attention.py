"""Attention semantics: the window+global mask, GQA against a plain reference, causality.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/model/test_attention.py -q
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from acemusic.model import MusicTransformer
from acemusic.model.attention import AttnContext, SelfAttention, build_mask
from acemusic.model.rope import rope_cos_sin


def brute_mask(T: int, window: int, is_global: torch.Tensor) -> torch.Tensor:
    B = is_global.shape[0]
    m = torch.zeros(B, T, T, dtype=torch.bool)
    for b in range(B):
        for i in range(T):
            for j in range(i + 1):
                m[b, i, j] = (i - j < window) or bool(is_global[b, j])
    return m


def test_build_mask_matches_definition(batch):
    b = batch(2, 30, seed=1)
    mask = build_mask(30, 7, b["is_global"])
    assert mask.shape == (2, 1, 30, 30)
    assert torch.equal(mask[:, 0], brute_mask(30, 7, b["is_global"]))
    # Without global tokens: a plain sliding window, the same for every row.
    plain = build_mask(30, 7, b["is_global"], global_tokens=False)
    assert torch.equal(plain[0, 0].expand(2, 30, 30), brute_mask(30, 7, torch.zeros(2, 30, dtype=torch.bool)))
    # Window covering the sequence: no mask, SDPA's causal fast path.
    assert build_mask(30, 30, b["is_global"]) is None


def test_pad_mask_only_when_padding_precedes_real_tokens():
    right = torch.tensor([[False] * 6 + [True] * 2])
    assert build_mask(8, 16, None, right) is None  # right padding: causality already hides it
    left = torch.tensor([[True] * 2 + [False] * 6])
    m = build_mask(8, 16, None, left)[0, 0]
    assert not m[5, :2].any() and m[5, 2:6].all()  # real tokens never see the PADs
    assert m.any(dim=-1).all()  # no empty row (would be NaN)


def _one_layer(cfg, **kw):
    torch.manual_seed(0)
    return MusicTransformer(replace(cfg, n_layer=1, **kw)).eval()


@pytest.mark.parametrize("make_global", [False, True])
def test_token_beyond_window_matters_only_if_global(tiny, batch, make_global):
    """One layer, window 4: the last token sees a far token j (i - j >= window) exactly when j is global."""
    model = _one_layer(tiny, window=4)
    b = batch(1, 20, seed=2, prefix=0, bar_p=0.0)
    j, i = 6, 19
    b["is_global"][0, j] = make_global
    base = model(**b)[0, i]
    changed = dict(b, ids=b["ids"].clone())
    changed["ids"][0, j] = (b["ids"][0, j] + 1) % 700 + 1
    out = model(**changed)[0, i]
    assert torch.allclose(base, out, atol=1e-6) != make_global
    # A token inside the window always matters.
    near = dict(b, ids=b["ids"].clone())
    near["ids"][0, i - 2] = (b["ids"][0, i - 2] + 1) % 700 + 1
    assert not torch.allclose(base, model(**near)[0, i], atol=1e-6)


def test_causal_future_never_changes_past(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()  # window 16 < T: masked path
    b = batch(2, 40, seed=3)
    k = 23
    full = model(**b)
    changed = {key: v.clone() for key, v in b.items()}
    changed["ids"][:, k:] = torch.randint(1, 700, (2, 40 - k))
    changed["is_global"][:, k:] = ~changed["is_global"][:, k:]
    changed["bar_idx"][:, k:] += 3
    out = model(**changed)
    assert torch.allclose(full[:, :k], out[:, :k], atol=1e-6)
    assert not torch.allclose(full[:, k:], out[:, k:], atol=1e-3)
    # The is_causal fast path (window covers the sequence) is causal too.
    wide = MusicTransformer(replace(tiny, window=64)).eval()
    assert torch.allclose(wide(**b)[:, :k], wide(**changed)[:, :k], atol=1e-6)


def reference_attention(attn: SelfAttention, x, mask):
    """Plain math: textbook RoPE, per-head softmax(q k^T / sqrt(D) + mask) v with K/V heads repeated for GQA."""
    B, T, _ = x.shape
    H, G, D = attn.n_head, attn.n_kv_head, attn.head_dim
    q, k, v = attn.qkv(x).view(B, T, H + 2 * G, D).split([H, G, G], dim=2)
    theta = torch.arange(T)[:, None] * 10000.0 ** (-torch.arange(0, D, 2) / D)  # (T, D/2)

    def rot(t):  # (B, T, h, D): rotate pairs (k, k + D/2) by theta
        c, s = theta.cos()[None, :, None], theta.sin()[None, :, None]
        t1, t2 = t[..., : D // 2], t[..., D // 2 :]
        return torch.cat([t1 * c - t2 * s, t2 * c + t1 * s], dim=-1)

    q, k = rot(q), rot(k)
    k = k.repeat_interleave(H // G, dim=2)
    v = v.repeat_interleave(H // G, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / D**0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    y = torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v).reshape(B, T, H * D)
    return attn.proj(y)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_gqa_self_attention_matches_reference(tiny, batch, n_kv_head):
    cfg = replace(tiny, n_kv_head=n_kv_head, window=6)
    torch.manual_seed(0)
    attn = SelfAttention(cfg, 0)
    b = batch(2, 25, seed=4)
    x = torch.randn(2, 25, cfg.d_model)
    cos, sin = rope_cos_sin(torch.arange(25), cfg.head_dim)
    mask = build_mask(25, cfg.window, b["is_global"])
    out = attn(x, AttnContext(cos, sin, mask, is_causal=False))
    ref = reference_attention(attn, x, mask)
    assert torch.allclose(out, ref, atol=1e-5)
    causal = torch.ones(25, 25, dtype=torch.bool).tril()[None, None]
    out = attn(x, AttnContext(cos, sin, None, is_causal=True))
    assert torch.allclose(out, reference_attention(attn, x, causal), atol=1e-5)


def test_gqa_fallback_for_old_torch_matches(monkeypatch):
    """torch < 2.5 has no SDPA enable_gqa: the expanded-K/V path must give the same output."""
    import torch

    from acemusic.model import ModelConfig, MusicTransformer
    from acemusic.model import attention as attn

    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", vocab_size=50)
    assert cfg.n_kv_head < cfg.n_head
    model = MusicTransformer(cfg).eval()
    ids = torch.randint(0, 50, (2, 40))
    bar = torch.arange(40).repeat(2, 1) // 8
    pos = torch.zeros_like(ids)
    glob = (torch.arange(40) % 8 == 0).repeat(2, 1)
    with torch.no_grad():
        native = model(ids, bar, pos, glob)
        monkeypatch.setattr(attn, "_SDPA_GQA", False)
        fallback = model(ids, bar, pos, glob)
    torch.testing.assert_close(native, fallback, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
@pytest.mark.parametrize("window", [6, 64])  # window < T (mask) and window >= T (causal)
def test_training_attention_matches_sdpa_with_gradients(tiny, batch, n_kv_head, window, monkeypatch):
    """The chunked training path (grad enabled, CPU) gives SDPA's outputs and gradients, with several chunks, a
    ragged last chunk, a window+global mask and left padding."""
    from acemusic.model import attention as attn_mod

    real = attn_mod._chunked_attention
    monkeypatch.setattr(attn_mod, "_chunked_attention", lambda *a: real(*a, chunk=8))
    cfg = replace(tiny, n_kv_head=n_kv_head, window=window)
    torch.manual_seed(0)
    attn = SelfAttention(cfg, 0)
    b = batch(2, 29, seed=5)
    pad = torch.zeros(2, 29, dtype=torch.bool)
    pad[1, :3] = True
    cos, sin = rope_cos_sin(torch.arange(29), cfg.head_dim)
    mask = build_mask(29, window, b["is_global"], pad)
    x = torch.randn(2, 29, cfg.d_model, requires_grad=True)
    grad_out = torch.randn(2, 29, cfg.d_model)
    results = []
    for training in (True, False):  # False: the SDPA path (it also runs with grad enabled)
        attn.train(training)
        x.grad = None
        attn.zero_grad()
        out = attn(x, AttnContext(cos, sin, mask, is_causal=mask is None))
        out.backward(grad_out)
        results.append((out.detach(), x.grad.clone(), attn.qkv.weight.grad.clone()))
    keep = ~pad  # outputs at PAD positions are unspecified
    (o1, gx1, gw1), (o2, gx2, gw2) = results
    assert torch.allclose(o1[keep], o2[keep], atol=1e-5)
    assert torch.allclose(gx1, gx2, atol=1e-5) and torch.allclose(gw1, gw2, atol=1e-4)
