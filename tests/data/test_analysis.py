"""Key finding, polyphony classes and pitch range on small hand-made note sets."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Note, Score, Track

from acemusic.data.analysis import (
    estimate_key,
    is_monophonic,
    key_name,
    note_arrays,
    pitch_range,
    polyphony_class,
)

C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def _score(*tracks: tuple[int, bool, list[tuple[int, int, int]]]) -> Score:
    s = Score(12)
    for program, drum, notes in tracks:
        t = Track(name="t", program=program, is_drum=drum)
        for time, dur, pitch in notes:
            t.notes.append(Note(time, dur, pitch, 80))
        s.tracks.append(t)
    return s


@pytest.mark.parametrize("shift", range(12))
def test_scale_keys_in_every_transposition(shift):
    pitches = np.array(C_MAJOR_SCALE) + shift
    durations = np.array([4, 1, 2, 1, 3, 1, 1, 4])  # tonic and dominant weighted, as melodies do
    key, mode, r = estimate_key(pitches, durations)
    assert (key, mode) == (shift % 12, "major") and r > 0.5


def test_minor_key_and_names():
    a_minor = np.array([57, 59, 60, 62, 64, 65, 68, 69, 64, 57])  # harmonic minor with a leading tone
    key, mode, _ = estimate_key(a_minor, np.array([4, 1, 2, 1, 3, 1, 1, 4, 2, 4]))
    assert (key, mode) == (9, "minor")
    assert key_name(key, mode) == "A minor"
    assert key_name(None, None) is None


def test_no_notes_or_flat_histogram_has_no_key():
    assert estimate_key(np.array([], int), np.array([], int))[:2] == (None, None)
    chromatic = np.arange(60, 72)
    assert estimate_key(chromatic, np.ones(12))[:2] == (None, None)


def test_monophonic_tolerates_one_tick_of_grid_rounding():
    assert is_monophonic(np.array([0, 12, 24]), np.array([12, 12, 12]))
    assert is_monophonic(np.array([0, 4]), np.array([5, 2]))  # 1-tick overlap from a rounded 32nd note
    assert not is_monophonic(np.array([0, 4]), np.array([8, 2]))
    assert not is_monophonic(np.array([0, 0]), np.array([1, 1]))  # a chord


def test_polyphony_classes():
    melody = [(0, 12, 60), (12, 12, 62), (24, 12, 64)]
    chords = [(0, 12, 60), (0, 12, 64), (12, 12, 62)]
    assert polyphony_class(note_arrays(_score((0, False, melody)))) == "monophonic"
    assert polyphony_class(note_arrays(_score((0, False, chords)))) == "polyphonic"
    # two voices of the same instrument (a chorale) are polyphonic, even if each voice is a single line
    assert polyphony_class(note_arrays(_score((52, False, melody), (52, False, melody)))) == "polyphonic"
    # piano family programs 0 and 1: still one instrument family
    assert polyphony_class(note_arrays(_score((0, False, melody), (1, False, melody)))) == "polyphonic"
    assert polyphony_class(note_arrays(_score((0, False, melody), (33, False, melody)))) == "multi-instrument"
    assert polyphony_class(note_arrays(_score((0, False, melody), (0, True, melody)))) == "multi-instrument"


def test_pitch_range_ignores_drums():
    n = note_arrays(_score((0, False, [(0, 12, 50), (12, 12, 70)]), (0, True, [(0, 1, 36), (0, 1, 81)])))
    assert pitch_range(n) == (50, 70)
    assert sorted(set(n["program"].tolist())) == [0, 128]
