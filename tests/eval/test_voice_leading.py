"""Voice-leading measures on hand-made voices (each rule shown failing and passing) and on a real chorale.

Run: `.venv/bin/python -m pytest tests/eval/test_voice_leading.py -q`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from acemusic.eval.voice_leading import analyze, dissonance, satb_voices, slices, voice_arrays

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"


def line(*pitches: int, step: int = 12) -> list[tuple[int, int, int]]:
    """Quarter notes (12 ticks) one after another; -1 is a rest."""
    return [(i * step, step, p) for i, p in enumerate(pitches) if p >= 0]


def test_parallel_fifths_and_octaves_are_found():
    r = analyze([line(67, 69), line(60, 62)])  # G/C -> A/D: parallel fifths
    assert (r["parallel_fifths"], r["parallel_octaves"], r["pair_transitions"]) == (1, 0, 1)
    r = analyze([line(72, 74), line(60, 62)])  # octaves moving up together
    assert (r["parallel_fifths"], r["parallel_octaves"]) == (0, 1)
    r = analyze([line(79, 81), line(60, 62)])  # compound fifth (a twelfth) counts too
    assert r["parallel_fifths"] == 1


def test_contrary_oblique_and_changing_intervals_are_not_parallels():
    assert analyze([line(67, 62), line(60, 55)])["parallel_fifths"] == 1  # both down a fifth apart: parallel
    assert analyze([line(67, 74), line(60, 55)])["parallel_fifths"] == 0  # contrary motion (antiparallel)
    assert analyze([line(67, 67), line(60, 60)])["parallel_fifths"] == 0  # no motion
    assert analyze([line(67, 69), line(60, 60)])["parallel_fifths"] == 0  # oblique
    assert analyze([line(67, 71), line(60, 62)])["parallel_fifths"] == 0  # fifth -> sixth


def test_rests_break_transitions():
    r = analyze([line(67, -1, 69), line(60, 60, 62)])
    assert r["parallel_fifths"] == 0  # the soprano rests in between: no consecutive fifths


def test_crossings_spacing_and_ranges():
    r = analyze([line(64, 60), line(62, 64), line(55, 55), line(48, 48)])
    assert r["crossings"] == 1 and r["adjacent_pairs"] == 6
    r = analyze([line(79), line(60), line(55), line(48)])  # soprano 19 semitones above alto
    assert r["spacing_faults"] == 1 and r["upper_pairs"] == 2
    r = analyze([line(84), line(60), line(55), line(30)])  # soprano too high, bass too low
    assert r["range_violations"] == 2 and r["notes"] == 4 and r["range_violation_rate"] == 0.5


def test_slices_hold_sustained_notes():
    times, P = slices([voice_arrays(line(72, step=24)), voice_arrays(line(60, 62))])
    assert times.tolist() == [0, 12] and P.tolist() == [[72, 60], [72, 62]]


def test_dissonance_share_is_duration_weighted():
    new = np.array([[0, 12, 62], [12, 24, 64]])  # D (a second above C) then E (a third)
    given = np.array([[0, 24, 60]])
    assert dissonance(new, given) == 0.5
    assert dissonance(new[1:], given) == 0.0
    assert dissonance(new, np.zeros((0, 3), np.int64)) == 0.0


def test_real_chorale_is_clean_and_ordered():
    score = symusic.Score(str(FIXTURES / "bach_bwv66_6.mid"))
    voices = satb_voices(score)
    assert [round(float(v[:, 2].mean())) for v in voices] == sorted(
        (round(float(v[:, 2].mean())) for v in voices), reverse=True)
    r = analyze(voices)
    assert r["voices"] == 4 and r["notes"] == score.note_num()
    assert r["parallel_fifths"] == r["parallel_octaves"] == r["crossings"] == 0  # Bach, BWV 66.6
    assert 0 <= r["range_violation_rate"] < 0.05
