"""lr_at (warmup + cosine) and AdamW parameter groups. Run: pytest tests/train/test_optim.py"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from acemusic.train.config import TrainConfig
from acemusic.train.optim import build_optimizer, lr_at, param_groups


def test_lr_schedule_shape():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(0.5 * (1e-3 + 1e-4))  # cosine midpoint
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert lr_at(500, cfg) == pytest.approx(1e-4)  # held at min_lr past the end
    warm = [lr_at(s, cfg) for s in range(10)]
    decay = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a < b for a, b in itertools.pairwise(warm))
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert lr_at(35, cfg) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * 0.25)) * 9e-4)


def test_lr_without_warmup():
    cfg = TrainConfig(lr=2e-3, min_lr=0.0, warmup_steps=0, max_steps=4)
    assert [round(lr_at(s, cfg), 6) for s in range(5)] == [2e-3, 0.001707, 0.001, 0.000293, 0.0]


def test_param_groups_decay_only_matrices():
    torch.set_num_threads(1)
    from acemusic.model import ModelConfig, MusicTransformer

    model = MusicTransformer(ModelConfig.preset("tiny", vocab_size=100))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    d = {names[id(p)] for p in decay["params"]}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert not d & nd
    assert d | nd == set(names.values())  # every (deduplicated) parameter in exactly one group
    assert "tok_emb.weight" in nd and "bar_emb.weight" in nd and "conditioner.null" in nd
    assert all("norm" not in n for n in d)
    assert "blocks.0.attn.qkv.weight" in d and "blocks.0.mlp.fc.weight" in d
    assert "conditioner.proj.bias" in nd and "conditioner.proj.weight" in d
    opt = build_optimizer(model, TrainConfig(lr=1e-3, warmup_steps=0))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
