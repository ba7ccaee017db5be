"""Attention: the window+global mask, causal self-attention (RoPE, grouped-query) and cross-attention to memory.

The attention pattern is the bar-level hierarchy of DESIGN.md: token i attends key j when
    j <= i  and  (i - j < window  or  is_global[j])
so each token sees its local detail plus every earlier Bar token and the conditioning prefix (long range at bar
granularity). One boolean mask is built per forward and shared by all layers; when the window covers the sequence the
mask is skipped and SDPA takes its is_causal fast path.

Shapes: B batch, T query length, S key length, H query heads, G key/value heads, D head dim, M memory vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acemusic.model.config import ModelConfig
from acemusic.model.rope import apply_rope

# SDPA shares K/V heads itself from torch 2.5 (enable_gqa); older versions get expanded K/V.
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)

if TYPE_CHECKING:
    from acemusic.model.kv_cache import KVCache


def build_mask(
    T: int,
    window: int,
    is_global: Tensor | None,
    pad_mask: Tensor | None = None,
    global_tokens: bool = True,
) -> Tensor | None:
    """Boolean attention mask (B or 1, 1, T, T), True = may attend; None means "plain causal" (use is_causal).

    `pad_mask` (B, T) marks PAD positions; a PAD key is never attended. Right padding needs no mask at all (causality
    already hides trailing PADs from real tokens), so the pad term is only added when a PAD precedes a real token.
    Outputs at PAD positions are unspecified. Every query keeps its own key, so no row is empty (no NaNs).
    """
    need_window = window < T
    need_pad = pad_mask is not None and bool((pad_mask[:, :-1] & ~pad_mask[:, 1:]).any())
    if not need_window and not need_pad:
        return None
    device = is_global.device if is_global is not None else pad_mask.device  # type: ignore[union-attr]
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    allowed = (j <= i)[None]  # (1, T, T)
    if need_window:
        local = (i - j) < window
        if global_tokens and is_global is not None:
            allowed = allowed & (local[None] | is_global[:, None, :])  # (B, T, T)
        else:
            allowed = allowed & local[None]
    if need_pad:
        allowed = (allowed & ~pad_mask[:, None, :]) | (i == j)[None]  # type: ignore[index]
    return allowed[:, None]  # (B|1, 1, T, T)


@dataclass
class AttnContext:
    """What every block needs for one forward, computed once and shared by all layers."""

    cos: Tensor  # (T, D) RoPE tables for the query positions (rope_cos_sin)
    sin: Tensor
    mask: Tensor | None  # (B|1, 1, T, S) bool; None = is_causal (training/prefill) or no mask needed
    is_causal: bool
    memory: Tensor | None = None  # (B, M, d_model) condition memory (training and prefill)
    cache: KVCache | None = None  # prefill: write K/V into it; decode: also attend over it
    decode: bool = False
    _bias: Tensor | None = None  # additive form of mask (or of causality), built once by the first layer to ask

    def bias(self, T: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The attention pattern as an additive (B|1, 1, T, T) tensor: 0 where allowed, -inf elsewhere."""
        if self._bias is None or self._bias.dtype != dtype:
            allowed = self.mask if self.mask is not None else torch.ones(T, T, device=device, dtype=torch.bool).tril()
            bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
            self._bias = bias.view(-1, 1, T, T)
        return self._bias


class SelfAttention(nn.Module):
    """Causal self-attention with RoPE and grouped-query heads; one fused QKV projection."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=False)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor, ctx: AttnContext) -> Tensor:
        B, T, _ = x.shape
        H, G, D = self.n_head, self.n_kv_head, self.head_dim
        qkv = self.qkv(x).view(B, T, H + 2 * G, D).transpose(1, 2)  # (B, H+2G, T, D)
        # split, not slicing: its backward is one cat, where each slice's backward zero-fills a full-size gradient
        qk, v = qkv.split((H + G, G), dim=1)
        q, k = apply_rope(qk, ctx.cos, ctx.sin).split((H, G), dim=1)  # rotate q and k in one pass
        if ctx.cache is not None:
            ctx.cache.write(self.layer, k, v)
            if ctx.decode:
                k, v = ctx.cache.keys_values(self.layer)  # (B, G, S, D): ring window + global slots
        if ctx.decode and T == 1:
            return self.proj(_decode_attention(q, k, v, ctx.mask).reshape(B, 1, H * D))
        if self.training and torch.is_grad_enabled() and x.device.type == "cpu":
            y = _chunked_attention(q, k, v, ctx.bias(T, q.dtype, x.device), self.dropout)
            return self.proj(y.transpose(1, 2).reshape(B, T, H * D))
        if G != H and not _SDPA_GQA:  # torch < 2.5: share K/V across query heads by copying them
            k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
        gqa = {"enable_gqa": G != H} if _SDPA_GQA else {}
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=ctx.mask, is_causal=ctx.is_causal,
            dropout_p=self.dropout if self.training else 0.0, **gqa,
        )  # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, H * D))


def _chunked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, dropout: float, chunk: int = 128) -> Tensor:
    """Training attention on CPU: q (B, H, T, D), k/v (B, G, T, D), additive bias (B|1, 1, T, T) -> (B, H, T, D).

    Plain matmuls over blocks of `chunk` queries, each against the keys up to its last query only (5/8 of the
    score matrix at T=512). SDPA's CPU flash kernel has a slow backward (fp32, ~6x its forward, and barely cheaper
    for shorter sequences): forward + backward of this is 1.2-1.5x faster at T=256-1024 and ~3x at T=128, bf16
    autocast (benchmarks/train_attention.py); blocks of 64 or 256 measured slower than 128. The scores are rounded
    to q's dtype before the softmax, as in eager attention under autocast; SDPA keeps them in fp32. Query heads are
    grouped under their K/V head as SDPA's enable_gqa.
    """
    B, H, T, D = q.shape
    G = k.shape[1]
    R = H // G
    kt = k.transpose(-1, -2) * D**-0.5  # (B, G, D, T): scale the small operand, not the scores
    outs = []
    for c0 in range(0, T, chunk):
        c1 = min(T, c0 + chunk)
        n = c1 - c0
        qg = q[:, :, c0:c1].reshape(B, G, R * n, D)
        scores = (qg @ kt[..., :c1]).view(B, G, R, n, c1) + bias[:, :, None, c0:c1, :c1]
        probs = scores.softmax(dim=-1)
        if dropout > 0:
            probs = F.dropout(probs, dropout, True)
        probs = probs.view(B, G, R * n, c1)
        outs.append((probs @ v[:, :, :c1]).view(B, H, n, D))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _decode_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """One query token per row over the cache: q (B, H, 1, D), k/v (B, G, S, D), mask (B, 1, 1, S) -> (B, H, D).

    Query heads are grouped under their K/V head (head h uses K/V head h // (H/G), as SDPA's enable_gqa) and the
    scores are two small batched matmuls. SDPA's CPU path with a mask and GQA cost ~8x more per call at batch 8
    (best-of-4 reranking with guidance), and about the same at batch 1.
    """
    B, H, _, D = q.shape
    G = k.shape[1]
    qg = q.reshape(B, G, H // G, D)
    scores = (qg @ k.transpose(-1, -2)) * D**-0.5  # (B, G, H/G, S)
    if mask is not None:
        scores = scores.masked_fill(~mask.view(B, 1, 1, -1), float("-inf"))
    return (scores.softmax(dim=-1) @ v).reshape(B, H, D)  # (B, G, H/G, D) -> (B, H, D)


class CrossAttention(nn.Module):
    """Attention from the token stream to the M condition-memory vectors (no mask, no RoPE: memory is unordered)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.head_dim = cfg.cross_heads, cfg.head_dim
        inner = cfg.cross_heads * cfg.head_dim
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * inner, bias=False)
        self.proj = nn.Linear(inner, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the memory, (B, H, M, D) each."""
        B, M, _ = memory.shape
        k, v = self.kv(memory).view(B, M, 2, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: Tensor, ctx: AttnContext) -> Tensor:
        B, T, _ = x.shape
        if ctx.decode:
            k, v = ctx.cache.memory_kv[self.layer]  # type: ignore[union-attr]
        else:
            k, v = self.memory_kv(ctx.memory)  # type: ignore[arg-type]
            if ctx.cache is not None:
                ctx.cache.memory_kv[self.layer] = (k, v)
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        # Plain matmuls, not SDPA: with only M keys the CPU flash kernel is ~5x slower (fwd+bwd, M=4, measured).
        scores = (q @ k.to(q.dtype).transpose(-1, -2)) * self.head_dim**-0.5  # (B, H, T, M)
        probs = F.dropout(scores.float().softmax(dim=-1), self.dropout, self.training).to(q.dtype)
        y = probs @ v.to(q.dtype)  # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))
