"""Logit filters and the sampling step. Run: `.venv/bin/python -m pytest tests/generate/test_sampling.py -q`."""

from __future__ import annotations

import math

import pytest
import torch

from acemusic.generate.sampling import (
    SamplingConfig,
    cfg_combine,
    filter_logits,
    min_p,
    sample_next,
    temperature,
    top_k,
    top_p,
)

NEG = float("-inf")


def test_temperature_scales_and_keeps_input():
    x = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.equal(temperature(x, 2.0), torch.tensor([[0.5, 1.0, 2.0]]))
    assert torch.equal(x, torch.tensor([[1.0, 2.0, 4.0]]))  # pure: input untouched


def test_top_k():
    x = torch.tensor([[0.1, 3.0, 2.0, -1.0], [5.0, 4.0, 3.0, 2.0]])
    y = top_k(x, 2)
    assert torch.isfinite(y).sum(-1).tolist() == [2, 2]
    assert torch.isfinite(y[0, [1, 2]]).all() and torch.isfinite(y[1, [0, 1]]).all()
    assert torch.equal(top_k(x, 0), x)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    x = probs.log()
    kept = torch.isfinite(top_p(x, 0.7))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    assert torch.isfinite(top_p(x, 0.5))[0].tolist() == [True, False, False, False]
    assert torch.isfinite(top_p(x, 0.01)).sum() == 1  # always the best token
    assert torch.isfinite(top_p(x, 1.0)).all()
    # Order of the vocabulary does not matter.
    perm = torch.tensor([[2, 0, 3, 1]])
    assert torch.isfinite(top_p(x[:, perm[0]], 0.7))[0].tolist() == [False, True, False, True]


def test_min_p():
    probs = torch.tensor([[0.6, 0.3, 0.08, 0.02]])
    kept = torch.isfinite(min_p(probs.log(), 0.1))[0].tolist()
    assert kept == [True, True, True, False]  # threshold 0.06


def test_cfg_combine():
    cond = torch.tensor([[1.0, 2.0, 0.5]])
    unc = torch.tensor([[0.0, 3.0, 1.0]])
    assert cfg_combine(cond, unc, 2.0).tolist() == [[2.0, 1.0, 0.0]]  # unc + 2 (cond - unc)
    assert cfg_combine(cond, unc, 0.0).tolist() == unc.tolist()
    assert cfg_combine(cond, unc, 1.0) is cond


def test_sample_next_respects_masks_and_seeds():
    logits = torch.zeros(4, 10)
    logits[:, :5] = NEG
    g1 = torch.Generator().manual_seed(7)
    g2 = torch.Generator().manual_seed(7)
    a = torch.stack([sample_next(logits, g1) for _ in range(50)])
    b = torch.stack([sample_next(logits, g2) for _ in range(50)])
    assert torch.equal(a, b) and (a >= 5).all()
    assert len(set(a.flatten().tolist())) > 1
    assert sample_next(torch.tensor([[0.0, 3.0, 1.0]]), greedy=True).item() == 1
    dead = torch.full((1, 4), NEG)
    assert 0 <= sample_next(dead, torch.Generator().manual_seed(0)).item() < 4
    one = torch.full((3, 6), NEG)
    one[:, 0] = 0.0  # only the first and ...
    one[1, :] = NEG
    one[1, 5] = 0.0  # ... only the last token allowed: the edges of the CDF search
    assert sample_next(one, torch.Generator().manual_seed(0)).tolist() == [0, 5, 0]


def test_sampling_matches_the_filtered_distribution():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    cfg = SamplingConfig(temperature=1.0, top_p=0.75)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(filter_logits(logits, cfg), g) for _ in range(4000)]).flatten()
    assert (draws != 2).all()  # outside the nucleus
    share = (draws == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.03


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=1.0),
                                    dict(top_k=-2)])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)
    assert SamplingConfig.from_dict(SamplingConfig(top_p=0.9).to_dict()) == SamplingConfig(top_p=0.9)
