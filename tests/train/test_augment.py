"""Pure augmentation functions on real token sequences. Run: pytest tests/train/test_augment.py"""

from __future__ import annotations

import numpy as np
import pytest

from acemusic.data import augment
from acemusic.tokenizer.vocab import DRUMS, T


def _band(pieces):
    return next(b.astype(np.int64) for b, m in pieces if m["id"] == "test:band")


def _chorale(pieces):
    return next(b.astype(np.int64) for b, m in pieces if m["id"].endswith("bwv66.6.mxl"))


def test_transpose_moves_pitches_but_not_drums(pieces, tok):
    body = _band(pieces)
    before = tok.note_table(tok.decode(body))  # rows (onset, pitch, duration, program, velocity)
    after = tok.note_table(tok.decode(augment.transpose(body, 5, tok.vocab)))
    drums = before[:, 3] == DRUMS
    assert drums.any() and (~drums).any()
    exp = before.copy()
    exp[~drums, 1] += 5
    exp = exp[np.lexsort(exp.T[::-1])]
    np.testing.assert_array_equal(after, exp)
    # non-Pitch tokens are untouched
    ty = tok.vocab.type_of[body]
    np.testing.assert_array_equal(augment.transpose(body, -3, tok.vocab)[ty != T["Pitch"]], body[ty != T["Pitch"]])


def test_transpose_out_of_range_raises(pieces, tok):
    body = _chorale(pieces)
    with pytest.raises(ValueError):
        augment.transpose(body, 100, tok.vocab)


def test_transpose_range(pieces, tok):
    v = tok.vocab
    body = _chorale(pieces)
    p = v.value_of[body[augment.pitched_mask(body, v)]]
    lo, hi = augment.transpose_range(v, body=body)
    # the chorale lies inside the piano range, so it must stay inside it
    assert (lo, hi) == (21 - p.min(), 108 - p.max())
    for s in (lo, hi):
        q = v.value_of[(t := augment.transpose(body, s, v))[augment.pitched_mask(t, v)]]
        assert q.min() >= 21 and q.max() <= 108
    meta = {"pitch_min": 5, "pitch_max": 120}  # outside the piano range: only MIDI limits apply
    assert augment.transpose_range(v, meta=meta) == (-5, 7)
    assert augment.transpose_range(v, meta={"pitch_min": None, "pitch_max": None}) == (0, 0)
    drums_only = np.array([v.bar, v.id("Position", 0), v.id("Program", DRUMS), v.id("Velocity", 5),
                           v.id("Pitch", 36), v.id("Duration", 2)])
    assert augment.transpose_range(v, body=drums_only) == (0, 0)


def test_shift_tempo_clips(tok):
    v = tok.vocab
    n = v.size("Tempo")
    body = np.array([v.bar, v.id("Tempo", 0), v.id("Position", 0), v.id("Tempo", n - 2), v.id("Tempo", 10)])
    up = augment.shift_tempo(body, 2, v)
    assert [int(v.value_of[t]) for t in up[[1, 3, 4]]] == [2, n - 1, 12]
    down = augment.shift_tempo(body, -2, v)
    assert [int(v.value_of[t]) for t in down[[1, 3, 4]]] == [0, n - 4, 8]
    assert up[0] == v.bar and up[2] == body[2]
    # bins are ~6% apart: two bins are a 10-14% tempo change
    ratio = v.tempo_bins[12] / v.tempo_bins[10]
    assert 1.10 < ratio < 1.14


def test_remap_programs_keeps_grammar(pieces, tok):
    v = tok.vocab
    body = _band(pieces)  # programs 0 (piano), 33 (bass), 128 (drums)
    rng = np.random.default_rng(7)
    progs = augment.programs_in(body, v)
    assert progs == [0, 33, DRUMS]
    mapping = augment.random_program_mapping(progs, rng)
    assert mapping[DRUMS] == DRUMS
    assert mapping[0] < mapping[33] < 112
    assert mapping == augment.random_program_mapping(progs, np.random.default_rng(7))  # seeded
    out = augment.remap_programs(body, mapping, v)
    before, after = tok.note_table(tok.decode(body)), tok.note_table(tok.decode(out))
    exp = before.copy()
    exp[:, 3] = [mapping[p] for p in before[:, 3]]
    exp = exp[np.lexsort(exp.T[::-1])]
    np.testing.assert_array_equal(after, exp)
    # re-encoding the decoded score gives the same tokens: the order inside events is still canonical
    np.testing.assert_array_equal(tok.encode_body(tok.decode(out)), out)


def test_remap_programs_rejects_bad_mappings(pieces, tok):
    body = _band(pieces)
    with pytest.raises(ValueError, match="increasing"):
        augment.remap_programs(body, {0: 50, 33: 40}, tok.vocab)
    with pytest.raises(ValueError, match="drums"):
        augment.remap_programs(body, {DRUMS: 120, 0: 1, 33: 2}, tok.vocab)


def test_transpose_keeps_tokens_canonical(pieces, tok):
    body = _chorale(pieces)
    out = augment.transpose(body, -4, tok.vocab)
    np.testing.assert_array_equal(tok.encode_body(tok.decode(out)), out)


def test_random_transpose_bounds():
    rng = np.random.default_rng(0)
    draws = {augment.random_transpose(-2, 9, 6, rng) for _ in range(300)}
    assert draws == set(range(-2, 7))
    assert augment.random_transpose(0, 0, 6, rng) == 0
