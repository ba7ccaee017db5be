"""Residual VQ: shapes, residual refinement, EMA learning, dead-code restarts, decode of any level prefix, bitrate.

Run: `.venv/bin/python -m pytest tests/audio/test_rvq.py -q`. Tiny codebooks on random data: well under a second.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from acemusic.audio.rvq import EMACodebook, ResidualVQ, RVQConfig, bitrate_bps
from acemusic.errors import InputError


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared, loaded CPU two threads spin on each other (40x slower measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rvq(**kw) -> ResidualVQ:
    torch.manual_seed(0)
    return ResidualVQ(RVQConfig(dim=8, n_levels=4, codebook_size=16, **kw))


def test_bitrate_arithmetic():
    assert bitrate_bps(12, 1024, 50.0) == 6000.0  # 12 levels x 10 bits x 50 frames/s = 6 kbps
    assert bitrate_bps(1, 1024, 50.0) == 500.0
    assert bitrate_bps(8, 256, 50.0) == 3200.0
    assert RVQConfig(codebook_size=1024).bits_per_code == 10.0


def test_shapes_and_straight_through_gradient():
    rvq = _rvq().train()
    z = torch.randn(2, 8, 5, requires_grad=True)
    out = rvq(z, n_levels=3)
    assert out.quantized.shape == (2, 8, 5)
    assert out.codes.shape == (2, 3, 5) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 16
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # straight-through: identity gradient


def test_more_levels_reduce_error_and_decode_matches_forward():
    rvq = _rvq().train()
    data = torch.randn(4, 8, 64)
    for _ in range(30):  # let the EMA codebooks settle on this data
        rvq(data, n_levels=4)
    rvq.eval()
    errors = []
    for n in range(1, 5):
        out = rvq(data, n_levels=n)
        assert torch.allclose(rvq.decode(out.codes), out.quantized, atol=1e-5)
        errors.append(float((out.quantized - data).pow(2).mean()))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors


def test_ema_codebook_learns_clusters():
    torch.manual_seed(0)
    centres = torch.randn(4, 2) * 5
    cb = EMACodebook(dim=2, size=8, decay=0.8, eps=1e-5, dead_threshold=0.01)  # spare codes: k-means has local minima
    for _ in range(50):
        x = centres[torch.randint(0, 4, (256,))] + 0.05 * torch.randn(256, 2)
        cb(x, train=True)
    dist = torch.cdist(centres, cb.embed).min(dim=1).values
    assert float(dist.max()) < 0.3, dist  # every true centre has a code on it


def test_dead_codes_are_restarted_on_data():
    cb = EMACodebook(dim=2, size=8, decay=0.5, eps=1e-5, dead_threshold=0.5)
    x = torch.randn(64, 2) + 100.0  # all data far from where we place the codes
    cb(x, train=True)  # initialises from data
    cb.embed[:] = -100.0  # kill every code: nothing is near the data any more
    cb.embed_sum[:] = -100.0
    cb.cluster_size[:] = 1.0
    for _ in range(4):
        cb(x, train=True)
    near = torch.cdist(cb.embed, x).min(dim=1).values < 5.0
    assert int(near.sum()) >= 7  # the codes that got no assignments were moved onto data


def test_quantizer_dropout_draws_levels_in_training_only():
    rvq = _rvq(quantizer_dropout=1.0).train()
    z = torch.randn(1, 8, 4)
    seen = {rvq(z).codes.shape[1] for _ in range(40)}
    assert seen <= {1, 2, 3, 4} and len(seen) > 1
    rvq.eval()
    assert rvq(z).codes.shape[1] == 4


def test_usage_report_counts_codes():
    rvq = _rvq().eval()
    rvq.reset_usage()
    rvq(torch.randn(2, 8, 10), n_levels=2)
    rep = rvq.usage_report()
    assert [r["assignments"] for r in rep] == [20, 20, 0, 0]
    assert all(1 <= r["used"] <= 16 for r in rep[:2]) and rep[0]["perplexity"] >= 1.0


def test_bad_input():
    rvq = _rvq().eval()
    with pytest.raises(InputError, match="levels"):
        rvq(torch.randn(1, 8, 3), n_levels=5)
    with pytest.raises(InputError, match="expected"):
        rvq(torch.randn(1, 7, 3))
    with pytest.raises(InputError, match="code values"):
        rvq.decode(torch.full((1, 2, 3), 16))
    with pytest.raises(InputError, match="levels"):
        rvq.decode(torch.zeros((1, 0, 3), dtype=torch.long))
