"""Text conditioning: a sentence embedding -> a few memory vectors that decoder blocks cross-attend to.

Rows whose condition is dropped (cond_mask False, or no text at all) get a learned null memory instead; training
drops conditions at random (`cfg_dropout`) so the same model gives the unconditional prediction that
classifier-free guidance (https://arxiv.org/abs/2207.12598) extrapolates away from.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from acemusic.model.config import ModelConfig


class TextConditioner(nn.Module):
    """Linear(d_text -> n_memory * d_model) + RMSNorm per memory vector; learned null memory for dropped rows."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_memory, self.d_model = cfg.n_memory, cfg.d_model
        self.proj = nn.Linear(cfg.d_text, cfg.n_memory * cfg.d_model)
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.null = nn.Parameter(torch.randn(cfg.n_memory, cfg.d_model))

    def forward(self, text_emb: Tensor | None, cond_mask: Tensor | None, batch_size: int) -> Tensor:
        """Memory (B, M, d_model) from text_emb (B, d_text) or None; cond_mask (B,) bool, False = use the null."""
        null = self.norm(self.null).expand(batch_size, -1, -1)  # normed like real memory: same scale either way
        if text_emb is None:
            return null
        h = self.proj(text_emb).view(-1, self.n_memory, self.d_model)  # (B, M, d)
        mem = self.norm(h.to(self.norm.weight.dtype))  # bf16 under autocast: back to the weights' dtype (fused norm)
        if cond_mask is None:
            return mem
        return torch.where(cond_mask[:, None, None], mem, null.to(mem.dtype))


def cfg_dropout(cond_mask: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Drop each row's condition with probability p: returns cond_mask & (u >= p), u ~ U[0, 1) per row."""
    if p <= 0.0:
        return cond_mask
    device = generator.device if generator is not None else cond_mask.device
    u = torch.rand(cond_mask.shape, generator=generator, device=device).to(cond_mask.device)
    return cond_mask & (u >= p)
