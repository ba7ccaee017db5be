"""Logit filters and the sampling step. Run: `.venv/bin/python -m pytest tests/generate/test_sampling.py -q`."""

from __future__ import annotations

import math

import numpy as np
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
    x = np.array([[1.0, 2.0, 4.0]], np.float32)
    assert np.array_equal(temperature(x, 2.0), [[0.5, 1.0, 2.0]])
    assert np.array_equal(x, [[1.0, 2.0, 4.0]])  # pure: input untouched


def test_top_k():
    x = np.array([[0.1, 3.0, 2.0, -1.0], [5.0, 4.0, 3.0, 2.0]], np.float32)
    y = top_k(x, 2)
    assert np.isfinite(y).sum(-1).tolist() == [2, 2]
    assert np.isfinite(y[0, [1, 2]]).all() and np.isfinite(y[1, [0, 1]]).all()
    assert np.array_equal(top_k(x, 0), x)
    assert np.isfinite(top_k(np.array([[1.0, 2.0, 2.0, 0.0]], np.float32), 2)).sum() == 2  # ties at the k-th


def test_top_p_keeps_the_smallest_nucleus():
    x = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    kept = np.isfinite(top_p(x, 0.7))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    assert np.isfinite(top_p(x, 0.5))[0].tolist() == [True, False, False, False]
    assert np.isfinite(top_p(x, 0.01)).sum() == 1  # always the best token
    assert np.isfinite(top_p(x, 1.0)).all()
    # Order of the vocabulary does not matter, nor do tokens already masked.
    perm = [2, 0, 3, 1]
    assert np.isfinite(top_p(x[:, perm], 0.7))[0].tolist() == [False, True, False, True]
    masked = np.concatenate([x, np.full((1, 2), -np.inf, np.float32)], axis=1)
    assert np.isfinite(top_p(masked, 0.7))[0].tolist() == [True, True, False, False, False, False]


def test_min_p():
    probs = np.array([[0.6, 0.3, 0.08, 0.02]], np.float32)
    kept = np.isfinite(min_p(np.log(probs), 0.1))[0].tolist()
    assert kept == [True, True, True, False]  # threshold 0.06


def test_cfg_combine():
    cond = np.array([[1.0, 2.0, 0.5]], np.float32)
    unc = np.array([[0.0, 3.0, 1.0]], np.float32)
    assert cfg_combine(cond, unc, 2.0).tolist() == [[2.0, 1.0, 0.0]]  # unc + 2 (cond - unc)
    assert cfg_combine(cond, unc, 0.0).tolist() == unc.tolist()
    assert cfg_combine(cond, unc, 1.0) is cond


def test_sample_next_respects_masks_and_seeds():
    logits = np.zeros((4, 10), np.float32)
    logits[:, :5] = NEG
    g1 = torch.Generator().manual_seed(7)
    g2 = torch.Generator().manual_seed(7)
    a = np.stack([sample_next(logits, g1) for _ in range(50)])
    b = np.stack([sample_next(logits, g2) for _ in range(50)])
    assert np.array_equal(a, b) and (a >= 5).all()
    assert len(set(a.flatten().tolist())) > 1
    assert sample_next(np.array([[0.0, 3.0, 1.0]], np.float32), greedy=True).item() == 1
    dead = np.full((1, 4), NEG, np.float32)
    assert 0 <= sample_next(dead, torch.Generator().manual_seed(0)).item() < 4
    one = np.full((3, 6), NEG, np.float32)
    one[:, 0] = 0.0  # only the first and ...
    one[1, :] = NEG
    one[1, 5] = 0.0  # ... only the last token allowed: the edges of the CDF search
    assert sample_next(one, torch.Generator().manual_seed(0)).tolist() == [0, 5, 0]


def test_sampling_matches_the_filtered_distribution():
    logits = np.array([[math.log(0.5), math.log(0.3), math.log(0.2)]], np.float32)
    cfg = SamplingConfig(temperature=1.0, top_p=0.75)
    g = torch.Generator().manual_seed(0)
    draws = np.stack([sample_next(filter_logits(logits, cfg), g) for _ in range(4000)]).flatten()
    assert (draws != 2).all()  # outside the nucleus
    share = float((draws == 0).mean())
    assert abs(share - 0.5 / 0.8) < 0.03


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=1.0),
                                    dict(top_k=-2)])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)
    assert SamplingConfig.from_dict(SamplingConfig(top_p=0.9).to_dict()) == SamplingConfig(top_p=0.9)
