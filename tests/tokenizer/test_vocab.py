"""Vocabulary tables. Run: pytest tests/tokenizer/test_vocab.py -q"""

from __future__ import annotations

import numpy as np

from acemusic.tokenizer import Vocab
from acemusic.tokenizer.vocab import TYPES, T


def test_ids_are_contiguous_per_type_and_unique():
    v = Vocab()
    assert len(set(v.tokens)) == len(v)
    for name in TYPES:
        r = v.ids_of_type(name)
        assert (v.type_of[list(r)] == T[name]).all()
        assert list(v.value_of[list(r)]) == list(range(len(r)))


def test_bins_are_invertible():
    v = Vocab()
    bins = np.arange(len(v.duration_bins))
    np.testing.assert_array_equal(v.duration_bin(v.duration_bins), bins)
    np.testing.assert_array_equal(v.duration_bin(np.arange(1, 49)), np.arange(48))  # exact to a whole note
    vb = np.arange(v.config.n_velocity_bins)
    np.testing.assert_array_equal(v.velocity_bin(v.velocity_value(vb)), vb)
    assert v.tempo_bin(30.0) == 0 and v.tempo_bin(300.0) == v.config.n_tempo_bins - 1
    assert v.tempo_bin(1000.0) == v.config.n_tempo_bins - 1  # clipped, not an error


def test_save_load(tmp_path):
    v = Vocab()
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").tokens == v.tokens


def test_time_signatures_fit_the_position_range():
    v = Vocab()
    assert v.ts_ticks.max() <= v.size("Position")
    assert v.time_signature_index(4, 4) == 3 and v.time_signature_index(7, 8) is not None
