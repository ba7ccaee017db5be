"""MusicTransformer: the hierarchical decoder (token + bar-index + position-in-bar embeddings, pre-norm blocks with
window+global self-attention, cross-attention to the text memory every k-th block, tied LM head), its cached
generation path (prefill / decode_step) and the training loss as a pure function.

    model = MusicTransformer(ModelConfig.preset("tiny", vocab_size=736))
    logits = model(ids, bar_idx, pos, is_global, text_emb, cond_mask)      # (B, T, V)
    l = loss(logits[:, :-1], ids[:, 1:], loss_mask[:, 1:])

Tests: tests/model/. Speed: benchmarks/model_speed.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from acemusic.errors import InputError
from acemusic.model.attention import AttnContext, CrossAttention, SelfAttention, build_mask
from acemusic.model.conditioning import TextConditioner
from acemusic.model.config import ModelConfig
from acemusic.model.kv_cache import KVCache
from acemusic.model.rope import rope_cos_sin

PAD_ID = 0  # docs/TOKENS.md: PAD is id 0


def loss(logits: Tensor, targets: Tensor, loss_mask: Tensor | None = None, ignore_index: int = PAD_ID) -> Tensor:
    """Mean next-token cross entropy over targets that are not `ignore_index` (PAD) and where loss_mask is True.

    logits (B, T, V) already aligned with targets (B, T) (shift before calling). Computed in float32; a batch with
    no counted target gives 0, not NaN.
    """
    if loss_mask is not None:
        targets = targets.masked_fill(~loss_mask, ignore_index)
    total = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=ignore_index,
                            reduction="sum")
    return total / (targets != ignore_index).sum().clamp(min=1)


def make_norm(cfg: ModelConfig) -> nn.Module:
    """Pre-norm layer: LayerNorm without bias (fused fwd+bwd on CPU) or RMSNorm, per cfg.norm."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=1e-6)
    return nn.LayerNorm(cfg.d_model, eps=1e-6, bias=False)


class MLP(nn.Module):
    """SwiGLU (https://arxiv.org/abs/2002.05202; gate and up fused in one matmul) or GELU feed-forward."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        self.fc = nn.Linear(cfg.d_model, (2 if self.swiglu else 1) * cfg.d_ff, bias=False)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.proj(h)


class Block(nn.Module):
    """Pre-norm block: x + SelfAttn(norm x) [+ CrossAttn(norm x)] + MLP(norm x)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.norm_attn = make_norm(cfg)
        self.attn = SelfAttention(cfg, layer)
        self.cross = CrossAttention(cfg, layer) if cfg.has_cross(layer) else None
        self.norm_cross = make_norm(cfg) if self.cross is not None else None
        self.norm_mlp = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, ctx: AttnContext) -> Tensor:
        x = x + self.drop(self.attn(self.norm_attn(x), ctx))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.norm_cross(x), ctx))  # type: ignore[misc]
        return x + self.drop(self.mlp(self.norm_mlp(x)))


class MusicTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.bar_emb = nn.Embedding(cfg.max_bars, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_position, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.conditioner = TextConditioner(cfg) if cfg.cross_attn_every > 0 else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = make_norm(cfg)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 n_layer) (one per residual add)."""
        resid_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("null"):
                nn.init.normal_(p)  # normed before use, so its scale is irrelevant
            elif p.dim() >= 2:
                std = resid_std if name.endswith("proj.weight") and "conditioner" not in name else 0.02
                nn.init.normal_(p, std=std)
            elif "norm" in name:
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)  # biases

    # ---- shared pieces ----------------------------------------------------------------------------------
    def embed(self, ids: Tensor, bar_idx: Tensor, pos: Tensor) -> Tensor:
        """Token + bar-index + position-in-bar embeddings, (B, T, d_model). Out-of-range indices are clamped."""
        cfg = self.cfg
        x = self.tok_emb(ids) + self.bar_emb(bar_idx.clamp(0, cfg.max_bars - 1))
        return self.drop(x + self.pos_emb(pos.clamp(0, cfg.max_position - 1)))

    def memory(self, text_emb: Tensor | None, cond_mask: Tensor | None, batch_size: int) -> Tensor | None:
        """Condition memory (B, n_memory, d_model), or None when the model has no cross-attention."""
        if self.conditioner is None:
            return None
        return self.conditioner(text_emb, cond_mask, batch_size)

    def _rope(self, start: int, T: int, device: torch.device) -> tuple[Tensor, Tensor]:
        return rope_cos_sin(torch.arange(start, start + T, device=device), self.cfg.head_dim, self.cfg.rope_base)

    def _trunk(self, x: Tensor, ctx: AttnContext) -> Tensor:
        use_ckpt = self.cfg.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, ctx, use_reentrant=False) if use_ckpt else block(x, ctx)
        return self.norm_f(x)

    def _logits(self, h: Tensor) -> Tensor:
        return self.lm_head(h) if self.lm_head is not None else F.linear(h, self.tok_emb.weight)

    # ---- training / scoring -----------------------------------------------------------------------------
    def forward(
        self,
        ids: Tensor,
        bar_idx: Tensor,
        pos: Tensor,
        is_global: Tensor,
        text_emb: Tensor | None = None,
        cond_mask: Tensor | None = None,
        pad_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, T, V) for ids (B, T) with structure bar_idx/pos (B, T) long and is_global (B, T) bool.

        text_emb (B, d_text) or None; cond_mask (B,) bool, False = drop that row's text (null memory);
        pad_mask (B, T) bool, True at PAD positions (only left/inner padding needs it; see build_mask).
        """
        B, T = ids.shape
        cfg = self.cfg
        mask = build_mask(T, cfg.window, is_global, pad_mask, cfg.global_tokens)
        cos, sin = self._rope(0, T, ids.device)
        ctx = AttnContext(cos, sin, mask, is_causal=mask is None, memory=self.memory(text_emb, cond_mask, B))
        return self._logits(self._trunk(self.embed(ids, bar_idx, pos), ctx))

    loss = staticmethod(loss)  # model.loss(...) is the module-level pure function

    # ---- cached generation ------------------------------------------------------------------------------
    def new_cache(
        self, batch_size: int, max_global: int = 2048, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None, spare: int = 0,
    ) -> KVCache:
        """An empty KV cache for `batch_size` rows holding up to `max_global` global tokens (prefix + Bars);
        `spare` extra ring slots let a decoder feed up to spare + 1 tokens at once (speculative decoding)."""
        p = self.tok_emb.weight
        cfg = self.cfg
        return KVCache(cfg.n_layer, batch_size, cfg.n_kv_head, cfg.head_dim, cfg.window, max_global,
                       device=device or p.device, dtype=dtype or p.dtype, spare=spare)

    @torch.no_grad()
    def prefill(
        self,
        ids: Tensor,
        bar_idx: Tensor,
        pos: Tensor,
        is_global: Tensor,
        text_emb: Tensor | None,
        cond_mask: Tensor | None,
        cache: KVCache,
    ) -> Tensor:
        """Run the prompt (B, T) through the model into an empty `cache`; returns the last position's logits (B, V)."""
        B, T = ids.shape
        cfg = self.cfg
        cache.plan(is_global if cfg.global_tokens else torch.zeros_like(is_global))
        mask = build_mask(T, cfg.window, is_global, None, cfg.global_tokens)
        cos, sin = self._rope(0, T, ids.device)
        ctx = AttnContext(cos, sin, mask, is_causal=mask is None, memory=self.memory(text_emb, cond_mask, B),
                          cache=cache)
        h = self._trunk(self.embed(ids, bar_idx, pos), ctx)
        cache.advance(T)
        return self._logits(h[:, -1])

    @torch.no_grad()
    def decode_step(self, ids: Tensor, bar_idx: Tensor, pos: Tensor, is_global: Tensor, cache: KVCache) -> Tensor:
        """Feed one token per row (each argument (B,)) after prefill; returns next-token logits (B, V)."""
        cfg = self.cfg
        if cache.pos == 0:
            raise InputError("cache", "decode_step needs a prefilled cache (call prefill first)")
        g = is_global[:, None] if cfg.global_tokens else torch.zeros_like(is_global[:, None])
        mask = cache.plan(g)
        cos, sin = self._rope(cache.pos, 1, ids.device)
        ctx = AttnContext(cos, sin, mask, is_causal=False, cache=cache, decode=True)
        h = self._trunk(self.embed(ids[:, None], bar_idx[:, None], pos[:, None]), ctx)
        cache.advance(1)
        return self._logits(h[:, 0])
