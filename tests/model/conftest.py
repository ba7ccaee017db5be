"""Fixtures for the model tests: a tiny config and random token batches with a realistic bar structure."""

from __future__ import annotations

import pytest
import torch

from acemusic.model import ModelConfig

V = 736  # the acemusic vocabulary size; the model tests do not depend on the tokenizer


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def tiny() -> ModelConfig:
    return ModelConfig.preset("tiny", V)


def make_batch(B: int, T: int, seed: int = 0, prefix: int = 5, bar_p: float = 0.12, d_text: int = 384) -> dict:
    """Random ids; a global prefix of `prefix` tokens, then Bar (global) tokens at random places, different per row."""
    g = torch.Generator().manual_seed(seed)
    is_bar = torch.rand(B, T, generator=g) < bar_p
    is_bar[:, :prefix] = False
    is_global = is_bar.clone()
    is_global[:, :prefix] = True
    return dict(
        ids=torch.randint(1, V, (B, T), generator=g),
        bar_idx=torch.cumsum(is_bar.long(), dim=1),
        pos=torch.randint(0, 96, (B, T), generator=g),
        is_global=is_global,
        text_emb=torch.randn(B, d_text, generator=g),
        cond_mask=torch.ones(B, dtype=torch.bool),
    )


@pytest.fixture
def batch():
    """Factory: batch(B, T, seed=0, ...) -> dict of model inputs (see make_batch)."""
    return make_batch
