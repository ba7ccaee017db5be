"""Bootstrap intervals and the per-candidate BLEU parts behind the report's corpus-level intervals.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_bootstrap.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest

from acemusic.eval.bootstrap import bootstrap_ci, percentile_interval, resample_indices
from acemusic.eval.compare import bleu_from_parts, bleu_parts, tonic_relative
from acemusic.eval.metrics import corpus_bleu


def test_interval_of_the_mean_is_seeded_and_sensible() -> None:
    x = np.random.default_rng(1).normal(5.0, 2.0, 400)
    point, lo, hi = bootstrap_ci(x, seed=3)
    assert point == pytest.approx(x.mean())
    assert lo < point < hi
    # the percentile interval of the mean is about +-1.96 standard errors
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_ci(x, seed=3) == (point, lo, hi)
    assert bootstrap_ci(x, seed=4) != (point, lo, hi)
    # a generic statistic takes the slow path and agrees with the fast one for the mean
    assert bootstrap_ci(x, stat=lambda v: float(np.mean(v)), seed=3) == pytest.approx((point, lo, hi))


def test_degenerate_inputs() -> None:
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(np.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([1.0, float("nan"), 3.0])[0] == 2.0
    assert all(np.isnan(v) for v in percentile_interval([float("nan")]))
    idx = resample_indices(7, 50, seed=0)
    assert idx.shape == (50, 7) and idx.min() >= 0 and idx.max() < 7


def test_bleu_parts_sum_to_corpus_bleu() -> None:
    rng = np.random.default_rng(0)
    refs = [rng.integers(60, 66, int(rng.integers(10, 30))).tolist() for _ in range(6)]
    cands = [rng.integers(60, 66, int(rng.integers(8, 30))).tolist() for _ in range(9)]
    cands.append(refs[0][:12])  # a quotation
    parts = bleu_parts(cands, refs)
    expected = corpus_bleu([refs] * len(cands), cands)
    assert expected > 0
    assert bleu_from_parts(*parts) == pytest.approx(expected, rel=1e-12)
    sub = [0, 3, 3, 9]
    assert bleu_from_parts(*(p[sub] for p in parts)) == pytest.approx(
        corpus_bleu([refs] * len(sub), [cands[i] for i in sub]), rel=1e-12)


def test_tonic_relative_rotation() -> None:
    h = np.zeros(12)
    h[2] = 3.0  # D
    h[9] = 1.0  # A
    r = tonic_relative(h, 2)  # in D: tonic and fifth
    assert r[0] == pytest.approx(0.75) and r[7] == pytest.approx(0.25)
    assert tonic_relative(h, None)[2] == pytest.approx(0.75)
