"""FastDecoder: MusicTransformer's one-token decode step without nn.Module calls, for generation on CPU.

    dec = FastDecoder(model, quantize="int8")          # reads the weights once: rebuild it after changing them
    logits = model.prefill(ids, bar, pos, glob, text_emb, cond_mask, cache)
    logits = dec.step(toks, bars, positions, is_global, cache)   # host-side ints/bools in, (B, V) logits out
    logits = dec.forward(ids, bars, positions, is_global, cache)  # (B, T) tokens at once (cache spare >= T-1)

Why: a decode step of the 'small' model at batch 1 is only ~1 ms of arithmetic, but through nn.Module calls and the
generic attention code it took ~4-5 ms (about 110 module calls and 600 small ops per token). The same math here,
with fewer and fused ops:
  - RoPE tables precomputed for every position; a rotation is one roll and one addcmul (the half-split layout's
    pair swap is a roll by D/2);
  - the softmax scale is folded into the query weights, and scores plus the window+global mask are one baddbmm
    (the additive mask comes from `KVCache.plan_tokens`, once per step for all layers);
  - cross-attention to the M fixed memory vectors is folded into two per-row tables at `attach`:
    softmax(q K^T) V W_o^T = softmax(x (K W_q)^T) (V W_o^T), so a step costs two (1 x d) @ (d x H*M) products and
    no query or output projection;
  - int8 (optional): the two MLP matrices use fbgemm dynamic int8, which at batch 1 is ~4x faster than fp32 for the
    3 MB up-projection; the attention matrices stay fp32, as fast or faster there (measured, benchmarks/
    model_speed.py). Embeddings and the tied output head stay float.
Float32 logits match MusicTransformer.decode_step to rounding (tests/model/test_fast_decode.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from acemusic.model.kv_cache import KVCache
from acemusic.model.rope import rope_cos_sin

_ROPE_POSITIONS = 4096  # RoPE table rows to start with (1 ms; 16384 took 12 ms of every load); extended on demand


def _pack_int8(w: Tensor):
    """fbgemm packed int8 weight (per-output-channel symmetric scales), as torch's dynamic quantized Linear has."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data = w.detach().float()
    lin.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch announces the move of quantization to torchao; 2.x still has it
        warnings.simplefilter("ignore")
        return DynamicLinear.from_float(lin)._packed_params._packed_params


def decode_weights(model: torch.nn.Module) -> dict:
    """float32 copies of what a decode step reads, shared by FastDecoder and OnnxDecoder: embeddings, final norm,
    output head, and per layer the norms and matrices (torch (out, in) layout) with the query rows pre-scaled by
    head_dim ** -0.5 (RoPE is linear, so the scale commutes with it); `cross` is None or (norm weight, W_q scaled
    (H*D, d), W_o (d, H*D))."""
    cfg = model.cfg
    scale = cfg.head_dim**-0.5
    f = lambda t: t.detach().float().clone()
    layers = []
    for block in model.blocks:
        qkv = f(block.attn.qkv.weight)
        qkv[: cfg.n_head * cfg.head_dim] *= scale
        cross = None
        if block.cross is not None:
            cross = (f(block.norm_cross.weight), f(block.cross.q.weight) * scale, f(block.cross.proj.weight))
        layers.append({"norm_attn": f(block.norm_attn.weight), "qkv": qkv, "proj": f(block.attn.proj.weight),
                       "norm_mlp": f(block.norm_mlp.weight), "fc": f(block.mlp.fc.weight),
                       "out": f(block.mlp.proj.weight), "cross": cross})
    head = model.lm_head.weight if model.lm_head is not None else model.tok_emb.weight
    return {"tok": f(model.tok_emb.weight), "bar": f(model.bar_emb.weight), "pos": f(model.pos_emb.weight),
            "norm_f": f(model.norm_f.weight), "head": f(head), "layers": layers}


def fold_cross(k: Tensor, v: Tensor, wq: Tensor, wo: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-attention to M fixed memory vectors as two per-row tables: softmax(q K^T) V W_o^T =
    softmax(x (K W_q)^T) (V W_o^T). k, v (B, H, M, D) from prefill; returns a (B, d, H*M), o (B, H*M, d)."""
    k, v = k.float(), v.float()
    B, H, M, D = k.shape
    a = torch.einsum("bhmk,hkd->bhmd", k, wq.view(H, D, -1)).reshape(B, H * M, -1)  # x . a_hm = score of (h, m)
    o = torch.einsum("bhmk,dhk->bhmd", v, wo.view(-1, H, D)).reshape(B, H * M, -1)  # output = sum_hm p_hm o_hm
    return a.transpose(1, 2).contiguous(), o.contiguous()


class _Linear:
    """y = x W^T in fp32 or dynamic int8, as a plain callable (no module hooks)."""

    def __init__(self, w: Tensor, int8: bool) -> None:
        self.int8 = int8
        self.w = w.detach().float().contiguous()
        self.packed = _pack_int8(self.w) if int8 else None

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return torch.ops.quantized.linear_dynamic(x, self.packed, True)
        return F.linear(x, self.w)


@dataclass
class _Layer:
    norm_attn: Tensor
    qkv: _Linear  # query rows pre-scaled by head_dim ** -0.5
    proj: _Linear
    norm_mlp: Tensor
    fc: _Linear
    out: _Linear
    cross: tuple[Tensor, Tensor, Tensor] | None  # (norm weight, W_q scaled (H*D, d), W_o (d, H*D))


class FastDecoder:
    """One decode step of a MusicTransformer from host-side inputs; see the module docstring."""

    def __init__(self, model: torch.nn.Module, quantize: str | None = None) -> None:
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
        cfg = model.cfg
        self.cfg = cfg
        self.int8 = quantize == "int8"
        self.H, self.G, self.D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.Hc = cfg.cross_heads
        self.device = model.tok_emb.weight.device
        self.rms = cfg.norm == "rmsnorm"
        self.swiglu = cfg.mlp == "swiglu"
        w = decode_weights(model)
        self.tok_w, self.bar_w, self.pos_w, self.norm_f, self.head = (w[k] for k in ("tok", "bar", "pos", "norm_f",
                                                                                     "head"))
        lin = partial(_Linear, int8=self.int8)
        self.layers = [_Layer(lw["norm_attn"], lin(lw["qkv"]), lin(lw["proj"]), lw["norm_mlp"], lin(lw["fc"]),
                              lin(lw["out"]), lw["cross"]) for lw in w["layers"]]
        self._rope(_ROPE_POSITIONS)

    def _rope(self, n: int) -> None:
        self.cos, self.sin = rope_cos_sin(torch.arange(n, device=self.device), self.D, self.cfg.rope_base)

    def _norm(self, x: Tensor, w: Tensor) -> Tensor:
        d = (x.shape[-1],)
        return F.rms_norm(x, d, w, 1e-6) if self.rms else F.layer_norm(x, d, w, None, 1e-6)

    def attach(self, cache: KVCache) -> None:
        """Per-row cross-attention tables from the memory K/V that prefill stored in `cache`, kept on the cache
        (`forward` calls this itself the first time it sees a cache)."""
        tables: dict[int, tuple[Tensor, Tensor]] = {}
        for i, layer in enumerate(self.layers):
            if layer.cross is not None:
                tables[i] = fold_cross(*cache.memory_kv[i], layer.cross[1], layer.cross[2])
        cache.derived[self] = tables

    def step(self, ids, bar_idx, pos, is_global, cache: KVCache) -> Tensor:
        """Feed one token per row (each argument a length-B sequence, is_global of bools); logits (B, V)."""
        ids, bar_idx, pos = (np.asarray(a, np.int64)[:, None] for a in (ids, bar_idx, pos))
        return self.forward(ids, bar_idx, pos, np.asarray(is_global, bool)[:, None], cache)[:, 0]

    @torch.inference_mode()
    def forward(self, ids: np.ndarray, bar_idx: np.ndarray, pos: np.ndarray, is_global: np.ndarray,
                cache: KVCache) -> Tensor:
        """Feed T tokens per row ((B, T) arrays) after a prefill; logits (B, T, V) for each of them.

        T > 1 needs a cache with `spare >= T - 1` (the tokens are written to the cache; `cache.rewind` drops the
        ones a caller rejects)."""
        if self not in cache.derived:
            self.attach(cache)
        cross = cache.derived[self]
        cfg = self.cfg
        H, G, D = self.H, self.G, self.D
        Hg = H // G
        B, T = np.shape(ids)
        p = cache.pos
        if p + T > self.cos.shape[0]:
            self._rope(2 * (p + T))
        dev = self.device
        ids_t = torch.as_tensor(np.asarray(ids, np.int64), device=dev).reshape(-1)
        bars = torch.as_tensor(np.asarray(bar_idx, np.int64), device=dev).reshape(-1).clamp_(0, cfg.max_bars - 1)
        poss = torch.as_tensor(np.asarray(pos, np.int64), device=dev).reshape(-1).clamp_(0, cfg.max_position - 1)
        x = self.tok_w[ids_t] + self.bar_w[bars] + self.pos_w[poss]  # (B*T, d)
        glob = np.asarray(is_global, bool) if cfg.global_tokens else np.zeros((B, T), bool)
        ring_dst, g_dst, g_src, bias = cache.plan_tokens(glob)  # bias (B, T, S): shared by all layers
        S = bias.shape[-1]
        # (B*G, T, 1, S) for T queries of H/G heads under each K/V head; one query: (B*G, 1, S) for baddbmm
        bias = bias[:, None, :, None, :].expand(B, G, T, 1, S).reshape(B * G, T, 1, S)
        if T == 1:
            bias = bias.view(B * G, 1, S)
        cos, sin = self.cos[p : p + T, None], self.sin[p : p + T, None]  # (T, 1, D)
        for i, L in enumerate(self.layers):
            qkv = L.qkv(self._norm(x, L.norm_attn)).view(B, T, H + 2 * G, D)
            qk = qkv[:, :, : H + G]
            qk = torch.addcmul(qk * cos, qk.roll(D // 2, dims=-1), sin)  # RoPE, half-split layout
            k_new, v_new = qk[:, :, H:].transpose(1, 2), qkv[:, :, H + G :].transpose(1, 2)  # (B, G, T, D)
            kc, vc = cache.k[i], cache.v[i]
            kc.index_copy_(2, ring_dst, k_new)
            vc.index_copy_(2, ring_dst, v_new)
            if len(g_src):
                kc.index_copy_(2, g_dst, k_new.index_select(2, g_src))
                vc.index_copy_(2, g_dst, v_new.index_select(2, g_src))
            keys = kc[:, :, :S].reshape(B * G, S, D)
            vals = vc[:, :, :S].reshape(B * G, S, D)
            if T == 1:
                q = qk[:, 0, :H].reshape(B * G, Hg, D)
                att = torch.baddbmm(bias, q, keys.transpose(1, 2)).softmax(dim=-1)  # (B*G, H/G, S)
                y = torch.bmm(att, vals).view(B, H * D)
            else:
                q = qk[:, :, :H].reshape(B, T, G, Hg, D).transpose(1, 2).reshape(B * G, T * Hg, D)
                att = (torch.bmm(q, keys.transpose(1, 2)).view(B * G, T, Hg, S) + bias).softmax(dim=-1)
                y = torch.bmm(att.view(B * G, T * Hg, S), vals).view(B, G, T, Hg, D)
                y = y.transpose(1, 2).reshape(B * T, H * D)
            x = x + L.proj(y)
            if L.cross is not None:
                a, o = cross[i]
                s = torch.bmm(self._norm(x, L.cross[0]).view(B, T, -1), a).view(B, T, self.Hc, -1).softmax(dim=-1)
                x = x + torch.bmm(s.view(B, T, -1), o).view(B * T, -1)
            h = L.fc(self._norm(x, L.norm_mlp))
            if self.swiglu:
                n = h.shape[-1] // 2
                h = F.silu(h[:, :n]) * h[:, n:]
            else:
                h = F.gelu(h, approximate="tanh")
            x = x + L.out(h)
        cache.advance(T)
        return F.linear(self._norm(x, self.norm_f), self.head).view(B, T, -1)
