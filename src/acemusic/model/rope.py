"""Rotary position embedding (RoPE, https://arxiv.org/abs/2104.09864) as pure functions.

Half-split layout (GPT-NeoX / Llama): the first and second halves of each head dimension form the rotated pairs.
cos/sin are computed on the fly for any absolute positions, so training (positions 0..T-1) and cached decoding
(one position at a time) produce bit-identical rotations.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_cos_sin(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (T, head_dim // 2) in float32 for integer `positions` of shape (T,)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x of shape (B, H, T, D) by angles cos/sin of shape (T, D/2); returns x's dtype.

    cos/sin are cast to x's dtype first: under bf16 autocast a float32 table would silently promote q and k to
    float32 and push attention off the fast bf16 kernels.
    """
    d = x.shape[-1] // 2
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
