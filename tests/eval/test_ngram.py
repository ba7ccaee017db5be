"""Kneser-Ney n-gram baseline: hand-checked values, a dict-based reference, normalisation, learning, persistence.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_ngram.py -q`
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from acemusic.eval.baselines import KneserNeyLM


def test_bigram_by_hand() -> None:
    # Corpus "0 1 2" and "0 1 1", D = 0.5, V = 3. Continuation counts: a(0) = |{pad}| = 1, a(1) = |{0, 1}| = 2,
    # a(2) = |{1}| = 1, total 4, three types -> gamma = 1.5, so P1 = ((a - .5) + 1.5 / 3) / 4 = (.25, .5, .25).
    # Context 1 saw 1->2 and 1->1 once each: c = 2, gamma = 2 * .5 = 1,
    # P(2|1) = (.5 + .25) / 2 = .375, P(1|1) = (.5 + .5) / 2 = .5, P(0|1) = .25 / 2 = .125.
    lm = KneserNeyLM(order=2, discount=0.5).fit([np.array([0, 1, 2]), np.array([0, 1, 1])], vocab_size=3)
    np.testing.assert_allclose(lm.p1, [0.25, 0.5, 0.25])
    np.testing.assert_allclose(lm.probs(np.array([1])), [0.125, 0.5, 0.375])
    np.testing.assert_allclose(lm.probs(np.array([2])), lm.p1)  # context 2 never seen: back off completely
    # Sequence start (pad context): 0 followed it twice -> P(0|pad) = (1.5 + .5 * .25) / 2, P(1|pad) = .5 * .5 / 2.
    np.testing.assert_allclose(lm.probs(np.array([], dtype=np.int64)), [0.8125, 0.125, 0.0625])
    # nll of "0 1 2" = -log(P(0|pad) P(1|0) P(2|1)); context 0 saw only 0->1 twice: P(1|0) = (1.5 + .5 * .5) / 2.
    expected = -np.log([0.8125, 0.875, 0.375])
    np.testing.assert_allclose(lm.nll(np.array([0, 1, 2])), expected)
    np.testing.assert_allclose(lm.nll(np.array([0, 1, 2]), start=2), expected[2:])


def test_modified_discounts_from_count_of_counts() -> None:
    # Unigram model (raw counts at the top order): counts of ids 0..5 = 1, 1, 1, 2, 2, 3 -> n1=3, n2=2, n3=1, n4=0.
    seq = np.array([0, 1, 2, 3, 3, 4, 4, 5, 5, 5])
    lm = KneserNeyLM(order=1).fit([seq], vocab_size=8)
    y = 3 / (3 + 2 * 2)
    np.testing.assert_allclose(lm.discounts[0], [1 - 2 * y * 2 / 3, 2 - 3 * y * 1 / 2, 3 - 4 * y * 0 / 1])
    d1, d2, d3 = lm.discounts[0]
    gamma = 3 * d1 + 2 * d2 + 1 * d3
    counts = np.array([1, 1, 1, 2, 2, 3, 0, 0])
    disc = np.array([d1, d1, d1, d2, d2, d3, 0, 0])
    np.testing.assert_allclose(lm.p1, (counts - disc + gamma / 8) / 10)


def reference_probs(seqs: list[np.ndarray], order: int, v: int, context: tuple[int, ...]) -> np.ndarray:
    """Straight transcription of interpolated modified KN with dicts of tuples (pad = v), for checking."""
    pad = v
    grams: dict[int, dict[tuple, int]] = {k: defaultdict(int) for k in range(1, order + 1)}
    for s in seqs:
        x = [pad] * (order - 1) + [int(t) for t in s]
        for i in range(order - 1, len(x)):
            grams[order][tuple(x[i - order + 1 : i + 1])] += 1
    for k in range(order - 1, 0, -1):  # continuation counts: distinct left extensions
        for g in grams[k + 1]:
            grams[k][g[1:]] += 1
    disc = {}
    for k in range(1, order + 1):
        cc = [sum(1 for c in grams[k].values() if c == i) for i in (1, 2, 3, 4)]
        y = cc[0] / (cc[0] + 2 * cc[1]) if cc[0] + 2 * cc[1] else 0.5
        fallback = (0.5, 1.0, 1.5)  # used when a count-of-counts is zero (tiny corpora)
        raw = [i + 1 - (i + 2) * y * cc[i + 1] / cc[i] if cc[i] else fallback[i] for i in range(3)]
        disc[k] = [min(max(d, 0.05), i + 1.0) for i, d in enumerate(raw)]
    d_of = lambda k, c: 0.0 if c == 0 else disc[k][min(c, 3) - 1]
    hist = ((pad,) * (order - 1) + tuple(context))[len(context) :] if order > 1 else ()

    def prob(w: int, k: int) -> float:
        h = hist[len(hist) - (k - 1) :] if k > 1 else ()
        lower = 1.0 / v if k == 1 else prob(w, k - 1)
        ext = {g: c for g, c in grams[k].items() if g[:-1] == h}
        if not ext:
            return lower
        total = sum(ext.values())
        gamma = sum(d_of(k, c) for c in ext.values())
        c = ext.get((*h, w), 0)
        return (max(c - d_of(k, c), 0.0) + gamma * lower) / total

    return np.array([prob(w, order) for w in range(v)])


def test_matches_dict_reference() -> None:
    rng = np.random.default_rng(1)
    v = 7
    seqs = [rng.integers(0, 5, size=n) for n in (40, 25, 60, 3)]  # ids 5, 6 never occur
    lm = KneserNeyLM(order=3).fit(seqs, vocab_size=v)
    for ctx in [(), (2,), (0, 1), (3, 4), (6, 6), (1, 5), tuple(seqs[0][:9])]:
        np.testing.assert_allclose(
            lm.probs(np.array(ctx, dtype=np.int64)), reference_probs(seqs, 3, v, ctx), rtol=1e-12
        )
    # The vectorised scorer agrees with the full distributions position by position.
    s = seqs[1]
    want = [-np.log(lm.probs(s[:i])[s[i]]) for i in range(len(s))]
    np.testing.assert_allclose(lm.nll(s), want, rtol=1e-12)


@pytest.mark.parametrize("order, discount", [(1, None), (2, 0.7), (3, None), (5, None)])
def test_distribution_sums_to_one(order: int, discount: float | None) -> None:
    rng = np.random.default_rng(order)
    v = 30
    seqs = [rng.integers(0, 20, size=rng.integers(1, 80)) for _ in range(30)]
    lm = KneserNeyLM(order=order, discount=discount).fit(seqs, vocab_size=v)
    contexts = [
        seqs[0][:10],
        seqs[3],
        np.array([], dtype=np.int64),
        np.array([25, 26, 27, 28]),
        np.array([1, 29]),
        rng.integers(0, 20, size=6),
    ]
    for ctx in contexts:
        p = lm.probs(ctx)
        assert p.shape == (v,)
        assert (p > 0).all()
        assert abs(p.sum() - 1.0) < 1e-6


def markov_source(rng: np.random.Generator, v: int, n_seqs: int, length: int) -> list[np.ndarray]:
    """Second-order Markov chain with 3 successors per state: an n-gram should learn it from enough data."""
    table = np.random.default_rng(123).integers(0, v, size=(v, v, 3))
    out = []
    for _ in range(n_seqs):
        s = list(rng.integers(0, v, size=2))
        for c in rng.integers(0, 3, size=length - 2):
            s.append(int(table[s[-2], s[-1], c]))
        out.append(np.asarray(s))
    return out


def test_more_data_lowers_heldout_nll() -> None:
    rng = np.random.default_rng(0)
    v = 12
    train = markov_source(rng, v, 400, 100)
    test = markov_source(rng, v, 50, 100)
    losses = []
    for n in (5, 40, 400):
        lm = KneserNeyLM(order=3).fit(train[:n], vocab_size=v)
        losses.append(lm.nll_many(test).mean())
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < np.log(3) + 0.15  # close to the source entropy (log 3 per token once the state is known)
    assert losses[0] < np.log(v)  # even little data beats uniform


def test_nll_many_matches_nll_and_starts() -> None:
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 9, size=n) for n in (15, 1, 30)]
    lm = KneserNeyLM(order=4).fit(seqs, vocab_size=10)
    starts = [4, 0, 29]
    joint = lm.nll_many(seqs, starts)
    parts = np.concatenate([lm.nll(s, start=st) for s, st in zip(seqs, starts, strict=True)])
    np.testing.assert_allclose(joint, parts)
    assert len(joint) == 11 + 1 + 1


def test_save_load_roundtrip(tmp_path) -> None:
    rng = np.random.default_rng(4)
    seqs = [rng.integers(0, 15, size=50) for _ in range(10)]
    for discount in (None, 0.6):
        lm = KneserNeyLM(order=4, discount=discount).fit(seqs, vocab_size=16)
        path = tmp_path / f"kn{discount}.npz"
        lm.save(path)
        back = KneserNeyLM.load(path)
        assert (back.order, back.discount, back.vocab_size) == (4, discount, 16)
        np.testing.assert_array_equal(back.nll_many(seqs), lm.nll_many(seqs))


def test_sample_is_seeded_and_stops() -> None:
    rng = np.random.default_rng(5)
    seqs = [np.concatenate([rng.integers(1, 6, size=20), [9]]) for _ in range(20)]  # 9 ends every sequence
    lm = KneserNeyLM(order=3).fit(seqs, vocab_size=10)
    a = lm.sample(np.array([1, 2]), np.random.default_rng(7), max_tokens=200, stop=9)
    b = lm.sample(np.array([1, 2]), np.random.default_rng(7), max_tokens=200, stop=9)
    np.testing.assert_array_equal(a, b)
    assert a[-1] == 9 and (a[:-1] != 9).all()
    cold = lm.sample(np.array([1, 2]), np.random.default_rng(8), max_tokens=30, temperature=0.05)
    assert len(cold) == 30 and cold.max() < 10


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        KneserNeyLM(order=0)
    with pytest.raises(ValueError):
        KneserNeyLM(discount=1.5)
    with pytest.raises(ValueError):
        KneserNeyLM(order=2).fit([np.array([0, 5])], vocab_size=5)
    with pytest.raises(RuntimeError):
        KneserNeyLM(order=2).nll(np.array([0, 1]))
    lm = KneserNeyLM(order=2).fit([np.array([0, 1, 2])], vocab_size=3)
    with pytest.raises(ValueError):
        lm.nll(np.array([0, 3]))
