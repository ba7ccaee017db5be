"""Structure measures on hand-built pieces: motifs, phrases, bar self-similarity, AABA detection, combined score.

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/eval/test_structure.py -q`
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Track

from acemusic.eval.structure import (
    WEIGHTS,
    StructureReport,
    bar_similarity,
    motif_recurrence,
    phrase_length_histogram,
    phrase_lengths,
    phrase_regularity,
    section_pattern,
    section_symmetry,
    structure_report,
    structure_score,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "midi"
C, D, E, F, G, A, B = 60, 62, 64, 65, 67, 69, 71


def score_of(notes: list[tuple[int, int, int]]) -> Score:
    """tpq 12, 4/4 (the default), one piano track of (onset, duration, pitch)."""
    s = Score(12)
    t = Track("piano", 0, False)
    for on, dur, p in notes:
        t.notes.append(Note(on, dur, p, 80))
    s.tracks.append(t)
    return s


def bars_to_notes(bars: list[list[tuple[int, int, int]]]) -> list[tuple[int, int, int]]:
    """Bars of (offset in bar, duration, pitch), laid end to end in 4/4 (48 ticks a bar)."""
    return [(48 * i + on, dur, p) for i, bar in enumerate(bars) for on, dur, p in bar]


def quarters(pitches: list[int], start: int = 0) -> list[tuple[int, int, int]]:
    return [(start + 12 * i, 12, p) for i, p in enumerate(pitches)]


# A: a 4-bar tune in C; B: a contrasting 4 bars in G with dotted rhythms.
SEC_A = [
    quarters([C, D, E, C]),
    [(0, 12, E), (12, 12, F), (24, 24, G)],
    [(0, 6, G), (6, 6, A), (12, 6, G), (18, 6, F), (24, 12, E), (36, 12, C)],
    [(0, 12, C), (12, 12, G - 12), (24, 24, C)],
]
SEC_B = [
    [(0, 18, B), (18, 6, A), (24, 18, B), (42, 6, D + 12)],
    [(0, 36, D + 12), (36, 12, B)],
    [(0, 18, A), (18, 6, 66), (24, 18, A), (42, 6, B)],
    [(0, 48, D)],
]


def form(*sections: list) -> Score:
    return score_of(bars_to_notes([bar for sec in sections for bar in sec]))


# ---- motifs ------------------------------------------------------------------------------------------------------


def test_motif_recurrence_by_hand() -> None:
    # C D E C D E, n=3: motifs (2,2) (2,-4) (-4,2) (2,2) with equal rhythm; positions 0 and 3 recur -> 2/4
    assert motif_recurrence(score_of(quarters([C, D, E, C, D, E])), n=3) == pytest.approx(0.5)
    # transposed repeat C D E / G A B: intervals (2,2) (2,3) (3,2) (2,2) -> still 2/4
    assert motif_recurrence(score_of(quarters([C, D, E, G, A, B])), n=3) == pytest.approx(0.5)
    # same pitches, second time in eighths: a rhythmic variant does not recur
    varied = quarters([C, D, E]) + [(36 + 6 * i, 6, p) for i, p in enumerate([C, D, E])]
    assert motif_recurrence(score_of(varied), n=3) == 0.0
    # a run of one note: C*5, n=3 has motifs at 0..2, all overlapping (|i - j| < 3): nothing recurs by itself
    assert motif_recurrence(score_of(quarters([C] * 5)), n=3) == 0.0
    assert motif_recurrence(score_of(quarters([C, D])), n=3) == 0.0


# ---- phrases -----------------------------------------------------------------------------------------------------


def test_phrase_lengths_by_hand() -> None:
    notes = [(0, 6, C), (12, 12, D), (24, 12, E), (36, 12, F)]  # a 6-tick gap (< a beat) does not split
    notes += [*quarters([G, F, E, D, C, D], start=96), (168, 24, G)]  # after a bar of rest; ends on a half note
    notes += quarters([E, D, C, C], start=192)  # right after the long note
    s = score_of(notes)
    np.testing.assert_allclose(phrase_lengths(s), [1.0, 2.0, 1.0])
    assert phrase_length_histogram(s, max_bars=4).tolist() == [2, 1, 0, 0]
    assert phrase_regularity(s) == pytest.approx(2 / 3)
    assert phrase_regularity(score_of(quarters([C, D, E, F]))) == 0.0  # one phrase: no phrase structure


# ---- self-similarity and sections ----------------------------------------------------------------------------------


def test_bar_similarity_basics() -> None:
    s = form(SEC_A, [[], []], SEC_A[:1])  # bars 0-3 = A, two empty bars, bar 6 = A's first bar
    sim = bar_similarity(s)
    assert sim.shape == (7, 7)
    assert sim[0, 6] == pytest.approx(1.0) and sim[4].max() == 0.0  # empty bars are similar to nothing
    assert np.all((sim >= 0) & (sim <= 1 + 1e-12)) and np.allclose(sim, sim.T)


def test_section_symmetry_by_hand() -> None:
    # one note per bar, each bar type with its own pitch class and position: bars of different types are at 0,
    # equal types at 1. Form AABA (16 bars): bars 2..15 score 1 exactly in the second and last A -> 8 / 14.
    a = [[(3 * k, 1, 60 + k)] for k in range(4)]
    b = [[(3 * k, 1, 64 + k)] for k in range(4, 8)]
    s = form(a, a, b, a)
    assert section_symmetry(s) == pytest.approx(8 / 14)
    # 6 section pairs: 3 labeled same at T = 1 (1 - 0.75 each), 3 labeled different at T = 0 (0.75 each) -> 0.5
    assert section_pattern(s) == ("AABA", pytest.approx(0.5))


def test_section_pattern_finds_the_form() -> None:
    assert section_pattern(form(SEC_A, SEC_A, SEC_B, SEC_A))[0] == "AABA"
    assert section_pattern(form(SEC_A, SEC_B, SEC_A, SEC_B))[0] == "ABAB"
    assert section_pattern(form(SEC_A, SEC_B, SEC_B, SEC_A, SEC_A))[0] == "ABBAA"
    # greedy labeling (beyond max_exact sections) agrees on a clear form
    assert section_pattern(form(SEC_A, SEC_A, SEC_B, SEC_A), max_exact=1)[0] == "AABA"
    assert section_pattern(form(SEC_A))[0] == "A"


# ---- combined ------------------------------------------------------------------------------------------------------


def test_structure_score_weights() -> None:
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)
    assert structure_score(1.0, 0.5, 0.0) == pytest.approx(0.6)
    assert structure_score(1.0, 1.0, 1.0) == pytest.approx(1.0)


def test_structured_piece_scores_higher_than_random() -> None:
    rng = np.random.default_rng(0)
    rand = score_of(
        [
            (48 * bar + 12 * k, 12, int(rng.integers(55, 80)))
            for bar in range(16)
            for k in range(4)
            if rng.random() < 0.8
        ]
    )
    aaba = structure_report(form(SEC_A, SEC_A, SEC_B, SEC_A))
    noise = structure_report(rand)
    assert aaba.pattern == "AABA" and aaba.score > noise.score + 0.2
    assert 0.0 <= noise.score <= aaba.score <= 1.0
    assert StructureReport.from_dict(aaba.to_dict()) == aaba
    real = structure_report(FIXTURES / "bach_bwv66_6.mid")
    assert 0.0 <= real.score <= 1.0
