"""AdamW with decay only on weight matrices, and the learning-rate schedule as a pure function.

No decay on norms, biases and embedding tables (decaying embeddings pulls rare tokens toward zero; norm gains and
biases are not weights that overfit). Test: `pytest tests/train/test_optim.py`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from acemusic.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based `step`: linear warmup to `cfg.lr` over `warmup_steps`, then cosine decay to
    `cfg.min_lr` at `max_steps` (held there if training runs past it)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices of Linear-like layers decay; embeddings, norms and biases (every parameter
    owned by an nn.Embedding, with fewer than 2 dims, or a learned null memory, which is an embedding table used
    through a norm) do not. Tied weights appear once."""
    import torch

    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        embedding_like = id(p) in no_decay_ids or name.endswith("null")
        (no_decay if p.ndim < 2 or embedding_like else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups`; the lr is set every step from `lr_at`."""
    import torch

    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=lr_at(0, cfg), betas=cfg.betas,
                             eps=1e-8, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
