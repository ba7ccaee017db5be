"""FastDecoder and OnnxDecoder must compute what MusicTransformer.decode_step computes: same logits, same cache
contents. Every test runs on both (the `Decoder` fixture).

Sequences run well past the window with per-row global (Bar) tokens, a guided pair of rows (text / null memory),
and the norm and MLP variants, so the incremental mask of KVCache.plan_step and the folded cross-attention are
exercised against the reference path.

    .venv/bin/python -m pytest tests/model/test_fast_decode.py -q
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from acemusic.model import MusicTransformer
from acemusic.model.fast_decode import FastDecoder
from acemusic.model.onnx_decode import OnnxDecoder


@pytest.fixture(params=[FastDecoder, OnnxDecoder], ids=["torch", "onnx"])
def Decoder(request):
    return request.param


def decode_both(model, b, n_prompt, dec):
    """Logits of every decode step through the reference path and through `dec`, plus both final caches."""
    B, T = b["ids"].shape
    outs, caches = [], []
    for fast in (False, True):
        cache = model.new_cache(B, max_global=64)
        sl = slice(0, n_prompt)
        model.prefill(b["ids"][:, sl], b["bar_idx"][:, sl], b["pos"][:, sl], b["is_global"][:, sl],
                      b["text_emb"], b["cond_mask"], cache)
        steps = []
        for t in range(n_prompt, T):
            args = (b["ids"][:, t], b["bar_idx"][:, t], b["pos"][:, t])
            if fast:
                steps.append(dec.step(*(a.tolist() for a in args), b["is_global"][:, t].numpy(), cache))
            else:
                steps.append(model.decode_step(*args, b["is_global"][:, t], cache))
        outs.append(torch.stack(steps, 1))
        caches.append(cache)
    return outs, caches


@pytest.mark.parametrize("n_prompt", [1, 9, 40])  # shorter and longer than the window (16)
@pytest.mark.parametrize("variant", [{}, {"norm": "rmsnorm", "mlp": "gelu"}, {"global_tokens": False},
                                     {"cross_attn_every": 0}])
def test_fast_decode_matches_decode_step(tiny, batch, n_prompt, variant, Decoder):
    torch.manual_seed(0)
    model = MusicTransformer(replace(tiny, **variant)).eval()
    b = batch(2, 80, seed=3, bar_p=0.15)
    b["cond_mask"] = torch.tensor([True, False])  # a guided pair: text row and null-memory row
    (ref, fast), (c_ref, c_fast) = decode_both(model, b, n_prompt, Decoder(model))
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    n = c_ref.window + c_ref.n_global
    assert c_fast.n_global == c_ref.n_global
    torch.testing.assert_close(c_fast.k[:, :, :, :n], c_ref.k[:, :, :, :n], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c_fast.v[:, :, :, :n], c_ref.v[:, :, :, :n], atol=1e-5, rtol=1e-5)


def test_fast_decode_sees_far_global_tokens(tiny, batch, Decoder):
    """Control: past the window the fast path's logits depend on which earlier tokens were global."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    dec = Decoder(model)
    b = batch(2, 60, seed=6)
    flat = dict(b, is_global=torch.zeros_like(b["is_global"]))
    (_, a), _ = decode_both(model, b, 5, dec)
    (_, c), _ = decode_both(model, flat, 5, dec)
    assert torch.allclose(a[:, :10], c[:, :10], atol=1e-5)
    assert not torch.allclose(a[:, -10:], c[:, -10:], atol=1e-3)


def test_fast_decode_after_reference_steps(tiny, batch, Decoder):
    """Mixing paths (reference steps, then fast ones) rebuilds the incremental mask from the cache's state."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    dec = Decoder(model)
    b = batch(1, 50, seed=8)
    (ref, _), _ = decode_both(model, b, 4, dec)
    cache = model.new_cache(1, max_global=64)
    model.prefill(b["ids"][:, :4], b["bar_idx"][:, :4], b["pos"][:, :4], b["is_global"][:, :4], b["text_emb"],
                  b["cond_mask"], cache)
    mixed = []
    for t in range(4, 50):
        if t < 30:
            mixed.append(model.decode_step(b["ids"][:, t], b["bar_idx"][:, t], b["pos"][:, t],
                                           b["is_global"][:, t], cache))
        else:
            mixed.append(dec.step(b["ids"][:, t].tolist(), b["bar_idx"][:, t].tolist(), b["pos"][:, t].tolist(),
                                  b["is_global"][:, t].numpy(), cache))
    torch.testing.assert_close(torch.stack(mixed, 1), ref, atol=1e-4, rtol=1e-4)


def test_int8_fast_decode_is_close(tiny, batch, Decoder):
    """int8 MLP weights: next-token distributions stay within a small KL of the float path."""
    torch.manual_seed(0)
    model = MusicTransformer(replace(tiny, d_model=128, d_ff=512)).eval()
    b = batch(2, 40, seed=4)
    (ref, fast), _ = decode_both(model, b, 5, Decoder(model, quantize="int8"))
    kl = torch.nn.functional.kl_div(fast.log_softmax(-1), ref.log_softmax(-1), log_target=True,
                                    reduction="none").sum(-1)
    assert float(kl.mean()) < 1e-2
    assert not torch.equal(fast, ref)  # really quantized


def test_fast_decode_rejects_a_wrong_batch(tiny, Decoder):
    from acemusic.errors import InputError

    model = MusicTransformer(tiny).eval()
    cache = model.new_cache(2, max_global=8)
    ids = torch.ones(2, 3, dtype=torch.long)
    z = torch.zeros(2, 3, dtype=torch.long)
    model.prefill(ids, z, z, torch.ones(2, 3, dtype=torch.bool), None, None, cache)
    with pytest.raises(InputError, match="batch size"):
        Decoder(model).step([1], [0], [0], np.zeros(1, bool), cache)
    with pytest.raises(ValueError, match="quantize"):
        Decoder(model, quantize="int4")


def test_multi_token_forward_and_rewind_match_decode_step(tiny, batch, Decoder):
    """Feeding several tokens at once, some of them wrong drafts that are rewound, gives the logits of feeding the
    true tokens one by one: the speculative-decoding contract (spare ring slots keep what later queries need)."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    dec = Decoder(model)
    b = batch(2, 90, seed=9, bar_p=0.2)
    b["cond_mask"] = torch.tensor([True, False])
    (ref, _), _ = decode_both(model, b, 3, dec)  # logits after positions 2..89
    cache = model.new_cache(2, max_global=64, spare=4)
    model.prefill(b["ids"][:, :3], b["bar_idx"][:, :3], b["pos"][:, :3], b["is_global"][:, :3], b["text_emb"],
                  b["cond_mask"], cache)
    rng = np.random.default_rng(0)
    cols = {k: b[k].numpy() for k in ("ids", "bar_idx", "pos", "is_global")}
    t, got, rewound = 3, [], 0
    while t < 90:
        n_true = int(rng.integers(1, 4))  # true tokens fed now ...
        n_true = min(n_true, 90 - t)
        n_bad = int(rng.integers(0, 5 - n_true + 1))  # ... followed by wrong drafts, rewound afterwards
        sl = slice(t, t + n_true)
        args = [cols[k][:, sl] for k in ("ids", "bar_idx", "pos", "is_global")]
        if n_bad:
            junk = [rng.integers(1, 700, (2, n_bad)), rng.integers(0, 9, (2, n_bad)), rng.integers(0, 96, (2, n_bad)),
                    rng.random((2, n_bad)) < 0.5]
            args = [np.concatenate([a, j], axis=1) for a, j in zip(args, junk, strict=True)]
        out = dec.forward(*args, cache)
        cache.rewind(n_bad)
        rewound += n_bad
        got.append(out[:, :n_true])
        t += n_true
    assert rewound > 20 and cache.pos == 90
    torch.testing.assert_close(torch.cat(got, 1), ref, atol=1e-4, rtol=1e-4)


def test_rewind_and_spare_limits(tiny, Decoder):
    from acemusic.errors import InputError

    model = MusicTransformer(tiny).eval()
    cache = model.new_cache(1, max_global=8, spare=2)
    z = torch.zeros(1, 2, dtype=torch.long)
    model.prefill(torch.ones(1, 2, dtype=torch.long), z, z, torch.ones(1, 2, dtype=torch.bool), None, None, cache)
    dec = Decoder(model)
    four = np.ones((1, 4), np.int64)
    with pytest.raises(InputError, match="spare"):
        dec.forward(four, 0 * four, 0 * four, four > 0, cache)
    dec.forward(four[:, :3], 0 * four[:, :3], 0 * four[:, :3], four[:, :3] > 0, cache)
    assert cache.n_global == 5
    cache.rewind(2)
    assert (cache.pos, cache.n_global) == (3, 3)
    with pytest.raises(InputError, match="rewind"):
        cache.rewind(3)


def test_rope_table_grows_on_demand(tiny, batch, Decoder):
    """Past the precomputed RoPE rows the table is extended; the logits still match the reference."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    dec = Decoder(model)
    dec._rope(8)  # a table far shorter than the sequence
    b = batch(1, 40, seed=2)
    (ref, fast), _ = decode_both(model, b, 4, dec)
    assert dec.cos.shape[0] >= 40
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)


def test_global_slots_grow_on_demand(tiny, batch, Decoder):
    """A cache sized for many global tokens starts small and grows; logits still match the reference path."""
    torch.manual_seed(0)
    model = MusicTransformer(tiny).eval()
    b = batch(2, 150, seed=5, bar_p=0.6)  # ~90 Bars per row, at different steps: past the first 64 slots
    b["cond_mask"] = torch.tensor([True, False])
    outs = []
    for dec in (None, Decoder(model)):
        cache = model.new_cache(2, max_global=400)
        assert cache.capacity == 64
        model.prefill(b["ids"][:, :5], b["bar_idx"][:, :5], b["pos"][:, :5], b["is_global"][:, :5], b["text_emb"],
                      b["cond_mask"], cache)
        steps = []
        for t in range(5, 150):
            args = (b["ids"][:, t], b["bar_idx"][:, t], b["pos"][:, t])
            if dec is None:
                steps.append(model.decode_step(*args, b["is_global"][:, t], cache))
            else:
                steps.append(dec.step(*(a.tolist() for a in args), b["is_global"][:, t].numpy(), cache))
        assert 64 < cache.n_global <= cache.capacity <= 400
        outs.append(torch.stack(steps, 1))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
