"""MusicTransformer: shapes, conditioning (CFG null memory), loss, gradient checkpointing, config and presets.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/model/test_transformer.py -q
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from acemusic.model import ModelConfig, MusicTransformer, cfg_dropout, loss, param_count, preset_param_counts

V = 736  # vocabulary size used by the fixtures (conftest.py)


def test_forward_shapes_and_dtypes(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny)
    b = batch(3, 37)
    logits = model(**b)
    assert logits.shape == (3, 37, V) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    b.pop("text_emb"), b.pop("cond_mask")
    assert model(**b).shape == (3, 37, V)  # no text at all: null memory
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(**b).dtype == torch.bfloat16


def test_bar_index_beyond_max_bars_is_clamped(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    b = batch(1, 10)
    far = dict(b, bar_idx=torch.full((1, 10), tiny.max_bars + 500))
    last = dict(b, bar_idx=torch.full((1, 10), tiny.max_bars - 1))
    assert torch.equal(model(**far), model(**last))


def test_cfg_null_memory(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    b = batch(2, 20)
    b["cond_mask"] = torch.tensor([True, False])
    out = model(**b)
    uncond = model(**dict(b, text_emb=None, cond_mask=None))
    assert torch.allclose(out[1], uncond[1], atol=1e-6)  # dropped row == no text
    assert not torch.allclose(out[0], uncond[0], atol=1e-4)  # the text changes the prediction
    other = model(**dict(b, text_emb=torch.randn(2, 384)))
    assert not torch.allclose(out[0], other[0], atol=1e-4) and torch.allclose(out[1], other[1], atol=1e-6)


def test_cfg_dropout():
    g = torch.Generator().manual_seed(0)
    m = torch.ones(10_000, dtype=torch.bool)
    m[:100] = False
    out = cfg_dropout(m, 0.2, g)
    assert not out[:100].any()  # a missing condition stays missing
    assert abs((~out[100:]).float().mean().item() - 0.2) < 0.02
    assert torch.equal(cfg_dropout(m, 0.0, g), m)


def test_loss_ignores_pad_and_masked_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=g)
    targets = torch.randint(1, 11, (2, 6), generator=g)
    targets[1, 4:] = 0  # PAD
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, :2] = False  # e.g. prefix tokens
    keep = mask & (targets != 0)
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(loss(logits, targets, mask), expected)
    assert torch.allclose(MusicTransformer.loss(logits, targets, mask), expected)
    assert loss(logits, torch.zeros_like(targets)).item() == 0.0  # nothing to count: 0, not NaN


def test_gradient_checkpointing_gives_the_same_gradients(tiny, batch):
    b = batch(2, 24)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = MusicTransformer(replace(tiny, grad_checkpointing=ckpt)).train()
        loss(model(**b)[:, :-1], b["ids"][:, 1:]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0].abs().sum() > 0


def test_training_step_lowers_loss(tiny, batch):
    torch.manual_seed(0)
    model = MusicTransformer(tiny).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    b = batch(2, 32)
    losses = []
    for _ in range(10):
        lo = loss(model(**b)[:, :-1], b["ids"][:, 1:])
        opt.zero_grad()
        lo.backward()
        opt.step()
        losses.append(lo.item())
    assert losses[-1] < losses[0] - 0.5


def test_config_round_trip_and_validation(tiny):
    d = json.loads(json.dumps(tiny.to_dict()))
    assert ModelConfig.from_dict(d) == tiny
    assert ModelConfig.from_json(tiny.to_json()) == tiny
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**d, "n_embd": 3})
    with pytest.raises(ValueError):
        ModelConfig.preset("tiny", V, n_kv_head=3)  # 4 heads not divisible into 3 groups
    with pytest.raises(ValueError, match="preset"):
        ModelConfig.preset("huge", V)
    assert ModelConfig.preset("small", V, window=128).window == 128
    # A config saved before n_cross_head existed means full-width cross-attention.
    old = {k: v for k, v in d.items() if k != "n_cross_head"}
    assert ModelConfig.from_dict(old).cross_heads == tiny.n_head


def test_preset_param_counts():
    counts = preset_param_counts(V)
    print({k: f"{v / 1e6:.2f}M" for k, v in counts.items()})
    assert counts["tiny"] < 1e6
    assert 3e6 <= counts["mini"] <= 5e6
    assert 10e6 <= counts["small"] <= 20e6
    assert 70e6 <= counts["base"] <= 100e6
    assert 250e6 <= counts["large"] <= 350e6
    tiny = ModelConfig.preset("tiny", V)
    assert param_count(tiny) == sum(p.numel() for p in MusicTransformer(tiny).parameters())
    # Tied embeddings: untying adds exactly one vocab x d_model matrix.
    assert param_count(replace(tiny, tie_embeddings=False)) == param_count(tiny) + V * tiny.d_model
