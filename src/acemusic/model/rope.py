"""Rotary position embedding (RoPE, https://arxiv.org/abs/2104.09864) as pure functions.

Half-split layout (GPT-NeoX / Llama): dimension k and k + D/2 of each head form a rotated pair. cos/sin are computed
on the fly for any absolute positions, so training (positions 0..T-1) and cached decoding (one position at a time)
rotate bit-identically.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_cos_sin(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Full-width float32 tables (T, head_dim) for integer `positions` (T,): cos, and sin with its first half negated.

    The sign is folded into the table so that apply_rope is two multiplies and one add (measured ~2x faster than the
    textbook four multiplies on sliced halves, forward + backward on CPU).
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, D/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (..., T, D) by the tables of rope_cos_sin (T, D): [x1, x2] -> [x1 c - x2 s, x2 c + x1 s].

    The tables are cast to x's dtype: under bf16 autocast a float32 table would silently promote q and k to float32
    and push attention off the bf16 kernels.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((x2, x1), dim=-1) * sin.to(x.dtype)
