"""The behavioural measures on hand-built scores: rhythm and motif reuse, key, meter, onsets per second.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_behaviour.py -q`
"""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from acemusic.eval.behaviour import (
    meters,
    onset_patterns,
    onsets_per_second,
    reuses_motif,
    reuses_rhythm,
    same_key,
)

from .tiny_data import melody


def score(notes, meter=(4, 4), qpm=120.0) -> symusic.Score:
    """notes: (onset, duration, pitch) at 12 ticks per quarter."""
    s = symusic.Score(12)
    s.time_signatures.append(symusic.TimeSignature(0, *meter))
    s.tempos.append(symusic.Tempo(0, qpm))
    t = symusic.Track("m", 0, False)
    for on, d, p in notes:
        t.notes.append(symusic.Note(on, d, p, 80))
    s.tracks.append(t)
    return s


CALL = score([(0, 12, 60), (12, 6, 62), (18, 6, 64), (24, 24, 65), (48, 12, 67), (60, 12, 65), (72, 24, 64)])


def test_onset_patterns_per_bar() -> None:
    assert onset_patterns(CALL) == [frozenset({0, 12, 18, 24}), frozenset({0, 12, 24})]


def test_rhythm_reuse() -> None:
    same_rhythm_other_pitches = score([(0, 12, 70), (12, 6, 69), (18, 6, 67), (24, 24, 72), (48, 48, 60)])
    assert reuses_rhythm(CALL, same_rhythm_other_pitches)
    other = score([(0, 24, 60), (24, 24, 62), (48, 16, 60), (64, 16, 62), (80, 16, 64)])
    assert not reuses_rhythm(CALL, other)
    assert not reuses_rhythm(CALL, score([]))


def test_motif_reuse_is_transposition_invariant() -> None:
    # the call's first four notes rise 2, 2, 1 semitones; the response states them a fifth up, later in the bar
    resp = score([(0, 24, 50), (24, 12, 67), (36, 4, 69), (40, 4, 71), (44, 4, 72)])
    assert reuses_motif(CALL, resp)
    assert not reuses_motif(CALL, score([(0, 12, 60), (12, 12, 55), (24, 12, 60), (36, 12, 55)]))
    # repeated notes alone are not a motif
    flat = score([(i * 12, 12, 60) for i in range(6)])
    assert not reuses_motif(flat, flat)


def test_key_and_meter() -> None:
    rng = np.random.default_rng(0)
    g_major = melody(rng, 7, "major", 8)
    assert same_key(g_major, melody(np.random.default_rng(5), 7, "major", 8))
    assert not same_key(g_major, melody(np.random.default_rng(5), 1, "minor", 8))
    assert meters(score([(0, 12, 60)], meter=(3, 4))) == [(3, 4)]


def test_onsets_per_second_scale_with_tempo() -> None:
    notes = [(i * 6, 6, 60 + i % 5) for i in range(32)]  # eighths for 4 bars at 4/4
    slow, fast = onsets_per_second(score(notes, qpm=60.0)), onsets_per_second(score(notes, qpm=120.0))
    assert fast == pytest.approx(2 * slow, rel=0.05)
    assert slow == pytest.approx(32 / 16.0, rel=0.05)  # 16 quarter notes at 60 bpm, minus the last note's tail
    assert onsets_per_second(score([])) == 0.0
