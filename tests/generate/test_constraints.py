"""Grammar and control masks. Run: `.venv/bin/python -m pytest tests/generate/test_constraints.py -q`.

The grammar must accept every sequence the tokenizer writes (real music, awkward synthetic scores, bar slices), and
everything sampled under it must decode to the notes it spelled and re-encode to the same tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acemusic.generate.constraints import Controls, GrammarState, scale_mask
from acemusic.tokenizer import Conditions
from tests.generate.conftest import real_sequences, sample_uniform
from tests.tokenizer.conftest import random_score  # meter and tempo changes mid-bar, drums, off-grid notes


def _check_accepts_with_structure(tok, grammar, ids: np.ndarray, name: str) -> None:
    st = GrammarState(grammar, Controls())
    bar, pos, glob = tok.structure(ids)
    for i, t in enumerate(ids.tolist()):
        assert st.allowed()[t], f"{name}: token {i} {tok.vocab.token(t)} rejected after " \
                                f"{[tok.vocab.token(x) for x in ids[max(0, i - 8):i]]}"
        st.advance(t)
        assert st.structure == (bar[i], pos[i], glob[i]), f"{name}: structure differs at token {i}"
    assert st.done


def test_accepts_real_music(tok, grammar, real_small):
    assert len(real_small) >= 12
    for name, ids in real_small:
        _check_accepts_with_structure(tok, grammar, ids, name)


@pytest.mark.slow
def test_accepts_real_music_full(tok, grammar):
    """30 chorales, 30 folk tunes (Essen + O'Neill), 3 Palestrina pieces."""
    seqs = real_sequences(tok, n_chorales=30, n_folk=30, n_palestrina=3)
    assert len(seqs) >= 60
    for name, ids in seqs:
        assert GrammarState(grammar).accepts(ids) is None, name


def test_accepts_awkward_scores_and_slices(tok, grammar):
    """Meter changes mid-bar, 12/4 split, tempo changes off the grid, drums; and self-contained bar slices."""
    for seed in range(6):
        score = random_score(np.random.default_rng(seed))
        ids = tok.encode(score)
        _check_accepts_with_structure(tok, grammar, ids, f"random score {seed}")
        body = tok.encode_body(score)
        prefix = tok.cond_prefix(tok.conditions_of(score))
        n = len(tok.bar_starts(body))
        for a, b in ((1, 5), (n // 2, n), (n - 1, n)):
            seq = np.concatenate([prefix, tok.slice_bars(body, a, b), [tok.vocab.eos]])
            assert GrammarState(grammar).accepts(seq) is None, (seed, a, b)


def test_rejects_out_of_grammar(tok, grammar):
    v = tok.vocab
    good = tok.encode(tok.load_score(Path(__file__).resolve().parents[1] / "fixtures" / "midi" / "band.mid"))
    bar1 = int(np.flatnonzero(good == v.bar)[0])
    # Drop bar 1's TimeSig; a Program outside the Inst set; a Position going backwards; EOS before any bar.
    no_ts = np.delete(good, bar1 + 1)
    assert GrammarState(grammar).accepts(no_ts) == bar1 + 1
    prefix = tok.cond_prefix(Conditions(instruments=(0,)))
    bad_prog = np.concatenate([prefix, [v.bar, v.id("TimeSig", 3), v.id("Tempo", 10), v.id("Position", 0),
                                        v.id("Program", 40)]])
    assert GrammarState(grammar).accepts(bad_prog) == len(bad_prog) - 1
    back = np.concatenate([prefix, [v.bar, v.id("TimeSig", 3), v.id("Tempo", 10), v.id("Position", 5),
                                    v.id("Program", 0), v.id("Velocity", 8), v.id("Pitch", 60), v.id("Duration", 3),
                                    v.id("Position", 5)]])
    assert GrammarState(grammar).accepts(back) == len(back) - 1
    past_bar = np.concatenate([prefix, [v.bar, v.id("TimeSig", v.time_signature_index(3, 4)), v.id("Tempo", 10),
                                        v.id("Position", 36)]])
    assert GrammarState(grammar).accepts(past_bar) == len(past_bar) - 1
    assert GrammarState(grammar).accepts(np.concatenate([prefix, [v.eos]])) == len(prefix)


def _strip_trailing_bars(body: np.ndarray, vocab) -> np.ndarray:
    """Bars after the last note do not survive decoding (a Score ends with its last note)."""
    last_dur = np.flatnonzero(vocab.type_of[body] == vocab.type_of[vocab.id("Duration", 0)])[-1]
    return body[: last_dur + 1]


@pytest.mark.parametrize("seed", range(8))
def test_uniform_sampling_decodes_and_reencodes(tok, grammar, seed):
    rng = np.random.default_rng(seed)
    v = tok.vocab
    insts = tuple(sorted(rng.choice([0, 24, 40, 52, 73, 128], size=int(rng.integers(1, 4)), replace=False).tolist()))
    prefix = tok.cond_prefix(Conditions(key=int(rng.integers(12)), mode="minor", instruments=insts))
    controls = Controls(n_bars=int(rng.integers(1, 9)), strict_pitch_order=True,
                        max_notes_per_position=int(rng.integers(1, 6)) if seed % 2 else None)
    seq, st = sample_uniform(grammar, controls, prefix, rng)
    assert seq[-1] == v.eos and st.done
    assert int((seq == v.bar).sum()) == controls.n_bars
    score = tok.decode(seq)
    notes = tok.note_table(score)
    assert len(notes) == st.n_notes > 0
    assert set(notes[:, 3].tolist()) <= set(insts)
    body = seq[len(prefix):-1]
    assert np.array_equal(tok.encode_body(score), _strip_trailing_bars(body, v))
    # The re-encoded full sequence is accepted too.
    assert GrammarState(grammar).accepts(tok.encode(score, Conditions(instruments=insts))) is None


def test_bar_budget_header_and_locks(tok, grammar):
    v = tok.vocab
    ts, tempo = v.time_signature_index(6, 8), 17
    c = Controls(n_bars=5, time_sig=ts, tempo=tempo, lock_time_sig=True, lock_tempo=True, strict_pitch_order=True)
    prefix = tok.cond_prefix(Conditions(instruments=(0, 40)))
    for seed in range(5):
        seq, st = sample_uniform(grammar, c, prefix, np.random.default_rng(seed))
        body = seq[len(prefix):]
        types = v.type_of[body]
        assert int((body == v.bar).sum()) == 5
        assert body[1] == v.id("TimeSig", ts) and body[2] == v.id("Tempo", tempo)
        assert (types == v.type_of[v.id("TimeSig", 0)]).sum() == 1  # locked: no change after bar 1
        assert (types == v.type_of[v.id("Tempo", 0)]).sum() == 1
        assert st.bar_notes > 0  # the last bar has a note
        score = tok.decode(seq)
        assert score.end() <= 5 * 36  # fit_durations: nothing rings past bar 5 (6/8 = 36 ticks)
        assert score.end() > 4 * 36


def test_max_notes_and_pitch_ranges(tok, grammar):
    c = Controls(n_bars=4, max_notes_per_position=2, pitch_ranges={73: (60, 96), 42: (36, 76)},
                 strict_pitch_order=True)
    prefix = tok.cond_prefix(Conditions(instruments=(42, 73)))
    for seed in range(5):
        seq, _ = sample_uniform(grammar, c, prefix, np.random.default_rng(seed))
        table = tok.note_table(tok.decode(seq))
        _, counts = np.unique(table[:, 0], return_counts=True)
        assert counts.max() <= 2
        for prog, (lo, hi) in c.pitch_ranges.items():
            p = table[table[:, 3] == prog, 1]
            assert ((p >= lo) & (p <= hi)).all()
        assert len(np.unique(table[:, [0, 1, 3]], axis=0)) == len(table)  # strict order: no duplicate notes


def test_closing_finishes_the_budget(tok, grammar):
    """With `closing` set mid-piece, the rest is only Bar tokens, one note if the last bar is empty, and EOS."""
    v = tok.vocab
    c = Controls(n_bars=6)
    prefix = tok.cond_prefix(Conditions(instruments=(0,)))
    rng = np.random.default_rng(0)
    st = GrammarState(grammar, c)
    for t in prefix.tolist():
        st.advance(t)
    seq = list(prefix.tolist())
    while st.bar_index < 2 or st.phase != 15:  # into bar 2, just after a Duration
        t = int(rng.choice(np.flatnonzero(st.allowed())))
        st.advance(t)
        seq.append(t)
    st.closing = True
    tail = []
    while not st.done:
        t = int(rng.choice(np.flatnonzero(st.allowed())))
        st.advance(t)
        tail.append(t)
    assert len(tail) <= 6 - 2 + 8
    assert int((np.asarray(seq + tail) == v.bar).sum()) == 6 and tail[-1] == v.eos


def test_key_bias(tok, grammar):
    v = tok.vocab
    assert scale_mask(2, "minor")[[62, 64, 65, 67, 69, 70, 72, 73]].all()
    assert not scale_mask(2, "minor")[[63, 66, 68, 71]].any()
    assert scale_mask(0, "major").sum() == 75  # 7 of 12 pitch classes over 128 MIDI pitches
    c = Controls(key=2, mode="minor", key_strength=1.5)
    st = GrammarState(grammar, c)
    head = [v.bar, v.id("TimeSig", 3), v.id("Tempo", 9), v.id("Position", 0), v.id("Program", 0), v.id("Velocity", 9)]
    for t in [*tok.cond_prefix(Conditions(instruments=(0,))).tolist(), *head]:
        st.advance(t)
    bias = st.bias()
    assert bias[v.id("Pitch", 62)] == 0.0 and bias[v.id("Pitch", 63)] == -1.5
    assert bias[v.id("Duration", 3)] == 0.0
    assert GrammarState(grammar, Controls(key=2, key_strength=0.0)).bias() is None
