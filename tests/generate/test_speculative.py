"""Speculative decoding pieces: prompt-lookup drafts and the verification rule that keeps the distribution exact.
The engine-level checks (greedy identical to plain decoding, fed structure) are in test_engine.py.

    .venv/bin/python -m pytest tests/generate/test_speculative.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acemusic.generate.speculative import LookupDrafter, verify_draft


def test_lookup_drafts_the_continuation_of_the_latest_match():
    d = LookupDrafter([5, 6, 7, 8, 1, 5, 6, 7, 9, 2, 5, 6, 7])
    # suffix (5, 6, 7) last occurred at 5..7 and went on with 9, 2: a 3-token match drafts up to 3 tokens
    assert d.draft(8) == [9, 2, 5]
    assert d.draft(1) == [9]
    d.push(9)
    assert d.draft(8) == [2, 5, 6, 7]  # now the 4-gram (5, 6, 7, 9) matches: up to 4 tokens


def test_lookup_never_matches_the_suffix_with_itself():
    d = LookupDrafter([1, 2, 3])
    assert d.draft(4) == []  # 3 never occurred before its own position
    d.push(3)
    assert d.draft(4) == [3]  # ... now it did: "3" was followed by 3
    assert LookupDrafter([]).draft(4) == []
    with pytest.raises(ValueError):
        LookupDrafter(n_max=0)


def softmax(x: np.ndarray) -> np.ndarray:  # the reference distribution
    e = np.exp(x.astype(np.float64) - x.max())
    return e / e.sum()


def _empirical(logits: np.ndarray, d: int, n: int, rule) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(len(logits))
    for _ in range(n):
        t = rule(logits, d, gen)
        counts[d if t is None else t] += 1
    return counts / n


def test_verify_draft_keeps_the_sampling_distribution():
    logits = np.array([2.0, 1.0, 0.0, -1.0, float("-inf")], np.float32)
    p = softmax(logits)
    for d in (0, 1, 3, 4):  # a likely draft, unlikely ones and one the grammar forbids
        q = _empirical(logits, d, 6000, lambda lg, d, g: verify_draft(lg, d, g))
        assert np.abs(q - p).max() < 0.02, (d, q, p)
        assert q[4] == 0.0

    def too_eager(lg, d, g):  # control: accepting with twice the probability skews the output
        if float(torch.rand((), generator=g)) < 2 * float(softmax(lg)[d]):
            return None
        rest = lg.copy()
        rest[d] = float("-inf")
        return int(torch.multinomial(torch.from_numpy(softmax(rest)), 1, generator=g))

    assert np.abs(_empirical(logits, 1, 6000, too_eager) - p).max() > 0.1


def test_verify_draft_greedy():
    logits = np.array([0.0, 3.0, 1.0], np.float32)
    assert verify_draft(logits, 1, torch.Generator(), greedy=True) is None
    assert verify_draft(logits, 2, torch.Generator(), greedy=True) == 1


def test_lookup_continues_after_guesses():
    d = LookupDrafter([5, 6, 7, 8, 1, 5, 6])
    assert d.draft(4, after=[9]) == []  # (6, 9) never occurred
    assert d.draft(3, after=[7]) == [8, 1, 5]  # (5, 6, 7) occurred, went on with 8, 1, 5: a 3-token match
    assert d.draft(1, after=[7]) == [8]
    assert d.draft(4, after=[7, 8]) == [1, 5, 6]  # (6, 7, 8) -> 1, 5, 6
    assert d.draft(0, after=[7]) == []


def test_structural_guesses_and_proposal(tiny_model, tok):
    """After a Duration the engine guesses Position(onset + duration), or Bar when that reaches the bar's end; after
    a Pitch the piece's latest Duration; a proposal chains guesses and lookup, every draft grammatical."""
    from acemusic.generate.constraints import Controls, GrammarState
    from acemusic.generate.engine import Engine, _Loop
    from acemusic.generate.sampling import SamplingConfig
    from acemusic.tokenizer import Conditions

    eng = Engine(tiny_model, tok)
    v = tok.vocab
    st = GrammarState(eng.grammar, Controls())
    prefix = tok.cond_prefix(Conditions(instruments=(0,))).tolist()
    ts = v.time_signatures.index((4, 4))
    q, h = v.duration_bin(12), v.duration_bin(24)  # a quarter and a half note
    body = [v.bar, v.id("TimeSig", ts), v.id("Tempo", 10), v.id("Position", 0), v.id("Program", 0),
            v.id("Velocity", 8), v.id("Pitch", 60), v.id("Duration", q)]
    loop = _Loop(eng, [st], SamplingConfig(), torch.Generator(), False, 100)
    for t in prefix + body:
        st.advance(t)
    loop.last_duration = v.id("Duration", q)
    assert loop.guess(st, body[-1], []) == v.id("Position", 12)
    st.advance(v.id("Position", 12))
    assert loop.guess(st, v.id("Position", 12), []) is None  # the pitch: no guess
    st.advance(v.id("Pitch", 62))
    assert loop.guess(st, v.id("Pitch", 62), []) == v.id("Duration", q)  # the latest Duration ...
    assert loop.guess(st, v.id("Pitch", 62), [v.id("Duration", h), v.id("Position", 36)]) == v.id("Duration", h)
    # ... drafts included. A proposal: the Duration guess, then the onset after it, then lookup (nothing here).
    drafts, struct = loop.propose(st, v.id("Pitch", 62), 4, LookupDrafter(prefix + body))
    assert drafts[:2] == [v.id("Duration", q), v.id("Position", 24)]
    fork = st.fork()
    for d in drafts:
        assert fork.allowed()[d]
        fork.advance(d)
    assert len(struct) == len(drafts)
    for t in (v.id("Duration", q), v.id("Position", 36), v.id("Pitch", 62), v.id("Duration", q)):
        st.advance(t)
    assert loop.guess(st, v.id("Duration", q), []) == v.bar  # 36 + 12 = 48 ticks: the end of a 4/4 bar
    st.advance(v.bar)
    assert loop.guess(st, v.bar, []) is None  # not after a Duration or a Pitch
