"""Baselines under the grammar: valid MIDI with exactly the asked bars, meter, tempo and instruments; seeded;
the unigram's masked NLL is a proper renormalized likelihood; the copy baseline picks the nearest piece.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_baselines.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest

from acemusic.eval.baselines.nearest import Asks, NearestPiece
from acemusic.eval.baselines.ngram import KneserNeyLM
from acemusic.eval.baselines.ngram_session import NgramSession
from acemusic.eval.baselines.sampler import sample_constrained
from acemusic.eval.baselines.unigram import UnigramLM
from acemusic.eval.suite import ModelFreeContext
from acemusic.generate.constraints import Controls, Grammar, GrammarState
from acemusic.generate.prompt import PromptSpec
from acemusic.generate.tasks.compose import ComposeTask
from acemusic.tokenizer import Tokenizer

from .tiny_data import FIXTURES, melody


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def train(tok) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    seqs = [tok.encode(tok.load_score(FIXTURES / "bach_bwv66_6.mid"))]
    seqs += [tok.encode(melody(rng, int(rng.integers(12)), m, 8)) for m in ("major", "minor") * 4]
    return seqs


def _request(tok, bars=4, meter=(3, 4), tempo=90.0, instruments=(40,)):
    spec = PromptSpec(text="x", key=2, mode="minor", tempo=tempo, meter=meter, instruments=instruments)
    task = ComposeTask(spec, bars=bars)
    return task, task.build(ModelFreeContext(tok))


@pytest.mark.parametrize("kind", ["unigram", "kneser-ney"])
def test_sampled_baselines_obey_the_controls(tok, train, kind) -> None:
    lm = UnigramLM.fit(train, len(tok.vocab)) if kind == "unigram" else KneserNeyLM(4).fit(train, len(tok.vocab))
    g = Grammar(tok.vocab)
    for seed in range(3):
        task, req = _request(tok)
        session = lm.session() if kind == "unigram" else NgramSession(lm)
        ids = sample_constrained(session, req.prompt, req.controls, g, seed=seed,
                                 max_new_tokens=task.max_new_tokens())
        full = np.concatenate([req.prompt, ids])
        assert ids[-1] == tok.vocab.eos
        assert GrammarState(g, req.controls).accepts(full) is None  # every token was allowed
        assert int((full == tok.vocab.bar).sum()) == 4
        score = tok.decode(full)
        assert [(t.numerator, t.denominator) for t in score.time_signatures] == [(3, 4)]
        assert {round(t.qpm) for t in score.tempos} == {round(float(tok.vocab.tempo_bins[tok.vocab.tempo_bin(90)]))}
        assert {int(t.program) for t in score.tracks if t.note_num()} <= {40}
        again = sample_constrained(lm.session() if kind == "unigram" else NgramSession(lm), req.prompt,
                                   task.controls(ModelFreeContext(tok)), g, seed=seed,
                                   max_new_tokens=task.max_new_tokens())
        assert np.array_equal(ids, again)  # same seed, same piece


def test_length_guard_still_closes_the_piece(tok, train) -> None:
    lm = UnigramLM.fit(train, len(tok.vocab))
    g = Grammar(tok.vocab)
    _, req = _request(tok, bars=6)
    ids = sample_constrained(lm.session(), req.prompt, req.controls, g, seed=0, max_new_tokens=30)
    full = np.concatenate([req.prompt, ids])
    assert len(ids) <= 30 and ids[-1] == tok.vocab.eos and int((full == tok.vocab.bar).sum()) == 6


def test_unigram_masked_nll_is_a_renormalized_likelihood(tok, train) -> None:
    lm = UnigramLM.fit(train[1:], len(tok.vocab))
    g = Grammar(tok.vocab)
    seq, start = train[0], 6
    total, n = lm.masked_nll(g, [seq], [start])
    assert n == len(seq) - start
    # by hand for the first scored token
    st = GrammarState(g)
    for t in seq[:start].tolist():
        st.advance(t)
    m = st.allowed()
    first = -np.log(lm.p[seq[start]] / lm.p[m].sum())
    t1, _ = lm.masked_nll(g, [seq[: start + 1]], [start])
    assert t1 == pytest.approx(first)
    # the mask only removes competitors: never worse than the plain unigram
    plain = -np.log(lm.p[seq[start:]]).sum()
    assert 0 < total < plain


def test_unigram_save_load(tmp_path, tok, train) -> None:
    lm = UnigramLM.fit(train, len(tok.vocab))
    lm.save(tmp_path / "u.npz")
    assert np.array_equal(UnigramLM.load(tmp_path / "u.npz").p, lm.p)


def test_nearest_piece_priorities() -> None:
    metas = [
        {"n_bars": 4, "instruments": [40], "meter": "3/4", "mode": "minor", "key": 2, "tempo": 90},  # too short
        {"n_bars": 16, "instruments": [0], "meter": "3/4", "mode": "minor", "key": 2, "tempo": 90},  # wrong inst
        {"n_bars": 16, "instruments": [40], "meter": "4/4", "mode": "minor", "key": 2, "tempo": 90},  # wrong meter
        {"n_bars": 16, "instruments": [40], "meter": "3/4", "mode": "major", "key": 2, "tempo": 90},
        {"n_bars": 16, "instruments": [40], "meter": "3/4", "mode": "minor", "key": 5, "tempo": 90},
        {"n_bars": 16, "instruments": [40], "meter": "3/4", "mode": "minor", "key": 2, "tempo": 200},
        {"n_bars": 16, "instruments": [40], "meter": "3/4", "mode": "minor", "key": 2, "tempo": 95},  # best
    ]
    asks = Asks((40,), "3/4", "minor", 2, None, None, 90.0)
    nn = NearestPiece(metas)
    assert nn.pick(asks, 8, seed=0) == 6
    assert nn.pick(asks, 8, seed=0) == nn.pick(asks, 8, seed=0)
    # without the best one, mode and key outrank tempo
    assert NearestPiece(metas[:6]).pick(asks, 8) == 5
    # ties are broken by the seed
    twins = [metas[6]] * 5
    picks = {NearestPiece(twins).pick(asks, 8, seed=s) for s in range(20)}
    assert len(picks) > 1


def test_controls_unchanged_by_sampling(tok, train) -> None:
    """Sampling keeps the caller's Controls object intact (a fresh GrammarState per call)."""
    lm = UnigramLM.fit(train, len(tok.vocab))
    _, req = _request(tok)
    before = Controls.from_dict(req.controls.to_dict())
    sample_constrained(lm.session(), req.prompt, req.controls, Grammar(tok.vocab), seed=1)
    assert req.controls == before
