"""Pure logit filters and the sampling step: temperature, top-k, top-p (nucleus), min-p, classifier-free guidance.

Every filter takes logits `(B, V)` and returns new logits with rejected entries set to -inf; none mutates its input
(the x-transformers `autoregressive_wrapper` pattern). `sample_next` draws one token per row from a seeded
`torch.Generator`, so the same seed gives the same music.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

NEG_INF = float("-inf")


@dataclass
class SamplingConfig:
    """Sampling knobs; 0 / 1.0 switch a filter off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    cfg: float = 1.0  # classifier-free guidance scale; 1.0 = conditional logits only (no uncond row)

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if not 0.0 <= self.min_p < 1.0:
            raise ValueError("min_p must be in [0, 1)")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SamplingConfig:
        return cls(**d)


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide by t; t == 0 means greedy, handled by `sample_next` (here: unchanged)."""
    return logits if t in (0.0, 1.0) else logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value are kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of tokens whose probability mass reaches p (always at least the best one)."""
    if p >= 1.0:
        return logits
    sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    # Drop a token when the mass *before* it already reaches p, so the token that crosses p is kept.
    drop_sorted = (cum - sorted_logits.softmax(-1)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least p times the best token's (Nguyen et al. 2024, arXiv:2407.01082)."""
    if p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    thresh = probs.amax(-1, keepdim=True) * p
    return logits.masked_fill(probs < thresh, NEG_INF)


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance in logit space: uncond + scale * (cond - uncond); scale 1 = cond.

    Expects the model's raw (finite) logits: apply grammar masks after combining (-inf - -inf would be nan).
    """
    if scale == 1.0:
        return cond
    return torch.lerp(uncond, cond, scale)


def filter_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Apply temperature, then top-k, top-p and min-p, in that order."""
    logits = temperature(logits, cfg.temperature)
    logits = top_k(logits, cfg.top_k)
    logits = top_p(logits, cfg.top_p)
    return min_p(logits, cfg.min_p)


def sample_next(logits: torch.Tensor, generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
    """One token per row of `(B, V)` logits -> `(B,)` long (a row with every entry -inf gives the last id).

    Inverse-CDF sampling (one uniform draw per row, a cumulative sum and a binary search): 5x cheaper than
    `torch.multinomial` on a 736-token row, which matters at one call per generated token.
    """
    if greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float(), dim=-1).nan_to_num_(nan=0.0)
    cdf = probs.cumsum(-1)  # (B, V)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True).squeeze(-1)  # first index with cdf > u: never a zero-mass token
    return idx.clamp_(max=logits.shape[-1] - 1)
